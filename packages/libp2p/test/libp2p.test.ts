import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isConvergentError, type NetworkEvents } from '@convergent/core'
import { networkComplianceSuite } from '@convergent/core/testing'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2pNetwork, identityPeerId, type Libp2pNetwork, type Libp2pNetworkOptions } from '../src/index.js'

networkComplianceSuite(
  'libp2p',
  async (n) => {
    const networks = await Promise.all(Array.from({ length: n }, () => createLibp2pNetwork()))
    return {
      networks,
      connectAll: () => connectAll(networks),
      cleanup: () => stopAll(networks),
    }
  },
  {
    // Another cluster: the same stack in another namespace (another sync protocol).
    foreign: async () => {
      const network = await createLibp2pNetwork({ namespace: 'another-cluster' })
      return { network, connect: (to) => connectIdentified(network, to as Libp2pNetwork) }
    },
  },
)

describe('libp2p network', function () {
  this.timeout(20_000)
  const running: Libp2pNetwork[] = []

  async function node(options: Libp2pNetworkOptions = {}, events: NetworkEvents = new Events()): Promise<Libp2pNetwork> {
    const net = await createLibp2pNetwork(options)
    running.push(net)
    await net.start(events)
    return net
  }

  afterEach(async function () {
    await stopAll(running.splice(0))
  })

  it('listens on 127.0.0.1 and lists its addresses with /p2p/<peerId>', async function () {
    const a = await node()
    assert.ok(a.multiaddrs.length > 0)
    for (const address of a.multiaddrs) {
      assert.match(address, /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//)
      assert.ok(address.endsWith(`/p2p/${a.peerId}`))
    }
  })

  it('rejects start() with ERR_NETWORK when the port is taken', async function () {
    const a = await node()
    const b = await createLibp2pNetwork({ listen: [`/ip4/127.0.0.1/tcp/${portOf(a.multiaddrs[0]!)}`] })
    running.push(b)
    await assert.rejects(b.start(new Events()), (err) => isConvergentError(err, 'ERR_NETWORK'))
  })

  describe('identity', function () {
    let dir: string

    beforeEach(async function () {
      dir = await mkdtemp(join(tmpdir(), 'convergent-libp2p-'))
    })

    afterEach(async function () {
      await rm(dir, { recursive: true, force: true })
    })

    it('keeps the same peer id across restarts from the same identityFile', async function () {
      const identityFile = join(dir, 'nested', 'identity.key')
      const first = await node({ identityFile })
      const port = portOf(first.multiaddrs[0]!)
      await first.stop()
      assert.equal((await stat(identityFile)).mode & 0o777, 0o600)
      const second = await node({ identityFile, listen: [`/ip4/127.0.0.1/tcp/${port}`] })
      assert.equal(second.peerId, first.peerId)
      const other = await node({ identityFile: join(dir, 'other.key') })
      assert.notEqual(other.peerId, first.peerId)
    })

    it('refuses a damaged identity file instead of replacing it', async function () {
      const identityFile = join(dir, 'identity.key')
      await writeFile(identityFile, 'not a key')
      await assert.rejects(createLibp2pNetwork({ identityFile }), (err) => isConvergentError(err, 'ERR_INVALID_ARGUMENT'))
      assert.equal(await readFile(identityFile, 'utf8'), 'not a key')
    })

    it('refuses an identity file that is a symbolic link to a missing file (naming both), and creates no identity through it', async function () {
      const identityFile = join(dir, 'identity.key')
      const target = join(dir, 'unmounted', 'identity.key')
      await symlink(target, identityFile)
      const refused = (err: unknown): boolean =>
        isConvergentError(err, 'ERR_INVALID_ARGUMENT') &&
        err.message.startsWith(`identity file ${identityFile} is a symbolic link to ${target}, which is missing;`) &&
        err.message.includes('remove the link')
      await assert.rejects(createLibp2pNetwork({ identityFile }), refused)
      await assert.rejects(identityPeerId(identityFile), refused)
      await assert.rejects(identityPeerId(identityFile, { create: false }), refused)
      assert.deepEqual(await readdir(dir), ['identity.key'], 'no target created, no temporary file left')
    })
  })

  it('refuses a bootstrap peer whose /p2p/ part is not a peer id (ERR_INVALID_ARGUMENT), rather than failing later in the redialer', async function () {
    for (const id of ['12D3KooWabc', '12D3KooW\u2026', 'QmNotAPeerId0OIl']) {
      const address = `/ip4/127.0.0.1/tcp/4001/p2p/${id}`
      assert.doesNotThrow(() => multiaddr(address), 'the multiaddr parser takes it')
      await assert.rejects(
        createLibp2pNetwork({ peers: [address] }),
        (err) => isConvergentError(err, 'ERR_INVALID_ARGUMENT') && /not a peer id/.test((err as Error).message),
      )
    }
  })

  it('redials a bootstrap peer that went away and came back on the same port', async function () {
    const privateKey = await generateKeyPair('Ed25519')
    const b = await node({ privateKey })
    const bAddress = b.multiaddrs[0]!
    const a = await node({ peers: [bAddress], redialMinMs: 50, redialMaxMs: 400 })
    await waitFor(() => a.peers().includes(b.peerId), 'a dials its bootstrap peer')
    await b.stop()
    await waitFor(() => !a.peers().includes(b.peerId), 'a notices b left')
    const b2 = await node({ privateKey, listen: [`/ip4/127.0.0.1/tcp/${portOf(bAddress)}`] })
    assert.equal(b2.peerId, b.peerId)
    await waitFor(() => a.peers().includes(b.peerId), 'a redials b')
  })

  describe('gossip limits', function () {
    it('drops messages over the receiver limit and keeps the topic working', async function () {
      const bEvents = new Events()
      const a = await node()
      const b = await node({ maxMessageBytes: 1024 }, bEvents)
      b.subscribe('t')
      await connectAll([a, b])
      await publishUntil(a, 't', () => bEvents.messages.length > 0)
      const before = bEvents.messages.length
      await a.publish('t', new Uint8Array(2048).fill(1))
      const marker = Uint8Array.of(42, 42)
      await a.publish('t', marker)
      await waitFor(() => bEvents.messages.some((m) => equal(m, marker)), 'the small message after the big one arrives')
      assert.ok(
        bEvents.messages.slice(before).every((m) => m.byteLength <= 1024),
        'the big message is dropped',
      )
    })

    it('refuses to publish over its own limit (ERR_TOO_LARGE)', async function () {
      const a = await node({ maxMessageBytes: 1024 })
      await assert.rejects(a.publish('t', new Uint8Array(1025)), (err) => isConvergentError(err, 'ERR_TOO_LARGE'))
    })
  })

  describe('sync protocol', function () {
    it('survives garbage on the stream and keeps serving', async function () {
      const a = await node()
      const b = await node()
      await connectAll([a, b])
      const attacks = [
        new Uint8Array(64).fill(0xff), // a length prefix that never ends
        Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x04, 1, 2, 3), // announces 1 GiB
        Uint8Array.of(100, 1, 2, 3), // truncated: announces 100 bytes, sends 3
      ]
      for (const garbage of attacks) {
        const stream = await a.libp2p.dialProtocol(b.libp2p.peerId, b.protocol)
        stream.send(garbage)
        await stream.close().catch(() => {})
        await waitFor(() => stream.status !== 'open', 'b ends the stream')
      }
      const response = await a.request(b.peerId, Uint8Array.of(1, 2, 3))
      assert.ok(equal(response, Uint8Array.of(1, 2, 3)))
    })

    it('refuses a request over the responder limit (ERR_TOO_LARGE)', async function () {
      const a = await node()
      const b = await node({ maxMessageBytes: 1024 })
      await connectAll([a, b])
      await assert.rejects(a.request(b.peerId, new Uint8Array(64 * 1024)), (err) => isConvergentError(err, 'ERR_TOO_LARGE'))
      assert.equal((await a.request(b.peerId, new Uint8Array(1000))).byteLength, 1000)
    })

    it('times out a request that gets no answer (ERR_TIMEOUT)', async function () {
      const hanging = new Events()
      hanging.onRequest = () => new Promise(() => {})
      const a = await node({ requestTimeoutMs: 300 })
      const b = await node({}, hanging)
      await connectAll([a, b])
      await assert.rejects(a.request(b.peerId, Uint8Array.of(1)), (err) => isConvergentError(err, 'ERR_TIMEOUT'))
    })

    it('keeps namespaces apart', async function () {
      const a = await node({ namespace: 'shop' })
      const b = await node({ namespace: 'bank' })
      assert.equal(a.protocol, '/convergent/shop/sync/1.0.0')
      await connectIdentified(a, b)
      await assert.rejects(a.request(b.peerId, Uint8Array.of(1)), (err) => isConvergentError(err, 'ERR_NETWORK'))
    })
  })

  describe('namespaces', function () {
    it('counts a connected peer as ours only once identify shows it speaks our sync protocol', async function () {
      const aEvents = new Events()
      const bEvents = new Events()
      const a = await node({ namespace: 'a' }, aEvents)
      const b = await node({ namespace: 'b' }, bEvents)
      const a2Events = new Events()
      const a2 = await node({ namespace: 'a' }, a2Events)
      await connectIdentified(a, b)
      await connectIdentified(a2, b)
      await connectIdentified(a, a2)
      await waitFor(() => a.peers().includes(a2.peerId) && a2.peers().includes(a.peerId), 'a and a2 count each other')
      await sleep(300) // a late event for b would show now
      assert.deepEqual(a.peers(), [a2.peerId], 'a lists a2 (namespace a), not b (namespace b)')
      assert.deepEqual(a2.peers(), [a.peerId])
      assert.deepEqual(b.peers(), [], 'b has no peer of namespace b')
      assert.deepEqual(aEvents.connected, [a2.peerId], 'onPeerConnected only for a2')
      assert.deepEqual(bEvents.connected, [])
      assert.equal(a.libp2p.getConnections(b.libp2p.peerId).length > 0, true, 'b is still connected to a, just not a peer of ours')

      await b.stop()
      await waitFor(() => a.libp2p.getConnections(b.libp2p.peerId).length === 0, 'a sees b go')
      await a2.stop()
      await waitFor(() => aEvents.disconnected.length > 0, 'a hears that a2 left')
      await sleep(300)
      assert.deepEqual(aEvents.disconnected, [a2.peerId], 'onPeerDisconnected only for a2, never for b')
      assert.deepEqual(a.peers(), [])
    })

    it('a peer that comes back under the same peer id in another namespace is not counted again', async function () {
      const privateKey = await generateKeyPair('Ed25519')
      const aEvents = new Events()
      const b = await node({ namespace: 'a', privateKey })
      const bAddress = b.multiaddrs[0]!
      const a = await node({ namespace: 'a', peers: [bAddress], redialMinMs: 50, redialMaxMs: 400 }, aEvents)
      await waitFor(() => a.peers().includes(b.peerId), 'a counts its bootstrap peer')
      await b.stop()
      await waitFor(() => aEvents.disconnected.includes(b.peerId), 'a hears that b left')
      // The same peer id back on the same port, but in namespace 'z': connected, not ours.
      const z = await node({ namespace: 'z', privateKey, listen: [`/ip4/127.0.0.1/tcp/${portOf(bAddress)}`] })
      await waitFor(() => a.libp2p.getConnections(z.libp2p.peerId).length > 0, 'a redials the address')
      await identified(a, z)
      await sleep(300)
      assert.deepEqual(a.peers(), [])
      assert.deepEqual(aEvents.connected, [b.peerId], 'connected once, for the namespace-a life only')
    })
  })

  it('passes connectionManager to libp2p, over its defaults', async function () {
    const hub = await node({ connectionManager: { inboundConnectionThreshold: 2 } })
    const spokes = await Promise.all(Array.from({ length: 7 }, () => node()))
    const dials = await Promise.allSettled(spokes.map((spoke) => spoke.libp2p.dial(multiaddr(hub.multiaddrs[0]))))
    assert.ok(
      dials.some((d) => d.status === 'rejected'),
      'a threshold of 2 a second refuses some of seven',
    )
    assert.ok(hub.peers().length < 7)
  })

  it('accepts more than 5 inbound connections a second from one host by default', async function () {
    const hub = await node()
    const spokes = await Promise.all(Array.from({ length: 8 }, () => node()))
    await Promise.all(spokes.map((spoke) => spoke.libp2p.dial(multiaddr(hub.multiaddrs[0]))))
    await waitFor(() => hub.peers().length === 8, 'the hub accepts all eight')
  })

  it('passes the connection gater to libp2p', async function () {
    const b = await node()
    const a = await node({ connectionGater: { denyDialMultiaddr: () => true } })
    await assert.rejects(a.libp2p.dial(multiaddr(b.multiaddrs[0])))
    assert.deepEqual(a.peers(), [])
  })
})

class Events implements NetworkEvents {
  messages: Uint8Array[] = []
  connected: string[] = []
  disconnected: string[] = []
  onMessage(_topic: string, data: Uint8Array): void {
    this.messages.push(data)
  }
  onRequest(_from: string, data: Uint8Array): Promise<Uint8Array> {
    return Promise.resolve(data)
  }
  onPeerConnected(peer: string): void {
    this.connected.push(peer)
  }
  onPeerDisconnected(peer: string): void {
    this.disconnected.push(peer)
  }
}

/**
 * Dials b from a and waits until identify has run both ways (each side's peer store holds the
 * other's protocols): from then on, whether either counts the other as a peer is decided.
 */
async function connectIdentified(a: Libp2pNetwork, b: Libp2pNetwork): Promise<void> {
  await a.libp2p.dial(multiaddr(b.multiaddrs[0]))
  await identified(a, b)
  await identified(b, a)
}

/** Waits until `net` has identified `other` (its protocols are in net's peer store). */
async function identified(net: Libp2pNetwork, other: Libp2pNetwork): Promise<void> {
  const deadline = Date.now() + 15_000
  for (;;) {
    const peer = await net.libp2p.peerStore.get(other.libp2p.peerId).catch(() => undefined)
    if (peer !== undefined && peer.protocols.includes(other.protocol)) return
    if (Date.now() > deadline) throw new Error('timed out waiting for identify')
    await sleep(20)
  }
}

/** Dials every pair once and waits until each network lists all the others. */
async function connectAll(networks: Libp2pNetwork[]): Promise<void> {
  const dials: Promise<unknown>[] = []
  for (const [i, a] of networks.entries()) {
    for (const b of networks.slice(i + 1)) dials.push(a.libp2p.dial(multiaddr(b.multiaddrs[0])))
  }
  await Promise.all(dials)
  await waitFor(() => networks.every((net) => networks.every((other) => other === net || net.peers().includes(other.peerId))), 'all connected')
}

async function stopAll(networks: Libp2pNetwork[]): Promise<void> {
  await Promise.all(networks.map((net) => net.stop()))
}

/** Gossip needs the subscription to reach the sender first: publish until cond holds. */
async function publishUntil(net: Libp2pNetwork, topic: string, cond: () => boolean): Promise<void> {
  for (let i = 0; !cond(); i++) {
    if (i > 200) throw new Error('gossip never arrived')
    await net.publish(topic, Uint8Array.of(i & 0xff))
    await sleep(50)
  }
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`)
    await sleep(20)
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function portOf(address: string): number {
  const match = /\/tcp\/(\d+)/.exec(address)
  if (match === null) throw new Error(`no tcp port in ${address}`)
  return Number(match[1])
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i])
}
