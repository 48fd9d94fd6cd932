import { expect } from 'chai'
import { LoopbackHub, type Network, type ObservedChange, type RoundEvent, type StoreBatchEvent } from '../src/index.js'
import { memoryLevelStore } from '@convergent/level'
import type { StoreOp } from '../src/index.js'
import { closedAfterEach, memoryReplica, recordingLogger, storeWith, waitFor } from './helpers.js'

/** A loopback network that says it was given bootstrap peers (as a libp2p node with `peers` does). */
function withBootstrap(net: Network, peers: string[]): Network {
  Object.defineProperty(net, 'bootstrapPeers', { value: peers })
  return net
}

describe('observing a replica: observe(), status(), cache counters', function () {
  this.timeout(30_000)
  const { replicas } = closedAfterEach()

  it('tells observers of every durable change, local (no peer) and remote (the peer), and stops when asked', async () => {
    const hub = new LoopbackHub()
    const a = await memoryReplica({ network: hub.createNetwork('a') })
    const b = await memoryReplica({ network: hub.createNetwork('b') })
    replicas.push(a, b)
    const seen: ObservedChange[] = []
    const stop = b.observe({ change: (c) => seen.push({ collection: c.collection, id: c.id, peer: c.peer }) })
    await b.collection('mine').put('x', { v: 1 })
    await a.collection('theirs').put('y', { v: 1 })
    await waitFor(() => seen.length === 2, 'the remote change observed')
    expect(seen).to.deep.equal([
      { collection: 'mine', id: 'x', peer: undefined },
      { collection: 'theirs', id: 'y', peer: 'a' },
    ])
    stop()
    await b.collection('mine').put('z', { v: 1 })
    expect(seen).to.have.length(2)
  })

  it('times store batches only while someone listens, and an observer that throws breaks nothing', async () => {
    const logger = recordingLogger()
    const r = await memoryReplica({ logger })
    replicas.push(r)
    const batches: StoreBatchEvent[] = []
    const stopTiming = r.observe({ storeBatch: (b) => batches.push(b) })
    const stopThrowing = r.observe({
      change: () => {
        throw new Error('observer bug')
      },
      storeBatch: () => {
        throw new Error('observer bug')
      },
    })
    await Promise.all([r.collection('c').put('a', { v: 1 }), r.collection('c').put('b', { v: 1 })])
    expect(await r.collection('c').get('a')).to.deep.equal({ v: 1 })
    expect(batches).to.have.length(1) // both commits of one tick: one store write
    expect(batches[0]!.ok).to.equal(true)
    expect(batches[0]!.ops).to.be.greaterThan(4)
    expect(batches[0]!.ms).to.be.at.least(0)
    expect(logger.lines.some((e) => e.message.includes('observer threw'))).to.equal(true)
    stopTiming()
    stopThrowing()
    await r.collection('c').put('c', { v: 1 })
    expect(batches).to.have.length(1)
  })

  it('counts cache hits, misses and evictions in stats()', async () => {
    const r = await memoryReplica({ cacheSize: 2 })
    replicas.push(r)
    const col = r.collection('c')
    for (const id of ['a', 'b', 'c', 'd']) await col.put(id, { v: 1 })
    await col.get('d')
    await col.get('d')
    const { cache, cachedEntities } = r.stats()
    expect(cache.misses).to.equal(4) // each new entity once
    expect(cache.hits).to.be.at.least(2)
    expect(cache.evictions).to.equal(2) // capacity 2, four entities
    expect(cachedEntities).to.equal(2)
    expect(r.cachedByCollection()).to.deep.equal(new Map([['c', 2]]))
  })

  it('reports rounds to observers and in status(): the last round per connected peer, forgotten at disconnect', async () => {
    const hub = new LoopbackHub()
    const a = await memoryReplica({ network: hub.createNetwork('a'), syncOnConnect: false })
    const b = await memoryReplica({ network: hub.createNetwork('b'), syncOnConnect: false })
    replicas.push(a, b)
    const rounds: RoundEvent[] = []
    b.observe({ round: (e) => rounds.push(e) })
    expect(b.status().peers).to.deep.equal([{ id: 'a', lastRound: null }])
    await a.collection('p').put('x', { v: 1 })
    await b.sync()
    expect(rounds).to.have.length(1)
    expect(rounds[0]!.startedBy).to.equal('us')
    expect(rounds[0]!.result?.deltasReceived).to.equal(1)
    const [peer] = b.status().peers
    expect(peer!.id).to.equal('a')
    expect(peer!.lastRound).to.include({ startedBy: 'us', ok: true, entitiesDiffering: 1, deltasReceived: 1, divergent: 0, failedCollections: 0 })
    // a's round with b finds the two equal at once: b (answering) records that too.
    await a.sync()
    expect(rounds.map((e) => e.startedBy)).to.deep.equal(['us', 'peer'])
    expect(b.status().peers[0]!.lastRound).to.include({ startedBy: 'peer', ok: true })
    hub.disconnect('a', 'b')
    await waitFor(() => b.peers().length === 0, 'disconnected')
    expect(b.status().peers).to.deep.equal([])
  })

  it('a failed round is reported with its error', async () => {
    const hub = new LoopbackHub()
    const b = await memoryReplica({ network: hub.createNetwork('b'), syncOnConnect: false, logger: recordingLogger() })
    replicas.push(b)
    const silent = hub.createNetwork('silent')
    await silent.start({ onMessage: () => {}, onRequest: () => Promise.reject(new Error('no')), onPeerConnected: () => {}, onPeerDisconnected: () => {} })
    try {
      await waitFor(() => b.peers().includes('silent'), 'connected')
      const rounds: RoundEvent[] = []
      b.observe({ round: (e) => rounds.push(e) })
      await b.sync().catch(() => undefined)
      expect(rounds).to.have.length(1)
      expect(rounds[0]!.error).to.be.instanceOf(Error)
      const last = b.status().peers[0]!.lastRound!
      expect(last.ok).to.equal(false)
      expect(last.error).to.be.a('string')
    } finally {
      await silent.stop()
    }
  })

  describe('readiness (status().ready)', function () {
    it('is ready at once without a network, or without bootstrap peers', async () => {
      const alone = await memoryReplica()
      const seed = await memoryReplica({ network: new LoopbackHub().createNetwork('seed') })
      replicas.push(alone, seed)
      expect(alone.status().ready).to.include({ ready: true })
      expect(seed.status().ready).to.include({ ready: true })
      expect(seed.status().ready.reason).to.match(/no bootstrap peers/)
    })

    it('with bootstrap peers: not before a round, not after one that received what was missing, ready after one that found nothing missing; not once closed', async () => {
      const hub = new LoopbackHub({ connectOnStart: false })
      const a = await memoryReplica({ network: hub.createNetwork('a'), syncOnConnect: false })
      const b = await memoryReplica({ network: withBootstrap(hub.createNetwork('b'), ['a']), syncOnConnect: false })
      replicas.push(a, b)
      expect(b.status().bootstrapPeers).to.equal(1)
      expect(b.status().ready).to.deep.equal({ ready: false, reason: 'no anti-entropy round yet: 1 bootstrap peer(s) configured, none connected' })
      await a.collection('p').put('x', { v: 1 })
      hub.connect('a', 'b')
      await waitFor(() => b.peers().includes('a'), 'connected')
      expect(b.status().ready.reason).to.match(/waiting for the first anti-entropy round/)
      await b.sync()
      expect(b.status().ready).to.include({ ready: false })
      expect(b.status().ready.reason).to.match(/received 1 delta/)
      await b.sync()
      const ready = b.status().ready
      expect(ready).to.include({ ready: true })
      expect(ready.reason).to.match(/found nothing missing/)
      expect(ready.since).to.be.a('string')
      // Latched: a later round that receives something does not take readiness back.
      await a.collection('p').put('y', { v: 2 })
      hub.disconnect('a', 'b') // no push: the next round carries it
      hub.connect('a', 'b')
      await waitFor(() => b.peers().includes('a'), 'reconnected')
      await a.collection('p').put('z', { v: 2 })
      await b.sync()
      expect(b.status().ready.ready).to.equal(true)
      await b.close()
      expect(b.status().ready).to.deep.equal({ ready: false, reason: 'the replica is closed' })
    })

    it('counts only rounds with a bootstrap peer (another one may be as far behind), and deltas it drops do not hold it back', async () => {
      const hub = new LoopbackHub({ connectOnStart: false })
      const a = await memoryReplica({ network: hub.createNetwork('a'), syncOnConnect: false })
      const b = await memoryReplica({
        network: withBootstrap(hub.createNetwork('b'), ['/ip4/127.0.0.1/tcp/1/p2p/a']),
        syncOnConnect: false,
        limits: { maxValueBytes: 200, maxMergedValueBytes: 200 },
      })
      const c = await memoryReplica({ network: hub.createNetwork('c'), syncOnConnect: false })
      replicas.push(a, b, c)
      await a.collection('p').put('small', { v: 1 })
      await a.collection('p').put('big', { s: 'x'.repeat(1000) }) // over b's value limit: b drops it, always
      hub.connect('b', 'c') // c is as empty as b
      await waitFor(() => b.peers().includes('c'), 'b-c connected')
      await b.sync()
      await c.sync()
      expect(b.status().ready.ready).to.equal(false)
      hub.connect('a', 'b')
      await waitFor(() => b.peers().includes('a'), 'a-b connected')
      await b.sync() // receives 'small', drops 'big'
      expect(b.status().ready.ready).to.equal(false)
      await b.sync() // 'big' again, dropped again: nothing it can take is missing
      expect(b.stats().peers.a?.dropped.tooLarge).to.be.at.least(1)
      expect(b.status().ready).to.include({ ready: true })
    })

    it("becomes ready when a peer's round finds the two equal", async () => {
      const hub = new LoopbackHub({ connectOnStart: false })
      const a = await memoryReplica({ network: hub.createNetwork('a'), syncOnConnect: false })
      const b = await memoryReplica({ network: withBootstrap(hub.createNetwork('b'), ['a']), syncOnConnect: false })
      replicas.push(a, b)
      hub.connect('a', 'b')
      await waitFor(() => a.peers().includes('b'), 'connected')
      expect(b.status().ready.ready).to.equal(false)
      await a.sync()
      expect(b.status().ready).to.include({ ready: true })
      expect(b.status().ready.reason).to.match(/a started found both sides equal/)
    })
  })

  it('status() lists collections with their backend and change count, and writes not yet durable', async () => {
    // A store whose writes wait while `held` is set.
    const inner = memoryLevelStore()
    let held: Promise<void> | undefined
    const store = storeWith(inner, { write: async (ops: StoreOp[]) => (await held, inner.write(ops)) })
    const r = await memoryReplica({ store })
    replicas.push(r)
    await r.collection('b', { backend: 'automerge' }).put('x', { v: 1 })
    await r.collection('a', { backend: 'yjs' }).put('x', { v: 1 })
    let release!: () => void
    held = new Promise<void>((resolve) => (release = resolve))
    const writing = Promise.all([r.collection('a').put('y', { v: 1 }), r.collection('a').put('x', { v: 2 })])
    await waitFor(() => r.status().pendingWrites === 2, 'two entities written, not durable')
    release()
    await writing
    const status = r.status()
    expect(status.pendingWrites).to.equal(0)
    expect(status.collectionCount).to.equal(2)
    expect(status.collections).to.deep.equal([
      { name: 'a', backend: 'yjs', changes: 3 },
      { name: 'b', backend: 'automerge', changes: 1 },
    ])
    expect(status.store).to.deep.equal({ corruptRecords: 0, damage: [] })
    expect(status).to.include({ peerId: 'local', namespace: 'default', closed: false })
    expect(JSON.parse(JSON.stringify(status))).to.deep.equal(status)
  })

  it('checkStore() resolves while the store answers and rejects once closed', async () => {
    const r = await memoryReplica()
    await r.checkStore()
    await r.close()
    let code: string | undefined
    await r.checkStore().catch((err: { code?: string }) => (code = err.code))
    expect(code).to.equal('ERR_CLOSED')
  })
})
