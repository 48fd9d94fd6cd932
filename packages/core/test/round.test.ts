// One anti-entropy round against peers that do not play by the rules: its budget, the
// caller's signal, roots in pages and their summary, names it must not use, failures that
// stay in one collection, and collections announced on creation.
import { expect } from 'chai'
import { LoopbackHub, sha256, type Replica, type Store } from '../src/index.js'
import { encodeMessage, MessageType } from '../src/internal.js'
import { classicLevelStore } from '@convergent/level'
import { closedAfterEach, dump, hostile, memoryReplica, spy, storeWith, tempDir, waitFor, type Answer } from './helpers.js'

/** A root digest that differs from everything (so the victim pulls the collection). */
const SOME_ROOT = sha256('some root')

/** Answers a roots request with `roots`, and a range request with a continuation that advances by one entity. */
function creepingRanges(roots: [string, string, Uint8Array][]): Answer {
  return (type, body) => {
    if (type === MessageType.RootsRequest) return encodeMessage(MessageType.RootsResponse, { r: roots })
    if (type === MessageType.RangeRequest) {
      const s = (body as { s: number }).s
      return encodeMessage(MessageType.RangeResponse, { e: [[`junk-${s}`, new Uint8Array([1, 2, 3])]], n: { r: [[0, 65535]], s: s + 1 } })
    }
    return encodeMessage(MessageType.Error, { m: 'no' })
  }
}

describe('round: an anti-entropy round with one peer', function () {
  this.timeout(30_000)
  const { replicas, nets } = closedAfterEach()

  async function victim(hub: LoopbackHub, limits: Record<string, number> = {}, store?: Store): Promise<Replica> {
    const r = await memoryReplica({ network: hub.createNetwork('victim'), syncOnConnect: false, limits, ...(store ? { store } : {}) })
    replicas.push(r)
    return r
  }

  it('stops at its budget of requests when a peer keeps it going one entity at a time', async () => {
    const hub = new LoopbackHub()
    nets.push(await hostile(hub, 'evil', creepingRanges([['p', 'yjs', SOME_ROOT]])))
    const r = await victim(hub, { maxRoundRequests: 50 })
    await waitFor(() => r.peers().includes('evil'), 'connected')
    const err = await r.sync().then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    )
    expect(err?.message).to.match(/budget of 50 requests/)
    expect(r.stats().peers.evil!.dropped.overBudget).to.equal(1)
    expect(r.collections()).to.not.include('p') // every junk delta was dropped
  })

  it('honours its signal at every wait, also while a previous round with the peer hangs', async () => {
    const hub = new LoopbackHub()
    nets.push(await hostile(hub, 'evil', () => new Promise<Uint8Array>(() => {}))) // never answers
    const r = await victim(hub)
    await waitFor(() => r.peers().includes('evil'), 'connected')
    const stuck = r.sync() // hangs on the roots request
    stuck.catch(() => undefined)
    const started = Date.now()
    const err = await r.sync({ signal: AbortSignal.timeout(200) }).then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    )
    expect(err?.code).to.equal('ERR_ABORTED')
    expect(Date.now() - started).to.be.below(2000)
  })

  it('stops at its time budget', async () => {
    const hub = new LoopbackHub()
    nets.push(await hostile(hub, 'evil', () => new Promise<Uint8Array>(() => {})))
    const r = await victim(hub, { roundTimeoutMs: 200 })
    await waitFor(() => r.peers().includes('evil'), 'connected')
    const err = await r.sync().then(
      () => undefined,
      (e: Error) => e,
    )
    expect(err?.message).to.match(/budget of 200 ms/)
  })

  it('takes a continuation that brings no entity as a bad answer for that collection only', async () => {
    const hub = new LoopbackHub()
    const honest = await memoryReplica({ network: hub.createNetwork('honest') })
    replicas.push(honest)
    await honest.collection('ok', { backend: 'yjs' }).put('k', { v: 1 })
    nets.push(
      await hostile(hub, 'evil', (type) => {
        if (type === MessageType.RootsRequest) return encodeMessage(MessageType.RootsResponse, { r: [['p', 'yjs', SOME_ROOT]] })
        if (type === MessageType.RangeRequest) return encodeMessage(MessageType.RangeResponse, { e: [], n: { r: [[1, 65535]], s: 0 } })
        return encodeMessage(MessageType.Error, { m: 'no' })
      }),
    )
    const r = await victim(hub)
    await waitFor(() => r.peers().length === 2, 'connected')
    const results = await r.sync()
    const evil = results.find((x) => x.peer === 'evil')!
    expect(evil.failed.map((f) => f.collection)).to.deep.equal(['p'])
    expect(evil.failed[0]!.error).to.match(/without progress/)
    expect(await dump(r, 'ok')).to.deep.equal({ k: { v: 1 } }) // the honest peer's round went on
  })

  it('never uses a collection name from a peer that it would refuse from the application (NUL)', async () => {
    const hub = new LoopbackHub()
    const honest = await memoryReplica({ network: hub.createNetwork('honest') })
    replicas.push(honest)
    await honest.collection('ok', { backend: 'yjs' }).put('k', { v: 1 })
    nets.push(await hostile(hub, 'evil', creepingRanges([['evil\u0000name', 'yjs', SOME_ROOT]])))
    const r = await victim(hub)
    await waitFor(() => r.peers().length === 2, 'connected')
    for (let i = 0; i < 2; i++) await r.sync()
    expect(r.collections()).to.deep.equal(['ok'])
    expect(r.stats().peers.evil!.dropped.invalidId).to.equal(2)
    expect(await dump(r, 'ok')).to.deep.equal({ k: { v: 1 } })
  })

  it('does not keep a failed digest load: the next round reads it again', async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const first = await memoryReplica({ store: classicLevelStore(dir) })
      await first.collection('p', { backend: 'yjs' }).put('mine', { v: 0 })
      await first.close()
      const inner = classicLevelStore(dir)
      let broken = true
      const flaky = storeWith(inner, {
        leaves(collection: string) {
          if (collection === 'p' && broken) throw new Error('disk hiccup')
          return inner.leaves(collection)
        },
      })
      const hub = new LoopbackHub()
      const honest = await memoryReplica({ network: hub.createNetwork('honest') })
      replicas.push(honest)
      await honest.collection('p', { backend: 'yjs' }).put('k', { v: 1 })
      const r = await victim(hub, {}, flaky)
      await waitFor(() => r.peers().includes('honest'), 'connected')
      const [once] = await r.sync()
      expect(once!.failed.map((f) => f.collection)).to.deep.equal(['p'])
      broken = false
      const [again] = await r.sync()
      expect(again!.failed).to.deep.equal([])
      expect(await dump(r, 'p')).to.deep.equal({ k: { v: 1 }, mine: { v: 0 } })
    } finally {
      await cleanup()
    }
  })

  it('syncs more collections than one roots page holds, page by page, and ends an in-sync round in one message', async () => {
    const hub = new LoopbackHub()
    const limits = { rootsPerPage: 10 }
    const a = await memoryReplica({ network: hub.createNetwork('a'), syncOnConnect: false, limits })
    let rootsRequests = 0
    const b = await memoryReplica({
      network: spy(hub.createNetwork('b'), { sent: (type) => void (type === MessageType.RootsRequest && rootsRequests++) }),
      syncOnConnect: false,
      limits,
    })
    replicas.push(a, b)
    const names = Array.from({ length: 35 }, (_, i) => `c${String(i).padStart(4, '0')}`)
    await Promise.all(names.map((n) => a.collection(n, { backend: 'yjs' }).put('k', { n })))
    await waitFor(() => b.peers().includes('a'), 'connected')
    await b.sync()
    expect(b.collections().length).to.equal(35)
    expect(await b.collection('c0034').get('k')).to.deep.equal({ n: 'c0034' })
    expect(rootsRequests).to.equal(4)
    const [again] = await b.sync()
    expect(again!.messages).to.equal(1)
    expect(again!.bytesReceived).to.be.below(200)
  })

  it('tells peers of a collection created after they connected: they sync it at once', async () => {
    const hub = new LoopbackHub()
    const a = await memoryReplica({ network: hub.createNetwork('a'), syncIntervalMs: 0 })
    const b = await memoryReplica({ network: hub.createNetwork('b'), syncIntervalMs: 0 })
    replicas.push(a, b)
    await waitFor(() => b.peers().includes('a') && a.peers().includes('b'), 'connected')
    await new Promise((r) => setTimeout(r, 50)) // the on-connect round (nothing to sync) is over
    await a.collection('late', { backend: 'yjs' }).put('k', { v: 1 })
    await waitFor(async () => b.collections().includes('late') && (await b.collection('late').get('k'))?.v === 1, 'b has the new collection', 2000)
    // From then on b is subscribed: pushes reach it.
    await a.collection('late').put('k2', { v: 2 })
    await waitFor(async () => (await b.collection('late').get('k2'))?.v === 2, 'the next write arrives by push', 2000)
  })
})
