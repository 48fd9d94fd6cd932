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
import { memoryReplica, yjsDeltaOf } from './helpers.js'
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
  let replicas: Replica[] = []
  afterEach(async () => {
    await Promise.all(replicas.map((r) => r.close()))
    replicas = []
  })

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
    // Meanwhile b, which has not seen them, puts k again (an honest write, within the limits).
    await b.collection('p').put('k', { x: 1 })
    hub.heal()
    await waitFor(() => a.peers().includes('b'), 'a and b connected again')
    await syncBoth(a, b)
    const [va, vb] = [await a.collection('p').get('k'), await b.collection('p').get('k')]
    expect(va, 'a and b converge').to.deep.equal(vb)
    expect(va?.['x']).to.equal(1) // b's honest put is taken everywhere
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
    await b.collection('p').put('k', { x: 1 })
    hub.heal()
    await waitFor(() => a.peers().includes('b'), 'a and b connected again')
    await syncBoth(a, b)
    const [va, vb] = [await a.collection('p').get('k'), await b.collection('p').get('k')]
    expect(va, 'a and b converge').to.deep.equal(vb)
    expect(va?.['x']).to.equal(1)
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
      await b.collection('p').put('k', { x: 1 })
      hub.heal()
      await waitFor(() => a.peers().includes('b'), 'a and b connected again')
      await syncBoth(a, b)
      const [va, vb] = [await a.collection('p').get('k'), await b.collection('p').get('k')]
      expect(va, 'a and b converge').to.deep.equal(vb)
      expect(va?.['x']).to.equal(1)
    })
  }

  // A collection takes the backend of the first delta for it that a replica takes. A writer
  // sends a valid Yjs delta for a new collection to one replica and a valid Automerge delta to
  // another: each makes the collection with its own backend, and from then on refuses every
  // write of the other side as backendMismatch, for good (the application's own writes too:
  // opening it with the other backend fails with ERR_BACKEND_MISMATCH). Measured: a holds 'n'
  // as yjs, b as automerge; after three rounds each has dropped the other's deltas as
  // backendMismatch and neither holds the other's entity. Not fixed: a collection's backend
  // cannot change once it holds data, and nothing (the policy included) names a collection's
  // backend ahead of its first delta, so there is no order-free rule to apply here.
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
  // with maxCollections 2: after three rounds a lacks 'qb' and b lacks 'qa'. Not fixed: a
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
