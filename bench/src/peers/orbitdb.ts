import { join } from 'node:path'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import { createHelia, type Helia } from 'helia'
import { bitswap } from '@helia/block-brokers'
import { libp2pRouting } from '@helia/routers'
import { LevelBlockstore } from 'blockstore-level'
import { createOrbitDB, type KeyValueDatabase, type OrbitDB } from '@orbitdb/core'
import type { Product } from '../lib/values.js'
import { CATALOG } from './catalog.js'
import type { BenchNode, OpenOptions, System } from './types.js'

const DB_NAME = 'bench-products'

/**
 * OrbitDB 4 keyvalue over helia 6 + libp2p 3, kept on loopback and off the public network:
 * TCP on 127.0.0.1 only, no bootstrap, DHT, mDNS, autoNAT, UPnP or relay; blocks move over
 * bitswap only (no trustless gateways), routing is libp2p's own (no delegated HTTP routing).
 * Blocks live in blockstore-level, the log in OrbitDB's own LevelDB: durable like the others.
 */
class OrbitDBNode implements BenchNode {
  /** The highest Lamport time among joined remote heads: see received(). */
  private remoteTime = 0

  constructor(
    private readonly helia: Helia<Libp2pNode>,
    private readonly blockstore: LevelBlockstore,
    private readonly orbitdb: OrbitDB,
    private readonly db: KeyValueDatabase,
    private readonly identity: string,
  ) {
    db.events.on('update', (entry) => {
      if (entry.identity !== this.identity) this.remoteTime = Math.max(this.remoteTime, entry.clock.time)
    })
    // Replication errors must show up in the results, not vanish.
    db.events.on('error', (err) => process.stderr.write(`[orbitdb] ${err.message}\n`))
  }

  get port(): number | undefined {
    const address = this.helia.libp2p.getMultiaddrs()[0]?.toString()
    const match = address === undefined ? null : /\/tcp\/(\d+)/.exec(address)
    return match === null ? undefined : Number(match[1])
  }

  get token(): string {
    return `${this.helia.libp2p.peerId.toString()} ${this.db.address}`
  }

  async put(id: string, value: Product): Promise<void> {
    await this.db.put(id, value)
  }

  async setStock(id: string, stock: number): Promise<void> {
    // A keyvalue store has no partial update: read, change, put back (as a user would).
    const current = (await this.db.get(id)) as Product
    await this.db.put(id, { ...current, stock })
  }

  async flush(): Promise<void> {}

  /**
   * OrbitDB emits 'update' once per received head, after joining every entry behind it. With
   * one writer the log is a chain whose Lamport times run 1, 2, 3 …, so the highest time among
   * joined heads is the number of entries received — exact, and free (scanning the index on
   * every update cost B seconds of CPU at 1k entries and slowed OrbitDB's own replication).
   */
  received(): number {
    return this.remoteTime
  }

  async connect(port: number, token: string): Promise<void> {
    await dial(this.helia.libp2p, port, token.split(' ')[0]!)
  }

  async close(): Promise<void> {
    await this.db.close()
    await this.orbitdb.stop()
    await this.helia.stop()
    await this.blockstore.close()
  }
}

type Libp2pNode = Awaited<ReturnType<typeof createLoopbackLibp2p>>

async function dial(libp2p: Libp2pNode, port: number, peerId: string): Promise<void> {
  const own = libp2p.getMultiaddrs()[0]
  if (own === undefined) throw new Error('the libp2p node has no listen address')
  await libp2p.dial(own.decapsulate('/tcp').encapsulate(`/tcp/${port}/p2p/${peerId}`))
}

function createLoopbackLibp2p() {
  return createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      // OrbitDB publishes heads before peers have subscribed; that must not throw.
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }),
    },
  })
}

let instances = 0

export const orbitdbSystem: System = {
  ...CATALOG['orbitdb'],
  networked: true,
  async open(options: OpenOptions) {
    const libp2p = await createLoopbackLibp2p()
    const blockstore = new LevelBlockstore(join(options.dir, 'blocks'))
    await blockstore.open()
    const helia = await createHelia({ libp2p, blockstore, blockBrokers: [bitswap()], routers: [libp2pRouting(libp2p)] })
    const orbitdb = await createOrbitDB({ ipfs: helia, id: `bench-${process.pid}-${instances++}`, directory: join(options.dir, 'orbitdb') })
    let address = DB_NAME
    if (options.join !== undefined) {
      const [peerId, dbAddress] = options.join.token.split(' ')
      await dial(libp2p, options.join.port, peerId!)
      address = dbAddress!
    }
    const db = await orbitdb.open(address, { type: 'keyvalue' })
    return new OrbitDBNode(helia, blockstore, orbitdb, db, orbitdb.identity.hash)
  },
}
