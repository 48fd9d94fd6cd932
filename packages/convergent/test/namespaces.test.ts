// Replicas of different namespaces on real libp2p nodes (TCP on 127.0.0.1) that are connected
// to each other: a peer of another namespace is no peer of ours — not in peers(), not synced
// with, never asked for counter rights — while a peer of our own namespace still is.
import { expect } from 'chai'
import { silentLogger } from '@convergent/core'
import { createLibp2pNetwork, open, type Libp2pNetwork, type Replica } from '../src/index.js'
import { waitFor } from './helpers.js'

interface Node {
  replica: Replica
  network: Libp2pNetwork
  /** Peers this node sent requests to (sync rounds, rights requests), in order. */
  requested: string[]
}

/** An in-memory replica in `namespace` on its own libp2p node; no periodic or on-connect sync. */
async function startNode(namespace: string, peers: string[] = []): Promise<Node> {
  const network = await createLibp2pNetwork({ namespace, peers, redialMinMs: 50, redialMaxMs: 300 })
  const requested: string[] = []
  const request = network.request.bind(network)
  network.request = (peer, data, options) => {
    requested.push(peer)
    return request(peer, data, options)
  }
  const replica = await open({ namespace, network, logger: silentLogger, syncIntervalMs: 0, syncOnConnect: false })
  return { replica, network, requested }
}

/** Waits until `a` has identified `b` (b's protocols are in a's peer store): counting is decided. */
async function identified(a: Node, b: Node): Promise<void> {
  await waitFor(async () => {
    const peer = await a.network.libp2p.peerStore.get(b.network.libp2p.peerId).catch(() => undefined)
    return peer !== undefined && peer.protocols.includes(b.network.protocol)
  }, `${a.network.protocol} identified ${b.network.protocol}`)
}

describe('Namespaces over libp2p (real nodes, TCP on 127.0.0.1)', function () {
  this.timeout(60_000)
  let nodes: Node[] = []

  afterEach(async function () {
    await Promise.all(nodes.map((n) => n.replica.close().catch(() => undefined)))
    nodes = []
  })

  async function node(namespace: string, peers: string[] = []): Promise<Node> {
    const n = await startNode(namespace, peers)
    nodes.push(n)
    return n
  }

  it('a connected replica of another namespace is no peer: peers() empty, sync() resolves with [], no rights asked of it, no gossip', async function () {
    const a = await node('a')
    const b = await node('b', [a.replica.multiaddrs[0]!])
    await identified(a, b)
    await identified(b, a)
    await new Promise((r) => setTimeout(r, 300))
    expect(a.network.libp2p.getConnections(b.network.libp2p.peerId).length).to.be.above(0) // connected all the same

    expect(a.replica.peers()).to.deep.equal([])
    expect(b.replica.peers()).to.deep.equal([])
    expect(await a.replica.sync()).to.deep.equal([])
    expect(await b.replica.sync()).to.deep.equal([])

    // Rights: b holds some, a holds none. Short of rights, a may ask only peers of its namespace.
    await b.replica.counter('stock').increment('sku', 5)
    const stock = a.replica.counter('stock')
    await stock.increment('other-sku', 1) // the counter's collection exists on a too
    a.requested.length = 0
    let code: string | undefined
    await stock.decrement('sku', 1, { waitMs: 500 }).catch((err: { code?: string }) => (code = err.code))
    expect(code).to.equal('ERR_INSUFFICIENT_RIGHTS')
    expect(a.requested).to.not.include(b.replica.peerId)

    // Gossip on the same collection name goes to another topic: nothing arrives.
    await a.replica.collection('items').put('from-a', { v: 1 })
    await b.replica.collection('items').put('from-b', { v: 2 })
    await new Promise((r) => setTimeout(r, 1_000))
    expect(await b.replica.collection('items').get('from-a')).to.equal(undefined)
    expect(await a.replica.collection('items').get('from-b')).to.equal(undefined)
    expect(a.replica.stats().peers[b.replica.peerId]).to.equal(undefined)
    expect(b.replica.stats().peers[a.replica.peerId]).to.equal(undefined)
    expect(a.requested).to.deep.equal([])
    expect(b.requested).to.deep.equal([])
  })

  it('a replica of the same namespace still counts: listed, synced with, asked for rights', async function () {
    const a = await node('a')
    const b = await node('b', [a.replica.multiaddrs[0]!])
    const a2 = await node('a', [a.replica.multiaddrs[0]!, b.replica.multiaddrs[0]!])
    await waitFor(() => a.replica.peers().includes(a2.replica.peerId) && a2.replica.peers().includes(a.replica.peerId), 'a and a2 count each other')
    await identified(a, b)
    await identified(a2, b)
    expect(a.replica.peers()).to.deep.equal([a2.replica.peerId])
    expect(a2.replica.peers()).to.deep.equal([a.replica.peerId])

    await a2.replica.collection('items').put('x', { v: 1 })
    const rounds = await a.replica.sync()
    expect(rounds).to.have.length(1)
    expect(await a.replica.collection('items').get('x')).to.deep.equal({ v: 1 })

    await a2.replica.counter('stock').increment('sku', 5)
    await a.replica.sync()
    const stock = a.replica.counter('stock')
    a.requested.length = 0
    expect(await stock.decrement('sku', 2, { waitMs: 5_000 })).to.equal(3)
    expect(a.requested).to.include(a2.replica.peerId)
    expect(a.requested).to.not.include(b.replica.peerId)
  })
})
