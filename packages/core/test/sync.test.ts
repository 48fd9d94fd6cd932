import { expect } from 'chai'
import { leafOf, LoopbackHub, type Replica } from '../src/index.js'
import { decodeMessage, encodeMessage, MessageType } from '../src/internal.js'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { memoryLevelStore } from '@convergent/level'
import { BACKENDS, dump, ManualClock, memoryReplica, replicaWithRawPeer, settle, spy, waitFor } from './helpers.js'

/** Lets the pushes of writes made so far go out (to nobody), so they cannot cross a later sync. */
function pushesGone(): Promise<void> {
  return new Promise((r) => setTimeout(r, 30))
}

/** The bytes of the deltas themselves: one put of each value into a new document. */
function deltaBytesOf(backend: string, values: object[]): number {
  const b = backend === 'yjs' ? yjsBackend() : automergeBackend()
  let total = 0
  for (const v of values) total += (b as any).put(b.create(new Uint8Array(16).fill(7)), v).delta.byteLength
  return total
}

/** Ids that all fall into one digest leaf (so a range response has to stop inside a leaf). */
function collidingIds(n: number): string[] {
  const target = leafOf('collide-0')
  const ids = ['collide-0']
  for (let i = 1; ids.length < n; i++) if (leafOf(`collide-${i}`) === target) ids.push(`collide-${i}`)
  return ids
}

describe('Anti-entropy: late joiners, who starts, periodic rounds, push batching', function () {
  this.timeout(60_000)
  let replicas: Replica[] = []
  afterEach(async () => {
    await Promise.all(replicas.map((r) => r.close()))
    replicas = []
  })

  // The holder's id sorts first in one case (it starts the round and pushes), last in the other
  // (the joiner starts it and pulls with range requests).
  for (const backend of BACKENDS) {
    for (const [holderId, joinerId, who] of [
      ['a-holder', 'b-joiner', 'the holder pushes'],
      ['z-holder', 'b-joiner', 'the joiner pulls'],
    ] as const) {
      it(`${backend}, ${who}: a late joiner receives each entity once, in few messages, near the delta bytes`, async () => {
        const hub = new LoopbackHub({ connectOnStart: false })
        const sent = { holder: [] as number[], joiner: [] as number[] }
        const a = await memoryReplica({ network: spy(hub.createNetwork(holderId), { sent: (t) => sent.holder.push(t) }) })
        replicas.push(a)
        const values = Array.from({ length: 300 }, (_, i) => ({ i, label: `item ${i}`, tags: ['x', 'y'] }))
        const items = a.collection('items', { backend })
        await Promise.all(values.map((v, i) => items.put(`i${i}`, v)))
        await pushesGone()
        const b = await memoryReplica({ network: spy(hub.createNetwork(joinerId), { sent: (t) => sent.joiner.push(t) }) })
        replicas.push(b)
        hub.connect(holderId, joinerId)
        await waitFor(async () => Object.keys(await dump(b, 'items')).length === 300, 'b has all 300')
        // Rounds queue behind the one in flight: once these are done, every on-connect round is.
        await a.sync()
        await b.sync()
        expect(await dump(b, 'items')).to.deep.equal(await dump(a, 'items'))

        const atJoiner = b.stats().peers[holderId]!
        expect(atJoiner.deltasApplied + atJoiner.deltasDuplicate).to.equal(300)
        expect(atJoiner.deltasDuplicate).to.equal(0)
        const atHolder = a.stats().peers[joinerId]
        expect((atHolder?.deltasApplied ?? 0) + (atHolder?.deltasDuplicate ?? 0)).to.equal(0)

        // Only one side started the on-connect round (plus the two sync() calls above).
        const starter = holderId < joinerId ? sent.holder : sent.joiner
        const other = holderId < joinerId ? sent.joiner : sent.holder
        expect(starter.filter((t) => t === MessageType.RootsRequest)).to.have.length(2)
        expect(other.filter((t) => t === MessageType.RootsRequest)).to.have.length(1)
        // No per-entity version exchange and no tree descent: the whole collection moves at once.
        for (const t of [...sent.holder, ...sent.joiner]) {
          expect([MessageType.RootsRequest, MessageType.RangeRequest, MessageType.DeltasRequest]).to.include(t)
        }
        const bytes = atJoiner.bytesIn + atJoiner.bytesOut
        expect(bytes).to.be.below(1.3 * deltaBytesOf(backend, values) + 2000)
      })
    }
  }

  it('serving a late joiner reads cold entities from the store without sweeping them through the cache', async () => {
    for (const [holderId, joinerId] of [
      ['a-holder', 'b-joiner'],
      ['z-holder', 'b-joiner'],
    ] as const) {
      const hub = new LoopbackHub({ connectOnStart: false })
      const store = memoryLevelStore()
      const a = await memoryReplica({ network: hub.createNetwork(holderId), store, cacheSize: 20 })
      replicas.push(a)
      const items = a.collection('items', { backend: 'automerge' })
      for (let i = 0; i < 200; i++) await items.put(`i${i}`, { i })
      const hot = Array.from({ length: 20 }, (_, k) => `i${180 + k}`) // the last written: still cached
      await pushesGone()
      const b = await memoryReplica({ network: hub.createNetwork(joinerId) })
      replicas.push(b)
      hub.connect(holderId, joinerId)
      await waitFor(async () => Object.keys(await dump(b, 'items')).length === 200, 'b has all 200')

      const read: string[] = []
      const readEntity = store.readEntity.bind(store)
      store.readEntity = (collection, id) => {
        read.push(id)
        return readEntity(collection, id)
      }
      for (const id of hot) expect(await items.get(id)).to.deep.equal({ i: Number(id.slice(1)) })
      expect(read, `${holderId}: hot entities evicted by serving the joiner`).to.deep.equal([])
    }
  })

  it('range transfers resume inside a leaf: tiny chunks, both directions, nothing lost or sent twice', async () => {
    const ids = [...collidingIds(4), ...Array.from({ length: 12 }, (_, i) => `other-${i}`)]
    for (const [holderId, joinerId] of [
      ['a', 'b'],
      ['z', 'b'],
    ]) {
      const hub = new LoopbackHub({ connectOnStart: false })
      const limits = { maxChunkBytes: 1 } // one entity per response or request
      const a = await memoryReplica({ network: hub.createNetwork(holderId), limits })
      replicas.push(a)
      const col = a.collection('c', { backend: 'yjs' })
      for (const id of ids) await col.put(id, { id })
      await pushesGone()
      const b = await memoryReplica({ network: hub.createNetwork(joinerId), limits })
      replicas.push(b)
      hub.connect(holderId!, joinerId!)
      await waitFor(async () => Object.keys(await dump(b, 'c')).length === ids.length, `${joinerId} has all ${ids.length}`)
      await a.sync()
      await b.sync()
      const stats = b.stats().peers[holderId!]!
      expect(stats.deltasApplied).to.equal(ids.length)
      expect(stats.deltasDuplicate).to.equal(0)
      expect(await dump(b, 'c')).to.deep.equal(await dump(a, 'c'))
      await Promise.all(replicas.map((r) => r.close()))
      replicas = []
    }
  })

  it('subtrees only one side holds move whole; the rest is exchanged entity by entity; both sides end equal', async () => {
    const hub = new LoopbackHub({ connectOnStart: false })
    const a = await memoryReplica({ network: hub.createNetwork('a') })
    const b = await memoryReplica({ network: hub.createNetwork('b') })
    replicas.push(a, b)
    const ca = a.collection('p', { backend: 'automerge' })
    const cb = b.collection('p', { backend: 'automerge' })
    for (let i = 0; i < 200; i++) await ca.put(`a${i}`, { i })
    for (let i = 0; i < 30; i++) await cb.put(`b${i}`, { i })
    for (let i = 0; i < 10; i++) {
      await ca.put(`both${i}`, { i, from: 'a' })
      await cb.put(`both${i}`, { i, side: 'b' })
    }
    hub.connect('a', 'b')
    await waitFor(async () => Object.keys(await dump(b, 'p')).length === 240 && Object.keys(await dump(a, 'p')).length === 240, 'both have 240')
    await a.sync()
    expect(await dump(a, 'p')).to.deep.equal(await dump(b, 'p'))
    expect(await cb.get('both3')).to.deep.equal({ i: 3, from: 'a', side: 'b' })
  })

  // How a server that does not serve range requests says so: the type in `u` (the text may
  // say anything; it is never parsed).
  const refusals = {
    'coded (u: the type)': (type: number) => ({ m: 'not served here', u: type }),
  }
  for (const [how, refusal] of Object.entries(refusals)) {
    it(`falls back to the per-entity exchange with a peer that does not know range requests: ${how}`, async () => {
      const hub = new LoopbackHub({ connectOnStart: false })
      let refused = 0
      // The holder answers range requests as a replica of an older version would.
      const old = spy(hub.createNetwork('z-old'), {
        serve: (type) => {
          if (type !== MessageType.RangeRequest) return undefined
          refused++
          return encodeMessage(MessageType.Error, refusal(type))
        },
      })
      const a = await memoryReplica({ network: old })
      replicas.push(a)
      for (let i = 0; i < 50; i++) await a.collection('p', { backend: 'yjs' }).put(`k${i}`, { i })
      const b = await memoryReplica({ network: hub.createNetwork('b-new') })
      replicas.push(b)
      hub.connect('z-old', 'b-new')
      await waitFor(async () => Object.keys(await dump(b, 'p')).length === 50, 'b has all 50')
      expect(refused).to.equal(1)
      await a.collection('p').put('later', { i: -1 })
      await b.sync() // the next round goes straight to the exchange
      expect(refused).to.equal(1)
      expect(await dump(b, 'p')).to.deep.equal(await dump(a, 'p'))
    })
  }

  it('sends digest children sparse to requesters that read it, dense to older ones', async () => {
    const { peer: probe } = await replicaWithRawPeer(replicas, 'probe', 'only')
    const ask = async (z: boolean) => {
      const bytes = await probe.request('good', encodeMessage(MessageType.NodesRequest, { c: 'p', l: 3, n: [leafOf('only') >> 4], ...(z ? { z } : {}) }))
      return { size: bytes.byteLength, body: decodeMessage(bytes, 1 << 20).body as { d?: Uint8Array[]; s?: [number, Uint8Array][] } }
    }
    const dense = await ask(false)
    expect(dense.body.d![0]!.byteLength).to.equal(16 * 32)
    const sparse = await ask(true)
    expect(sparse.body.s![0]![0]).to.equal(1 << (leafOf('only') & 15)) // one child holds anything
    expect(sparse.body.s![0]![1].byteLength).to.equal(32)
    expect(sparse.size).to.be.below(dense.size - 400)
    await probe.stop()
  })

  it('fails the collection (not the round) on a sparse nodes response whose digests do not match its mask, and counts it', async () => {
    const hub = new LoopbackHub({ connectOnStart: false })
    const liar = spy(hub.createNetwork('liar'), {
      serve: (type) => (type === MessageType.NodesRequest ? encodeMessage(MessageType.NodesResponse, { s: [[0b11, new Uint8Array(32)]] }) : undefined),
    })
    const a = await memoryReplica({ network: liar, syncIntervalMs: 0 })
    const b = await memoryReplica({ network: hub.createNetwork('b'), syncIntervalMs: 0 })
    replicas.push(a, b)
    await a.collection('p', { backend: 'yjs' }).put('x', { v: 1 })
    await b.collection('p', { backend: 'yjs' }).put('y', { v: 2 })
    hub.connect('liar', 'b')
    await waitFor(() => b.peers().includes('liar'), 'connected')
    const [round] = await b.sync()
    expect(round!.failed.map((f) => f.collection)).to.deep.equal(['p'])
    expect(round!.failed[0]!.error).to.match(/digest bytes for mask/)
    expect(b.stats().peers.liar!.dropped.malformed).to.be.at.least(1)
    expect((await dump(b, 'p')).y).to.deep.equal({ v: 2 })
  })

  it('answers a request of a type it does not serve with an Error reply naming the type', async () => {
    const { peer: probe } = await replicaWithRawPeer(replicas, 'probe', 'k')
    const reply = decodeMessage(await probe.request('good', encodeMessage(99 as Parameters<typeof encodeMessage>[0], {})), 1 << 20)
    expect(reply.type).to.equal(MessageType.Error)
    expect((reply.body as { u?: number }).u).to.equal(99)
    await probe.stop()
  })

  it('answers a malformed range request with an Error reply and counts it', async () => {
    const { good, peer: evil } = await replicaWithRawPeer(replicas, 'evil', 'k')
    for (const body of [
      { c: 'p', b: 'yjs', r: [[5, 2]] },
      { c: 'p', b: 'yjs', r: [[0, 70_000]] },
      { c: 'p', b: 'yjs', r: 'all' },
      { c: 'p', b: 'yjs', r: [[0, 1]], s: -1 },
    ]) {
      const reply = decodeMessage(await evil.request('good', encodeMessage(MessageType.RangeRequest, body)), 1 << 20)
      expect(reply.type).to.equal(MessageType.Error)
    }
    const ok = decodeMessage(await evil.request('good', encodeMessage(MessageType.RangeRequest, { c: 'p', b: 'yjs', r: [[0, 65535]] })), 1 << 20)
    expect(ok.type).to.equal(MessageType.RangeResponse)
    expect((ok.body as { e: unknown[] }).e).to.have.length(1)
    expect(good.stats().peers.evil!.dropped.malformed).to.equal(4)
    await evil.stop()
  })

  it('on connect, only the lower peer id starts a round; the other starts one only if none came (fallback)', async () => {
    // Both sync on connect: b waits for a's round, and its fallback then does nothing.
    let hub = new LoopbackHub({ connectOnStart: false })
    let clockB = new ManualClock()
    let a = await memoryReplica({ network: hub.createNetwork('a') })
    let b = await memoryReplica({ network: hub.createNetwork('b'), clock: clockB })
    replicas.push(a, b)
    await a.collection('p', { backend: 'yjs' }).put('k', { v: 1 })
    hub.connect('a', 'b')
    await waitFor(async () => (await b.collection('p').get('k')) !== undefined, 'b receives k')
    await clockB.advance(5_000)
    expect(b.stats().peers.a?.syncRounds ?? 0).to.equal(0)
    await Promise.all(replicas.map((r) => r.close()))

    // a does not sync on connect: b's fallback round brings it up to date.
    hub = new LoopbackHub({ connectOnStart: false })
    clockB = new ManualClock()
    a = await memoryReplica({ network: hub.createNetwork('a'), syncOnConnect: false })
    b = await memoryReplica({ network: hub.createNetwork('b'), clock: clockB })
    replicas = [a, b]
    await a.collection('p', { backend: 'yjs' }).put('k', { v: 2 })
    await pushesGone()
    hub.connect('a', 'b')
    await waitFor(() => b.peers().includes('a'), 'connected')
    await settle()
    expect(await b.collection('p').get('k')).to.equal(undefined)
    await clockB.advance(2_000)
    await waitFor(async () => (await b.collection('p').get('k')) !== undefined, 'the fallback round brings k')
    expect(b.stats().peers.a!.syncRounds).to.equal(1)
  })

  it('a periodic round is skipped when the peer ran one with us within the last half interval', async () => {
    const hub = new LoopbackHub({ connectOnStart: false })
    const clockA = new ManualClock()
    const clockB = new ManualClock()
    const a = await memoryReplica({ network: hub.createNetwork('a'), clock: clockA, syncIntervalMs: 1_000, syncOnConnect: false })
    const b = await memoryReplica({ network: hub.createNetwork('b'), clock: clockB, syncIntervalMs: 1_000, syncOnConnect: false })
    replicas.push(a, b)
    hub.connect('a', 'b')
    await waitFor(() => a.peers().includes('b') && b.peers().includes('a'), 'connected')
    await clockB.advance(600) // nothing due yet
    await clockA.advance(1_000) // a's periodic round; b notes it at its 600
    await waitFor(() => a.stats().peers.b?.syncRounds === 1, "a's round")
    await clockB.advance(400) // b's periodic timer: a's round was 400 ms ago → skipped
    await settle()
    expect(b.stats().peers.a?.syncRounds ?? 0).to.equal(0)
    await clockB.advance(1_000) // the next one is not
    await waitFor(() => b.stats().peers.a?.syncRounds === 1, "b's round")
  })

  it('pushDelayMs batches changes made over several ticks into one push', async () => {
    const hub = new LoopbackHub()
    const clock = new ManualClock()
    const a = await memoryReplica({ network: hub.createNetwork('a'), clock, pushDelayMs: 50, syncOnConnect: false })
    const b = await memoryReplica({ network: hub.createNetwork('b'), syncOnConnect: false })
    replicas.push(a, b)
    await waitFor(() => a.peers().includes('b'), 'connected')
    const col = a.collection('p', { backend: 'yjs' })
    b.collection('p', { backend: 'yjs' })
    await col.put('x1', { v: 1 })
    await clock.advance(20)
    await col.put('x2', { v: 2 })
    await clock.advance(20)
    await col.put('x1', { v: 3 })
    expect(a.stats().pushed.messages).to.equal(0)
    await clock.advance(20)
    expect(a.stats().pushed.messages).to.equal(1)
    await waitFor(async () => Object.keys(await dump(b, 'p')).length === 2 && (await b.collection('p').get('x1'))?.v === 3, 'b has both')
    expect(a.stats().pushed.messages).to.equal(1)
  })

  it('rejects a negative pushDelayMs', async () => {
    const hub = new LoopbackHub()
    let err: unknown
    await memoryReplica({ network: hub.createNetwork('a'), pushDelayMs: -1 }).then(
      (r) => void replicas.push(r), // (only if the check is gone: closed with the rest)
      (e: unknown) => (err = e),
    )
    expect((err as { code?: string })?.code).to.equal('ERR_INVALID_ARGUMENT')
  })

  it('a counter low on rights sends one rights request per id at a time, however many decrements ask', async () => {
    const hub = new LoopbackHub()
    let rightsRequests = 0
    const a = await memoryReplica({ network: hub.createNetwork('A') })
    const b = await memoryReplica({ network: spy(hub.createNetwork('B'), { sent: (t) => t === MessageType.RightsRequest && rightsRequests++ }) })
    replicas.push(a, b)
    const sa = a.counter('stock')
    const sb = b.counter('stock', { lowWater: 100 })
    await sa.increment('sku', 1_000)
    await sa.transfer('sku', 'B', 20)
    await waitFor(async () => (await sb.rights('sku')) === 20, 'b holds 20 rights')
    // Every one of these leaves b under its low-water mark, so each asks for a refill.
    await Promise.all(Array.from({ length: 10 }, () => sb.decrement('sku')))
    await waitFor(async () => (await sb.rights('sku')) > 10, 'the refill arrives')
    expect(rightsRequests).to.equal(1)
  })
})
