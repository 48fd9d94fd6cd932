import { randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { join } from 'node:path'
import { createLibp2pNetwork, open, serve, type Collection, type Libp2pNetwork, type Replica, type Served } from 'convergent'
import type { Product } from '../lib/values.js'
import { CATALOG } from './catalog.js'
import type { BenchNode, OpenOptions, System } from './types.js'

export interface ConvergentTuning {
  /** Periodic anti-entropy (ms); 0 = off. Default: the product default. */
  syncIntervalMs?: number
  /** Entity documents kept in memory. Default: the product default. */
  cacheSize?: number
  /** false → no libp2p node (W1: local writes only). */
  network?: boolean
  /**
   * open()'s durability. Default here 'process', not the product's 'fsync': the raw ceiling
   * and every peer acknowledge a write once the OS has it (none fsyncs), so comparisons stay
   * like for like; W1 runs Convergent and the raw ceiling with fsync as well (its -fsync cases).
   */
  durability?: 'fsync' | 'process'
  /**
   * Observability: 'on' (the default, as open() does: metrics registered, nothing served),
   * 'off' (open({ metrics: false })), or 'served' (metrics, serve() on 127.0.0.1 and one
   * GET /metrics a second, as a Prometheus scraping it would).
   */
  metrics?: 'off' | 'on' | 'served'
  /** Encryption at rest with a random key (open({ encryption: { key } })). Default off. */
  encryption?: boolean
  /**
   * The trust boundary: the libp2p network built with this cluster key (a private network,
   * @libp2p/pnet) and open({ network, cluster: { admins } }) — the policy is then the admins'
   * to set (replica.policy.set). Every node of a cluster gets the same key and admins. Default
   * none (development mode; the bench's network is built here, so open() warns of nothing).
   */
  cluster?: { key: Uint8Array; admins: string[] }
}

/** Serves the replica's /metrics and scrapes it once a second; stop() ends both. */
async function scraped(replica: Replica): Promise<{ scrapes: () => number; stop: () => Promise<void> }> {
  const served: Served = await serve(replica)
  let scrapes = 0
  let inFlight: Promise<void> = Promise.resolve()
  const scrape = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const req = request(`${served.url}/metrics`, { agent: false }, (res) => {
        res.resume()
        res.on('end', () => {
          if (res.statusCode === 200) scrapes++
          resolve()
        })
      })
      req.on('error', () => resolve())
      req.end()
    })
  const timer = setInterval(() => {
    inFlight = scrape()
  }, 1_000)
  return {
    scrapes: () => scrapes,
    async stop() {
      clearInterval(timer)
      await inFlight
      await served.close()
    },
  }
}

export const COLLECTION = 'products'

/**
 * Convergent as a user runs it: open() with a LevelDB dir and a libp2p node on 127.0.0.1 (at
 * durability 'process' unless the tuning says otherwise: see ConvergentTuning.durability).
 * The network is created here (with the same options open() would use) only so that a
 * workload can dial a peer after opening — W4 heals a partition that way.
 */
export class ConvergentNode implements BenchNode {
  private readonly remoteIds = new Set<string>()

  private constructor(
    readonly replica: Replica,
    readonly network: Libp2pNetwork | undefined,
    readonly collection: Collection<Product>,
    private readonly scraper?: { scrapes: () => number; stop: () => Promise<void> },
  ) {
    this.onRemote((id) => this.remoteIds.add(id))
  }

  static async open(backend: 'yjs' | 'automerge', options: OpenOptions, tuning: ConvergentTuning = {}): Promise<ConvergentNode> {
    let network: Libp2pNetwork | undefined
    if (tuning.network !== false) {
      network = await createLibp2pNetwork({
        listen: ['/ip4/127.0.0.1/tcp/0'],
        peers: options.join ? [`/ip4/127.0.0.1/tcp/${options.join.port}/p2p/${options.join.token}`] : [],
        identityFile: join(options.dir, 'peer-id.key'),
        ...(tuning.cluster === undefined ? {} : { clusterKey: tuning.cluster.key }),
      })
    }
    const replica = await open({
      dir: options.dir,
      durability: tuning.durability ?? 'process',
      network: network ?? false,
      ...(tuning.syncIntervalMs === undefined ? {} : { syncIntervalMs: tuning.syncIntervalMs }),
      ...(tuning.cacheSize === undefined ? {} : { cacheSize: tuning.cacheSize }),
      ...(tuning.metrics === 'off' ? { metrics: false as const } : {}),
      ...(tuning.encryption === true ? { encryption: { key: randomBytes(32) } } : {}),
      ...(tuning.cluster === undefined ? {} : { cluster: { admins: tuning.cluster.admins } }),
    })
    const scraper = tuning.metrics === 'served' ? await scraped(replica) : undefined
    return new ConvergentNode(replica, network, replica.collection<Product>(COLLECTION, { backend }), scraper)
  }

  /** GET /metrics answered so far (tuning metrics: 'served'). */
  get scrapes(): number {
    return this.scraper?.scrapes() ?? 0
  }

  get port(): number | undefined {
    const address = this.replica.multiaddrs[0]
    const match = address === undefined ? null : /\/tcp\/(\d+)/.exec(address)
    return match === null ? undefined : Number(match[1])
  }

  get token(): string {
    return this.replica.peerId
  }

  put(id: string, value: Product): Promise<void> {
    return this.collection.put(id, value)
  }

  async setStock(id: string, stock: number): Promise<void> {
    await this.collection.update(id, (p) => {
      p.stock = stock
    })
  }

  async flush(): Promise<void> {
    // put() and update() resolve only once durable: nothing to wait for.
  }

  received(): number {
    return this.remoteIds.size
  }

  /** Every change that arrives from another replica, with the entity's value after it. */
  onRemote(listener: (id: string, value: Product | undefined) => void): void {
    this.collection.subscribe((e) => {
      if (e.origin === 'remote') listener(e.id, e.value)
    })
  }

  async connect(port: number, token: string): Promise<void> {
    if (this.network === undefined) throw new Error('this node has no network')
    // Built from our own address object: the bench does not depend on @multiformats/multiaddr.
    const own = this.network.libp2p.getMultiaddrs()[0]
    if (own === undefined) throw new Error('the libp2p node has no listen address')
    await this.network.libp2p.dial(own.decapsulate('/tcp').encapsulate(`/tcp/${port}/p2p/${token}`))
  }

  /** Closes every connection to the given peer (W4's partition). */
  async hangUp(peerId: string): Promise<void> {
    if (this.network === undefined) return
    for (const c of this.network.libp2p.getConnections()) {
      if (c.remotePeer.toString() === peerId) await c.close()
    }
  }

  async close(): Promise<void> {
    await this.scraper?.stop()
    await this.replica.close()
  }
}

export function convergentSystem(backend: 'yjs' | 'automerge', tuning: ConvergentTuning = {}): System {
  return {
    ...CATALOG[`convergent-${backend}`],
    networked: tuning.network !== false,
    open: (options) => ConvergentNode.open(backend, options, tuning),
  }
}
