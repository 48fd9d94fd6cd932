/**
 * Receive-side refusals whose verdict depends on what the receiver holds (what it happened to
 * take first), not on the change alone: each can part replicas for good, as the merged value
 * limit did (merged-value-limit.test.ts).
 */
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import * as Y from 'yjs'
import { LoopbackHub, type Replica } from '../src/index.js'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { waitFor } from '../src/testing/helpers.js'
import { closedAfterEach, ManualClock, memoryReplica, yjsDeltaOf } from './helpers.js'
import { ctxOf, savedDoc } from './counter-helpers.js'

type Doc = Record<string, unknown>

/** `n` maps nested in one another at key `c`. */
function chain(n: number): Doc {
  let out: Doc = {}
  for (let i = 1; i < n; i++) out = { c: out }
  return out
}

/** The whole Yjs document of an entity as `replica` holds it now. */
async function yjsState(replica: Replica, collection: string, id: string): Promise<Uint8Array> {
  const ctx = ctxOf(replica)
  const entity = await ctx.entities.acquire(ctx.entities.collections.get(collection)!, id)
  try {
    return Y.encodeStateAsUpdate(entity.doc as Y.Doc)
  } finally {
    ctx.entities.release(entity)
  }
}

/** Rounds of anti-entropy both ways. */
async function syncBoth(a: Replica, b: Replica, rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.all([a.sync().catch(() => undefined), b.sync().catch(() => undefined)])
}

describe('review: refusals that depend on the order a replica took things in', function () {
  this.timeout(60_000)
  const { replicas } = closedAfterEach()

  /** a and b holding entity 'k' of 'p' deleted, then cut apart. */
  async function deletedApart(backend: 'yjs' | 'automerge', limits: Record<string, number>): Promise<{ hub: LoopbackHub; a: Replica; b: Replica }> {
    const hub = new LoopbackHub()
    const a = await memoryReplica({ network: hub.createNetwork('a'), limits })
    const b = await memoryReplica({ network: hub.createNetwork('b'), limits })
    replicas.push(a, b)
    await a.collection('p', { backend }).put('k', { v: 1 })
    await waitFor(async () => (await b.collection('p', { backend }).get('k')) !== undefined, 'b has k')
    await a.collection('p').delete('k')
    await waitFor(async () => {
      await b.sync()
      return (await b.collection('p').get('k')) === undefined
    }, 'b has k deleted')
    hub.partition(['a'], ['b'])
    await waitFor(() => a.peers().length === 0 && b.peers().length === 0, 'a and b cut apart')
    return { hub, a, b }
  }

  /** b, which has not seen what a took meanwhile, puts k again (an honest write); healed, a and b must agree on b's put. */
  async function honestPutThenHeal(hub: LoopbackHub, a: Replica, b: Replica): Promise<void> {
    await b.collection('p').put('k', { x: 1 })
    hub.heal()
    await waitFor(() => a.peers().includes('b'), 'a and b connected again')
    await syncBoth(a, b)
    const [va, vb] = [await a.collection('p').get('k'), await b.collection('p').get('k')]
    expect(va, 'a and b converge').to.deep.equal(vb)
    expect(va?.['x']).to.equal(1) // b's honest put is taken everywhere
  }

  // The value limits are checked on the value a delta leaves only while the entity is live: the
  // content of a deleted entity is never measured. A writer nests objects past maxDepth there,
  // one delta at a time (each nests less than maxDepth on its own, which is all the Automerge
  // backend's per-delta check sees); every replica takes them. A put made without them — an
  // honest one, on a replica that has not received them yet — brings the entity back: where the
  // hidden objects are held, it is refused (too deep); where the put was taken first, the hidden
  // objects are refused. Each side refuses the other's, every round. Fixed: a deleted entity's
  // hidden content is held to the same limits as a live value (Backend.readHidden, apply.ts
  // boundsBroken), so the change that nests too deep is refused wherever it comes, as an
  // object's depth is fixed where it was made.
  const limits = { maxDepth: 8 }

  it('HOLE 1 (automerge): objects nested past maxDepth in a deleted entity, revealed by an honest put made without them, part the replicas', async () => {
    const { hub, a, b } = await deletedApart('automerge', limits)
    // The writer: an actor of its own, on the deleted entity as every replica holds it.
    let doc = A.load<Doc>(await savedDoc(a, 'p', 'k'), { actor: 'ee'.repeat(16) })
    doc = A.change(doc, { time: 0 }, (d) => void (d['deep'] = chain(6)))
    const d1 = A.getLastLocalChange(doc)!
    doc = A.change(doc, { time: 0 }, (d) => {
      let o = d['deep'] as Doc
      while (o['c'] !== undefined) o = o['c'] as Doc
      o['c'] = chain(6)
    })
    const d2 = A.getLastLocalChange(doc)!
    // One delta each: the backend's check of one delta's nesting sees 6 levels in each.
    await applyRemoteDelta(ctxOf(a), 'writer', 'p', 'automerge', 'k', d1)
    await applyRemoteDelta(ctxOf(a), 'writer', 'p', 'automerge', 'k', d2)
    await honestPutThenHeal(hub, a, b)
  })

  it('HOLE 1 (yjs): nested maps past maxDepth in a deleted entity, revealed by an honest put made without them, part the replicas', async () => {
    const { hub, a, b } = await deletedApart('yjs', limits)
    const w = new Y.Doc()
    w.clientID = 424242
    Y.applyUpdate(w, await yjsState(a, 'p', 'k'))
    const value = w.getMap('value')
    const before = Y.encodeStateVector(w)
    let deepest!: Y.Map<unknown>
    w.transact(() => {
      let m = new Y.Map<unknown>()
      value.set('deep', m)
      for (let i = 1; i < 12; i++) {
        const n = new Y.Map<unknown>()
        m.set('c', n)
        m = n
      }
      deepest = m
    })
    expect(deepest).to.not.equal(undefined)
    const d = Y.encodeStateAsUpdate(w, before)
    await applyRemoteDelta(ctxOf(a), 'writer', 'p', 'yjs', 'k', d)
    await honestPutThenHeal(hub, a, b)
  })

  // The same with size: hidden content was never held to maxMergedValueBytes, so one writer's
  // own writes, one after the other (no concurrency needed), grow it past the limit while the
  // entity reads as deleted; an honest put made without them shows it where they were taken.
  for (const backend of ['yjs', 'automerge'] as const) {
    it(`HOLE 1b (${backend}): content grown past maxMergedValueBytes in a deleted entity, shown by an honest put made without it, parts the replicas`, async () => {
      const { hub, a, b } = await deletedApart(backend, { maxValueBytes: 4096, maxMergedValueBytes: 6144 })
      if (backend === 'yjs') {
        const w = new Y.Doc()
        w.clientID = 434343
        Y.applyUpdate(w, await yjsState(a, 'p', 'k'))
        for (const f of ['f1', 'f2', 'f3']) {
          const before = Y.encodeStateVector(w)
          w.getMap('value').set(f, 'w'.repeat(3000)) // each write within maxValueBytes, as is the value it leaves
          await applyRemoteDelta(ctxOf(a), 'writer', 'p', 'yjs', 'k', Y.encodeStateAsUpdate(w, before))
        }
      } else {
        let doc = A.load<Doc>(await savedDoc(a, 'p', 'k'), { actor: 'ef'.repeat(16) })
        for (const f of ['f1', 'f2', 'f3']) {
          doc = A.change(doc, { time: 0 }, (d) => void (d[f] = 'w'.repeat(3000)))
          await applyRemoteDelta(ctxOf(a), 'writer', 'p', 'automerge', 'k', A.getLastLocalChange(doc)!)
        }
      }
      await honestPutThenHeal(hub, a, b)
    })
  }

  // The Automerge backend judges a batch's list ops on an old base by reading the changes this
  // replica holds that are not in the base's past (op-refs.ts laterOf), and stopped a batch at
  // MAX_SCANNED_CHANGES (100,000) read: a second old base was refused once the first read that
  // many — as invalidDelta, for good. How many a base costs is what the receiver holds beyond it,
  // not anything of the change. Two honest list inserts made on two old bases (as two replicas
  // cut off from a busy writer make them) were taken by a replica that held little beyond them,
  // and refused by one that held 100,000 changes more, every round (measured: 2 drops a round in
  // four rounds, each in a fresh minute; a's list stayed [1, 2, 3], b's [1, 9, 2, 9, 3]).
  // Fixed: with a budget (a peer's delta) each author's account bounds its reads, and running
  // out of it is a rate (the delta comes again), not a refusal; MAX_SCANNED_CHANGES bounds only
  // batches judged without one. ~15 s, most of it making the 100,000 changes.
  it('HOLE 4 (automerge, fixed): two list inserts on two old bases were refused for good by a replica that holds 100,000 changes more, taken by one that holds fewer', async function () {
    this.timeout(600_000)
    const hub = new LoopbackHub()
    const clock = new ManualClock() // minutes of the history-read budget pass at the test's word
    const a = await memoryReplica({ network: hub.createNetwork('a'), clock })
    const b = await memoryReplica({ network: hub.createNetwork('b'), clock })
    replicas.push(a, b)
    await a.collection('p', { backend: 'automerge' }).put('k', { l: [1, 2, 3] })
    await waitFor(async () => (await b.collection('p', { backend: 'automerge' }).get('k')) !== undefined, 'b has k')
    hub.partition(['a'], ['b'])
    await waitFor(() => a.peers().length === 0 && b.peers().length === 0, 'a and b cut apart')
    const x = await savedDoc(a, 'p', 'k')
    // A busy writer: P1 reaches both, then 100,000 more changes reach a only.
    let busy = A.change(A.load<Doc>(x, { actor: 'bb'.repeat(16) }), { time: 0 }, (d) => void (d['n'] = 0))
    const p1 = A.getLastLocalChange(busy)!
    for (const r of [a, b]) expect(await applyRemoteDelta(ctxOf(r), 'busy', 'p', 'automerge', 'k', p1)).to.equal('applied')
    const afterP1 = A.save(busy)
    for (let i = 1; i <= 100_000; i++) busy = A.change(busy, { time: 0 }, (d) => void (d['n'] = i))
    expect(await applyRemoteDelta(ctxOf(a), 'busy', 'p', 'automerge', 'k', A.save(busy))).to.equal('applied')
    // Two replicas cut off from the busy writer insert into the list: one on X, one on P1.
    const insert = (base: Uint8Array, actor: string, at: number): Uint8Array =>
      A.getLastLocalChange(A.change(A.load<Doc>(base, { actor }), { time: 0 }, (d) => void (d['l'] as number[]).splice(at, 0, 9)))!
    const i1 = insert(x, 'c1'.repeat(16), 1)
    const i2 = insert(afterP1, 'c2'.repeat(16), 2)
    expect(await applyRemoteDelta(ctxOf(b), 'c1', 'p', 'automerge', 'k', i1)).to.equal('applied')
    expect(await applyRemoteDelta(ctxOf(b), 'c2', 'p', 'automerge', 'k', i2)).to.equal('applied')
    hub.heal()
    await waitFor(() => a.peers().includes('b'), 'a and b connected again')
    // Rounds in fresh minutes of the budget: what is only rate-limited is taken in one of them.
    for (let minute = 0; minute < 4; minute++) {
      await syncBoth(a, b, 1)
      await clock.advance(61_000)
    }
    const [va, vb] = [await a.collection('p').get('k'), await b.collection('p').get('k')]
    expect(vb?.['n'], 'b has the busy writer’s changes').to.equal(100_000)
    expect(va, 'a and b converge').to.deep.equal(vb)
  })

  // The Automerge backend refuses a delta whose changes nest objects past maxDepth among
  // themselves (chunks.ts nestingDepth: objects made outside the delta count from 0). Which
  // changes come in one delta is the sender's choice of the moment — live pushes one by one, a
  // catch-up after a partition all together — so the verdict depends on how the receiver came by
  // them. Objects written into a map concurrently removed are never shown, so no value limit
  // measures them: a writer nests them past maxDepth in two deltas, each nesting less, which a
  // replica takes one by one; a replica that was cut off meanwhile gets them in one delta and
  // refuses it, every round, for good (and every later change of the entity with it). Open, and
  // hostile only (honest changes nest within maxDepth from the root, so no batch of them nests
  // past it): applying such a delta change by change fixed it, but made a chain of L changes,
  // each one map deeper, cost O(L²) before it was refused (review-today HOLE 1: 24 s of event
  // loop for a 142 KB delta), so it was taken back. An order-free rule needs each made object's
  // depth from the root, which Automerge gives only while the object is visible.
  it.skip('HOLE 5 (automerge): objects nested past maxDepth under a removed map, sent in two deltas, are refused for good by a replica that catches up on them in one', async () => {
    const hub = new LoopbackHub()
    const a = await memoryReplica({ network: hub.createNetwork('a'), limits })
    const b = await memoryReplica({ network: hub.createNetwork('b'), limits })
    replicas.push(a, b)
    await a.collection('p', { backend: 'automerge' }).put('k', { m: { z: 1 } })
    await waitFor(async () => (await b.collection('p', { backend: 'automerge' }).get('k')) !== undefined, 'b has k')
    hub.partition(['a'], ['b'])
    await waitFor(() => a.peers().length === 0 && b.peers().length === 0, 'a and b cut apart')
    const x = await savedDoc(a, 'p', 'k')
    // The writer, on x: a chain under m, then more of it (each delta nests 6).
    let doc = A.change(A.load<Doc>(x, { actor: 'ab'.repeat(16) }), { time: 0 }, (d) => void ((d['m'] as Doc)['c'] = chain(6)))
    const d1 = A.getLastLocalChange(doc)!
    doc = A.change(doc, { time: 0 }, (d) => {
      let o = d['m'] as Doc
      while (o['c'] !== undefined) o = o['c'] as Doc
      o['c'] = chain(6)
    })
    const d2 = A.getLastLocalChange(doc)!
    // Meanwhile a removes m (an honest write, concurrent with the writer's), then takes the writer's deltas one by one.
    await a.collection('p').update('k', () => ({ v: 1 }))
    expect(await applyRemoteDelta(ctxOf(a), 'writer', 'p', 'automerge', 'k', d1)).to.equal('applied')
    expect(await applyRemoteDelta(ctxOf(a), 'writer', 'p', 'automerge', 'k', d2)).to.equal('applied')
    hub.heal()
    await waitFor(() => a.peers().includes('b'), 'a and b connected again')
    await syncBoth(a, b)
    expect(await b.collection('p').get('k'), 'b catches up').to.deep.equal(await a.collection('p').get('k'))
  })

  // A collection takes the backend of the first delta for it that a replica takes. A writer
  // sends a valid Yjs delta for a new collection to one replica and a valid Automerge delta to
  // another: each makes the collection with its own backend, and from then on neither takes the
  // other's side of it, for good (anti-entropy logs "not synced" and skips the collection; a
  // push of the other backend is dropped as backendMismatch; the application cannot open it
  // with the other backend either: ERR_BACKEND_MISMATCH). Measured: a holds 'n' as yjs with e1,
  // b as automerge with e2; after three rounds neither holds the other's entity (and no drop was
  // counted: the round skipped the collection, logged only — counted since, the test above). Not fixed: a collection's backend
  // cannot change once it holds data, and nothing (the policy included) names a collection's
  // backend ahead of its first delta, so there is no order-free rule to apply here.
  it('HOLE 2 (detected, not repaired): anti-entropy counts a collection held under another backend per peer as backendMismatch (it only logged it)', async () => {
    const hub = new LoopbackHub()
    const a = await memoryReplica({ network: hub.createNetwork('a') })
    const b = await memoryReplica({ network: hub.createNetwork('b') })
    replicas.push(a, b)
    await waitFor(() => a.peers().includes('b'), 'connected')
    expect(await applyRemoteDelta(ctxOf(a), 'writer', 'n', 'yjs', 'e1', yjsDeltaOf({ v: 1 }))).to.equal('applied')
    const am = A.change(A.init<Doc>({ actor: 'dd'.repeat(16) }), { time: 0 }, (d) => {
      d['\u0000deleted'] = false
      d['v'] = 2
    })
    expect(await applyRemoteDelta(ctxOf(b), 'writer', 'n', 'automerge', 'e2', A.getLastLocalChange(am)!)).to.equal('applied')
    await syncBoth(a, b)
    expect(a.stats().peers.b?.dropped.backendMismatch, 'a counts b').to.be.greaterThan(0)
    expect(b.stats().peers.a?.dropped.backendMismatch, 'b counts a').to.be.greaterThan(0)
  })

  it.skip('HOLE 2: a writer that sends a new collection under one backend to a and another to b parts them on it for good', async () => {
    const hub = new LoopbackHub()
    const a = await memoryReplica({ network: hub.createNetwork('a') })
    const b = await memoryReplica({ network: hub.createNetwork('b') })
    replicas.push(a, b)
    await waitFor(() => a.peers().includes('b'), 'connected')
    const am = A.change(A.init<Doc>({ actor: 'dd'.repeat(16) }), { time: 0 }, (d) => {
      d['\u0000deleted'] = false
      d['v'] = 2
    })
    expect(await applyRemoteDelta(ctxOf(a), 'writer', 'n', 'yjs', 'e1', yjsDeltaOf({ v: 1 }))).to.equal('applied')
    expect(await applyRemoteDelta(ctxOf(b), 'writer', 'n', 'automerge', 'e2', A.getLastLocalChange(am)!)).to.equal('applied')
    await syncBoth(a, b)
    const held = async (r: Replica) => [await r.collection('n').get('e1'), await r.collection('n').get('e2')]
    expect(await held(a), 'a and b converge on collection n').to.deep.equal(await held(b))
  })

  // Past maxCollections a replica refuses new collections from peers, but not the
  // application's own. Two honest replicas, apart, each open one new collection: each is then
  // at the limit, and refuses the other's for good (no round brings them together). Measured
  // with maxCollections 2: after three rounds a lacks 'qb' and b lacks 'qa' (3 and 4 deltas
  // dropped as collectionLimit). Not fixed: a
  // bound on collections held cannot also take every collection peers hold; which ones a
  // replica keeps follows the order they came in.
  it.skip('HOLE 3: two honest replicas at maxCollections each refuse the collection the other made for good', async () => {
    const hub = new LoopbackHub()
    const a = await memoryReplica({ network: hub.createNetwork('a'), limits: { maxCollections: 2 } })
    const b = await memoryReplica({ network: hub.createNetwork('b'), limits: { maxCollections: 2 } })
    replicas.push(a, b)
    await a.collection('p').put('k', { v: 1 })
    await waitFor(async () => (await b.collection('p').get('k')) !== undefined, 'b has k')
    hub.partition(['a'], ['b'])
    await waitFor(() => a.peers().length === 0 && b.peers().length === 0, 'a and b cut apart')
    await a.collection('qa').put('x', { v: 'a' })
    await b.collection('qb').put('y', { v: 'b' })
    hub.heal()
    await waitFor(() => a.peers().includes('b'), 'a and b connected again')
    await syncBoth(a, b)
    // Looked at without opening them (the application's own open would make them).
    const has = (r: Replica, name: string) => ctxOf(r).entities.collections.has(name)
    expect([has(a, 'qb'), has(b, 'qa')], 'each holds the other’s collection').to.deep.equal([true, true])
  })
})
