// Replication on real nodes: open() with classic-level on disk and libp2p over TCP on
// 127.0.0.1, in one process. Partitions are made at the connection layer, as a real one would
// be: a connection gater the test controls refuses dials both ways and open connections are
// hung up; healing lifts the block and the bootstrap redialer reconnects on its own.
import { join } from 'node:path'
import { expect } from 'chai'
import { silentLogger } from '@convergent/core'
import { MessageType, topicOf } from '@convergent/core/internal'
import { createLibp2pNetwork, open, type Libp2pNetwork, type Libp2pNetworkOptions, type Replica } from '../src/index.js'
import { dump, recordingLogger, tempDir, waitFor } from './helpers.js'
import { expectUntouchedAndServing, GARBAGE_CASES, GARBAGE_LIMIT } from './wire-garbage.js'

type Gater = NonNullable<Libp2pNetworkOptions['connectionGater']>

/** Blocks chosen peers: refuses connections with them and closes the open ones. */
class Gate {
  readonly blocked = new Set<string>()
  network: Libp2pNetwork | undefined
  readonly gater: Gater = {
    denyDialPeer: (peer) => this.blocked.has(peer.toString()),
    denyInboundEncryptedConnection: (peer) => this.blocked.has(peer.toString()),
    denyOutboundEncryptedConnection: (peer) => this.blocked.has(peer.toString()),
  }

  async block(peers: string[]): Promise<void> {
    for (const p of peers) this.blocked.add(p)
    const libp2p = this.network?.libp2p
    if (libp2p === undefined) return
    await Promise.all(
      libp2p
        .getConnections()
        .filter((c) => this.blocked.has(c.remotePeer.toString()))
        .map((c) => c.close().catch(() => c.abort(new Error('partitioned')))),
    )
  }
}

interface Node {
  dir: string
  gate: Gate
  replica: Replica
}

/** A node: its own data dir, identity kept in it, bootstrap peers redialled quickly. */
async function startNode(dir: string, peers: string[], options: { syncIntervalMs?: number; syncOnConnect?: boolean } = {}): Promise<Node> {
  const gate = new Gate()
  const network = await createLibp2pNetwork({
    listen: ['/ip4/127.0.0.1/tcp/0'],
    peers,
    identityFile: join(dir, 'peer-id.key'),
    connectionGater: gate.gater,
    redialMinMs: 50,
    redialMaxMs: 300,
  })
  gate.network = network
  const replica = await open({
    dir,
    network,
    logger: silentLogger,
    syncIntervalMs: options.syncIntervalMs ?? 1_000,
    syncOnConnect: options.syncOnConnect ?? true,
  })
  return { dir, gate, replica }
}

const COLLECTIONS = [
  ['items', 'yjs'],
  ['docs', 'automerge'],
] as const

async function dumps(nodes: Node[], collection: string): Promise<string[]> {
  return Promise.all(nodes.map(async (n) => JSON.stringify(sortKeys(await dump(n.replica, collection)))))
}

function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)))
}

/** Runs sync rounds until every node holds the same entities in every collection. */
async function converge(nodes: Node[], timeoutMs = 30_000): Promise<void> {
  await waitFor(
    async () => {
      await Promise.all(nodes.map((n) => n.replica.sync().catch(() => [])))
      for (const [name] of COLLECTIONS) if (new Set(await dumps(nodes, name)).size !== 1) return false
      return true
    },
    'all nodes equal',
    timeoutMs,
  )
}

describe('Replication over libp2p (real nodes, TCP on 127.0.0.1, LevelDB on disk)', function () {
  this.timeout(90_000)
  let nodes: Node[] = []
  let cleanups: (() => Promise<void>)[] = []

  async function cluster(n: number): Promise<Node[]> {
    const out: Node[] = []
    for (let i = 0; i < n; i++) {
      const t = await tempDir('convergent-p2p-')
      cleanups.push(t.cleanup)
      // Each node dials the ones before it: a full mesh, every link with one redialling side.
      out.push(
        await startNode(
          t.dir,
          out.map((x) => x.replica.multiaddrs[0]!),
        ),
      )
    }
    await waitFor(() => out.every((x) => x.replica.peers().length === n - 1), 'full mesh')
    nodes.push(...out)
    return out
  }

  afterEach(async function () {
    await Promise.all(nodes.map((n) => n.replica.close().catch(() => undefined)))
    await Promise.all(cleanups.map((c) => c()))
    nodes = []
    cleanups = []
  })

  it('partition into two groups, concurrent writes on both sides (both backends), heal: equal everywhere, nothing acknowledged lost', async function () {
    const all = await cluster(4)
    const [a, b, c, d] = all as [Node, Node, Node, Node]
    for (const [name, backend] of COLLECTIONS) {
      await a.replica.collection(name, { backend }).put('shared', { fieldA: 0, fieldC: 0, last: 'none' })
    }
    await converge(all)

    // Cut {a, b} | {c, d}.
    const left = [a, b]
    const right = [c, d]
    for (const n of left) await n.gate.block(right.map((x) => x.replica.peerId))
    for (const n of right) await n.gate.block(left.map((x) => x.replica.peerId))
    await waitFor(() => left.every((n) => n.replica.peers().length === 1) && right.every((n) => n.replica.peers().length === 1), 'partitioned')

    const acknowledged = new Map<string, Record<string, unknown>>()
    await Promise.all(
      all.flatMap((node, i) =>
        COLLECTIONS.map(async ([name]) => {
          const col = node.replica.collection(name)
          for (let k = 0; k < 15; k++) {
            const id = `n${i}-${k}`
            await col.put(id, { by: i, k })
            acknowledged.set(`${name}/${id}`, { by: i, k })
          }
          // The same entity: different fields on each side, and the same field on both.
          if (node === a) await col.update('shared', (v) => void Object.assign(v, { fieldA: 1, last: 'a' }))
          if (node === c) await col.update('shared', (v) => void Object.assign(v, { fieldC: 2, last: 'c' }))
        }),
      ),
    )
    // The partition is real: each side converges on its own, without the other side's writes.
    await Promise.all(all.map((n) => n.replica.sync()))
    for (const [name] of COLLECTIONS) {
      expect(await a.replica.collection(name).get('n2-0')).to.equal(undefined)
      expect(await c.replica.collection(name).get('n0-0')).to.equal(undefined)
    }

    for (const n of all) n.gate.blocked.clear()
    await waitFor(() => all.every((n) => n.replica.peers().length === 3), 'reconnected after heal', 20_000)
    await converge(all)

    for (const [name] of COLLECTIONS) {
      const state = await dump(d.replica, name)
      for (const [key, value] of acknowledged) if (key.startsWith(`${name}/`)) expect(state[key.slice(name.length + 1)], key).to.deep.equal(value)
      const shared = state.shared as { fieldA: number; fieldC: number; last: string }
      expect(shared.fieldA).to.equal(1)
      expect(shared.fieldC).to.equal(2)
      expect(['a', 'c']).to.include(shared.last)
    }
  })

  it('a node restarted from its data dir keeps its peer id and catches up on what it missed', async function () {
    const all = await cluster(3)
    const [a, , c] = all as [Node, Node, Node]
    const peerId = c.replica.peerId
    await a.replica.collection('items', { backend: 'yjs' }).put('before', { v: 1 })
    await converge(all)
    await c.replica.close()
    nodes = nodes.filter((n) => n !== c)

    for (let k = 0; k < 30; k++) await a.replica.collection('items').put(`missed-${k}`, { k })
    await a.replica.collection('docs', { backend: 'automerge' }).put('new-collection', { v: 2 })

    const restarted = await startNode(c.dir, [a.replica.multiaddrs[0]!])
    nodes.push(restarted)
    expect(restarted.replica.peerId).to.equal(peerId)
    await waitFor(async () => Object.keys(await dump(restarted.replica, 'items')).length === 31, 'caught up', 20_000)
    expect(await restarted.replica.collection('items').get('before')).to.deep.equal({ v: 1 })
    await waitFor(async () => (await restarted.replica.collection('docs').get('new-collection')) !== undefined, 'collection it never opened', 20_000)
  })

  it('the same deltas delivered many times, out of order, end equal', async function () {
    const [a] = (await cluster(1)) as [Node]
    // A relay records A's pushes off the wire, then replays them to a fresh node E (which has
    // anti-entropy off, so only the replays can bring it up to date): three times, shuffled.
    const relay = await createLibp2pNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'], peers: [a.replica.multiaddrs[0]!] })
    const recorded: [string, Uint8Array][] = []
    await relay.start({
      onMessage: (topic, data) => void recorded.push([topic, data]),
      onRequest: async () => new Uint8Array(),
      onPeerConnected: () => {},
      onPeerDisconnected: () => {},
    })
    try {
      for (const [name] of COLLECTIONS) relay.subscribe(topicOf('default', name))
      await waitFor(() => relay.peers().length === 1, 'relay connected')
      await new Promise((r) => setTimeout(r, 1_500)) // gossipsub learns the subscription
      for (const [name, backend] of COLLECTIONS) {
        const col = a.replica.collection(name, { backend })
        for (let k = 0; k < 20; k++) {
          await col.update(`e${k % 4}`, (v) => void (v[`f${k}`] = k), { upsert: true })
          await new Promise((r) => setTimeout(r, 20)) // many pushes, not one coalesced
        }
      }
      await waitFor(() => recorded.length >= 8, `relay recorded A's pushes (${recorded.length})`, 20_000)
      await new Promise((r) => setTimeout(r, 1_000)) // the last ones

      const t = await tempDir('convergent-p2p-')
      cleanups.push(t.cleanup)
      const e = await startNode(t.dir, [relay.multiaddrs[0]!], { syncIntervalMs: 0, syncOnConnect: false })
      nodes.push(e)
      for (const [name, backend] of COLLECTIONS) e.replica.collection(name, { backend })
      await waitFor(() => e.replica.peers().includes(relay.peerId), 'E connected to the relay')
      await new Promise((r) => setTimeout(r, 1_500))
      const replay = [...recorded, ...recorded, ...recorded]
      // A fixed shuffle (newest first, then interleaved), so a failure replays the same way.
      replay.reverse()
      for (let i = 0; i < replay.length; i += 3) [replay[i], replay[replay.length - 1 - i]] = [replay[replay.length - 1 - i]!, replay[i]!]
      for (const [topic, data] of replay) await relay.publish(topic, data)

      await waitFor(
        async () => {
          for (const [name] of COLLECTIONS) if ((await dumps([a, e], name)).reduce((x, y) => (x === y ? x : '')) === '') return false
          return true
        },
        'E equal to A',
        20_000,
      )
      const stats = e.replica.stats().peers[relay.peerId]!
      expect(stats.deltasDuplicate).to.be.greaterThan(0)
      expect(e.replica.stats().droppedTotal).to.equal(0)
    } finally {
      await relay.stop()
    }
  })

  it('bad input from a real peer is dropped, counted against its peer id and logged; the store is unchanged', async function () {
    const t = await tempDir('convergent-p2p-')
    cleanups.push(t.cleanup)
    const logger = recordingLogger()
    const network = await createLibp2pNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'] })
    const good = await open({ dir: t.dir, network, logger, syncIntervalMs: 0, limits: { maxMessageBytes: GARBAGE_LIMIT } })
    nodes.push({ dir: t.dir, gate: new Gate(), replica: good })
    const col = good.collection('p', { backend: 'yjs' })
    await col.put('k', { v: 1 })

    const evil = await createLibp2pNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'], peers: [good.multiaddrs[0]!] })
    await evil.start({ onMessage: () => {}, onRequest: async () => new Uint8Array(), onPeerConnected: () => {}, onPeerDisconnected: () => {} })
    try {
      const topic = topicOf('default', 'p')
      evil.subscribe(topic)
      await waitFor(() => good.peers().includes(evil.peerId), 'evil connected')
      await new Promise((r) => setTimeout(r, 1_500)) // gossipsub learns the subscription
      for (const [, bytes] of GARBAGE_CASES) await evil.publish(topic, bytes())
      const garbageReply = await evil.request(good.peerId, new Uint8Array([9, 9, 9, 9]))
      expect(garbageReply[2]).to.equal(MessageType.Error)

      await waitFor(() => good.stats().droppedTotal >= GARBAGE_CASES.length + 1, `every drop counted (${good.stats().droppedTotal})`)
      const dropped = good.stats().peers[evil.peerId]!.dropped as Record<string, number>
      const expected: Record<string, number> = {}
      for (const [, , reason] of GARBAGE_CASES) expected[reason] = (expected[reason] ?? 0) + 1
      expected.malformed! += 1 // the sync-protocol garbage
      for (const [reason, n] of Object.entries(expected)) expect(dropped[reason], reason).to.equal(n)
      expect(logger.lines.some((l) => JSON.stringify(l).includes(evil.peerId))).to.equal(true)

      await expectUntouchedAndServing(col)
    } finally {
      await evil.stop()
    }
  })
})
