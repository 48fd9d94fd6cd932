// Second review of op-refs.ts (after the 8 fixes): each "HOLE n" test failed then and states what
// must hold. Fixed: 1 and 2 (an object written in may be a losing copy of concurrently made maps:
// in the change's past, not necessarily shown), 3 (a delta refused only for changes that were
// queued is applied again without them, and the result stored whole: Backend.rebuilt), 4 (queued
// changes are judged with any delta, documents too).
// Pending (it.skip): 5 (cost of the scan for list names on an old base), 6 (equivocation).
// "probe" tests are attacks (or honest histories) that held.
import { expect } from 'chai'
import fc from 'fast-check'
import * as A from '@automerge/automerge'
import type { AutomergeDoc } from '../src/index.js'
import { ForkedActorError } from '@convergent/core'
import { compressChange } from './fixtures.js'
import { backend, badOn, crafted, inEveryOrder, HOSTILE, idAt, objAt, OTHER, replicaOf, run, start, WRITER, type Op } from './op-refs-helpers.js'

describe('second review of op-refs: hand-crafted changes and honest histories', () => {
  it("HOLE 1 (false refusal, critical): the backend's own put, writing through conflicting nested maps (reconcileCopies), is refused by every peer: 'writes in …, which its past does not show'", () => {
    const a = [1, 2, 3].map((n) => new Uint8Array(16).fill(n))
    const first = backend.put(backend.create(a[0]!), { x: 0 })
    let r1 = first.doc
    let r2 = backend.applyDelta(backend.create(a[1]!), first.delta!)
    let r3 = backend.applyDelta(backend.create(a[2]!), first.delta!)
    // Two writers create the nested map n concurrently: two maps at one key, read merged.
    const p1 = backend.put(r1, { x: 0, n: { a: 1, s: { q: 1 } } })
    const p2 = backend.put(r2, { x: 0, n: { b: 2, s: { r: 2 } } })
    r1 = backend.applyDelta(p1.doc, p2.delta!)
    r2 = backend.applyDelta(p2.doc, p1.delta!)
    r3 = backend.applyDelta(backend.applyDelta(r3, p1.delta!), p2.delta!)
    // An ordinary update by r1: it writes into both copies, one of which is the losing value of n (no path).
    const p3 = backend.put(r1, { x: 0, n: { a: 5, b: 6, s: { q: 3, r: 4 } } })
    const verdicts = [r2, r3].map((r) => {
      try {
        const next = backend.applyDelta(r, p3.delta!)
        const value = JSON.stringify(backend.read(next))
        backend.dispose?.(next)
        return value
      } catch (err) {
        return (err as Error).message.slice(0, 60)
      }
    })
    const want = JSON.stringify(backend.read(p3.doc))
    expect(verdicts).to.deep.equal([want, want])
  })

  it('HOLE 2 (divergence): a chain deleting m then writing into m is taken live (checkAhead trusts objects it has typed) and refused in a batch (checkApplied: not shown at its deps)', () => {
    const { base, moved } = start()
    const m = objAt(base, 'm')
    const deleted = A.change(A.clone(base, { actor: HOSTILE }), { time: 0 }, (d) => void delete d['m'])
    const c1 = A.getLastLocalChange(deleted)!
    const c2 = crafted(deleted, HOSTILE, [{ action: 'set', obj: m, key: 'y', value: 5, datatype: 'int', pred: [] }], { seq: 2 })
    const chain = backend.mergeDeltas([c1, c2])
    const live = run(base, [chain]).verdicts[0] // on the heads: checkAhead
    const batch = run(moved, [chain]).verdicts[0] // with a concurrent change held: checkApplied
    const apart = run(base, [c1, c2]).verdicts[1] // one at a time: checkAhead per change
    expect([live, batch, apart], 'one verdict for one change, whichever path judges it').to.satisfy((v: string[]) => new Set(v).size === 1)
  })

  it('HOLE 3 (replica parted for good): a bad change queued for a missing dependency is stored unjudged; the honest dependency is then refused with it, every time', () => {
    const { base } = start()
    // HOSTILE's honest D (not yet here), and a bad X on it, sent first.
    const dDoc = A.change(A.clone(base, { actor: HOSTILE }), { time: 0 }, (d) => void (d['q'] = 1))
    const d = A.getLastLocalChange(dDoc)!
    const x = badOn(dDoc, HOSTILE, { seq: 2 })
    const r = run(base, [x, d, d])
    // Was: ['applied', 'ERR_INVALID_DELTA', 'ERR_INVALID_DELTA']: X waited in the store, and every
    // delivery of D (from any honest peer) brought X in and was refused. Now D is applied to the
    // document without the queue, which is stored whole (Backend.rebuilt): X is gone, also from
    // the store (core test: op-refs-replicas.test.ts).
    expect(r.verdicts).to.deep.equal(['applied', 'applied', 'applied'])
    expect(r.loads).to.equal('loads')
    expect(JSON.parse(r.value)['q']).to.equal(1)
  })

  it('HOLE 4 (unchecked change, unloadable document): a queued bad change is applied unjudged when its dependency comes in a whole document (deltaSince catch-up)', () => {
    const { base } = start()
    const dDoc = A.change(A.clone(base, { actor: HOSTILE }), { time: 0 }, (d) => void (d['q'] = 1))
    const x = badOn(dDoc, HOSTILE, { seq: 2 })
    const r = run(base, [x, A.save(dDoc)])
    // Now: both applied (the document delta is not judged: no change chunk), and the saved
    // document no longer loads ("mismatching heads").
    expect(r.loads).to.equal('loads')
  })

  // Pending: an ancestry index per document (each actor's op ranges and change hashes) would answer
  // in O(log); the scan is bounded per author per minute (MAX_SCANNED_CHANGES per delta only without a budget) and honest catch-ups need it.
  // What one peer can make a replica read is bounded per minute (core: HISTORY_READS_PER_MINUTE,
  // history-reads.test.ts), so a member repeating this gets ~2 a minute read, not one per message.
  it.skip('HOLE 5 (cost): a 118-byte list insert on an old dependency scans every later change (getChangesMeta): ~1.2 s at 100,000 changes against ~1 ms for Automerge', () => {
    const handle = A.getBackend(A.init({ actor: WRITER }))
    const l = handle.putObject('_root', 'l', [])
    handle.insert(l, 0, 1, 'int')
    handle.commit(null, 0)
    const first = handle.getHeads()
    for (let i = 1; i < 3000; i++) {
      handle.put('_root', 'stock', i, 'int')
      handle.commit(null, 0)
    }
    const doc = A.load<Record<string, unknown>>(handle.save())
    handle.free()
    const elem = String(A.getBackend(doc).getAll(l, 0)[0]![2])
    const startOp = A.getBackend(doc).getChangeMetaByHash(first[0]!)!.maxOp + 1
    const change = A.encodeChange({
      actor: HOSTILE,
      author: null,
      seq: 1,
      startOp,
      time: 0,
      message: null,
      deps: first,
      ops: [{ action: 'set', obj: l, elemId: elem, insert: true, value: 5, datatype: 'int', pred: [] } as unknown as Op],
    })
    const replica = replicaOf(doc)
    const proto = Object.getPrototypeOf(A.getBackend(doc)) as Record<string, (...args: unknown[]) => unknown>
    const original = proto['getChangesMeta']!
    let read = 0
    proto['getChangesMeta'] = function (this: unknown, ...args: unknown[]) {
      const out = original.apply(this, args) as unknown[]
      read += out.length
      return out
    }
    try {
      backend.dispose?.(backend.applyDelta(replica, change))
    } finally {
      proto['getChangesMeta'] = original
    }
    expect(read, 'change metadata read to judge one list insert').to.be.below(100)
  })

  // Pending: equivocation (a writer forking its own actor) needs a rule in core that repairs it
  // (e.g. shut out an actor with two signed heads of one seq); op-refs judges one change, not two.
  // Told apart and attributed since (ForkedActorError; core: actor-fork.test.ts), not repaired.
  it.skip('HOLE 6 (replicas part for good, by design): one actor forked — two seq-2 changes on its seq 1 — each taken where it comes first; the other refused there for good ("duplicate seq")', () => {
    const { base } = start()
    const h1doc = A.change(A.clone(base, { actor: HOSTILE }), { time: 0 }, (d) => void (d['q'] = 1))
    const h1 = A.getLastLocalChange(h1doc)!
    const a = A.getLastLocalChange(A.change(A.clone(h1doc, { actor: HOSTILE }), { time: 0 }, (d) => void (d['r'] = 2)))!
    const b = A.getLastLocalChange(A.change(A.clone(h1doc, { actor: HOSTILE }), { time: 0 }, (d) => void (d['s'] = 3)))!
    const one = run(base, [h1, a, b])
    const two = run(base, [h1, b, a])
    // Now {q, r} on one replica, {q, s} on the other, for good. op-refs sees one side only; only an
    // equivocation rule (both refused once both are seen, or the actor shut out) can join them.
    expect(one.value).to.equal(two.value)
  })

  it('probe (HOLE 6, told apart): the second side of a fork is refused as ForkedActorError, naming the actor and seq (core counts it as forked, against the owner: actor-fork.test.ts)', () => {
    const { base } = start()
    const h1doc = A.change(A.clone(base, { actor: HOSTILE }), { time: 0 }, (d) => void (d['q'] = 1))
    const h1 = A.getLastLocalChange(h1doc)!
    const a = A.getLastLocalChange(A.change(A.clone(h1doc, { actor: HOSTILE }), { time: 0 }, (d) => void (d['r'] = 2)))!
    const b = A.getLastLocalChange(A.change(A.clone(h1doc, { actor: HOSTILE }), { time: 0 }, (d) => void (d['s'] = 3)))!
    let doc = replicaOf(base)
    doc = backend.applyDelta(backend.applyDelta(doc, h1), a)
    let thrown: unknown
    try {
      backend.applyDelta(doc, b)
    } catch (err) {
      thrown = err
    }
    expect(thrown).to.be.instanceOf(ForkedActorError)
    expect({ actor: (thrown as ForkedActorError).actor, seq: (thrown as ForkedActorError).seq, code: (thrown as ForkedActorError).code }).to.deep.equal({
      actor: HOSTILE,
      seq: 2,
      code: 'ERR_INVALID_DELTA',
    })
  })

  // —— probes: attacks that held ——

  it('probe: honest edits by 6 actors (lists of maps, maps in lists, nested objects deleted and re-created, concurrent nested maps, counters in lists, text splices, empty changes) — live, in batches, reversed (queued), as one merged batch to a late joiner after a long partition: never refused, converge (fast-check)', () => {
    const edit = fc.oneof(
      fc.record({ kind: fc.constant('put' as const), key: fc.constantFrom('a', 'b'), value: fc.integer({ min: 0, max: 9 }) }),
      fc.record({ kind: fc.constant('drop' as const), key: fc.constantFrom('a', 'n', 'lm', 'cl', 't') }),
      fc.record({ kind: fc.constant('map' as const), value: fc.integer({ min: 0, max: 9 }) }), // n = {v, s: {}, arr: []} afresh
      fc.record({ kind: fc.constant('nested' as const), key: fc.constantFrom('x', 'y'), value: fc.integer({ min: 0, max: 9 }) }),
      fc.record({ kind: fc.constant('deep' as const), value: fc.integer({ min: 0, max: 9 }) }), // n.s.w, n.arr push
      fc.record({
        kind: fc.constant('lm' as const),
        op: fc.constantFrom('push', 'insert', 'set', 'del', 'replace'),
        at: fc.nat(4),
        value: fc.integer({ min: 0, max: 9 }),
      }),
      fc.record({ kind: fc.constant('cl' as const), op: fc.constantFrom('push', 'inc', 'del'), at: fc.nat(4), by: fc.integer({ min: -3, max: 3 }) }),
      fc.record({ kind: fc.constant('text' as const), at: fc.nat(6), del: fc.nat(2), ins: fc.constantFrom('', 'x', 'yz') }),
      fc.record({ kind: fc.constant('empty' as const) }),
    )
    const sync = fc.constantFrom('none', 'none', 'live', 'batch', 'mixed', 'reversed')
    const step = fc.record({ writer: fc.nat(5), edits: fc.array(edit, { minLength: 1, maxLength: 4 }), sync, to: fc.nat(5) })
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 16 }), (steps) => {
        const actors = ['01', '02', '03', '04', '05', '06'].map((a) => a.repeat(16))
        const seed = A.change(A.init<Record<string, unknown>>({ actor: actors[0] }), { time: 0 }, (d) => {
          d['n'] = { s: {}, arr: [] }
          d['lm'] = [{ a: 0 }]
          d['cl'] = [new A.Counter(0)]
          d['t'] = 'hello'
        })
        const seedReplica = replicaOf(seed)
        const docs = actors.map((actor) => A.clone(seed, { actor }))
        const replicas: AutomergeDoc[] = actors.map(() => replicaOf(seed))
        const take = (i: number, delta: Uint8Array): void => {
          replicas[i] = backend.applyDelta(replicas[i]!, delta) // an honest delta must never throw
          docs[i] = A.loadIncremental(docs[i]!, delta)
        }
        for (const { writer, edits, sync, to: target } of steps) {
          const heads = A.getHeads(docs[writer]!)
          for (const e of edits) {
            if (e.kind === 'empty') {
              docs[writer] = A.emptyChange(docs[writer]!, { time: 0 })
              continue
            }
            docs[writer] = A.change(docs[writer]!, { time: 0 }, (d) => {
              const n = d['n'] as Record<string, unknown> | undefined
              if (e.kind === 'put') d[e.key] = e.value
              else if (e.kind === 'drop') delete d[e.key]
              else if (e.kind === 'map') d['n'] = { v: e.value, s: {}, arr: [] }
              else if (e.kind === 'nested') {
                if (n !== undefined) n[e.key] = e.value
              } else if (e.kind === 'deep') {
                if (n !== undefined && typeof n['s'] === 'object') (n['s'] as Record<string, number>)['w'] = e.value
                if (n !== undefined && Array.isArray(n['arr'])) (n['arr'] as number[]).push(e.value)
              } else if (e.kind === 'lm') {
                if (!Array.isArray(d['lm'])) d['lm'] = []
                const list = d['lm'] as Record<string, number>[]
                const i = list.length === 0 ? 0 : e.at % list.length
                if (e.op === 'push' || list.length === 0) list.push({ a: e.value })
                else if (e.op === 'insert') (list as unknown as A.List<unknown>).insertAt(i, { a: e.value, b: [e.value] })
                else if (e.op === 'set') list[i]!['a'] = e.value
                else if (e.op === 'del') list.splice(i, 1)
                else list[i] = { a: e.value }
              } else if (e.kind === 'cl') {
                if (!Array.isArray(d['cl'])) d['cl'] = []
                const list = d['cl'] as A.Counter[]
                const i = list.length === 0 ? 0 : e.at % list.length
                if (e.op === 'push' || list.length === 0) list.push(new A.Counter(e.by))
                else if (e.op === 'inc') list[i]!.increment(e.by)
                else list.splice(i, 1)
              } else if (e.kind === 'text') {
                if (typeof d['t'] !== 'string') d['t'] = 'ab'
                const len = (d['t'] as string).length
                A.splice(d, ['t'], Math.min(e.at, len), Math.min(e.del, len - Math.min(e.at, len)), e.ins)
              }
            })
          }
          const own = A.saveSince(docs[writer]!, heads)
          if (own.byteLength === 0) continue
          replicas[writer] = backend.applyDelta(replicas[writer]!, own)
          const to = target === writer ? (writer + 1) % 6 : target
          const known = A.getHeads(docs[to]!).filter((h) => A.hasHeads(docs[writer]!, [h]))
          if (sync === 'live') take(to, own)
          else if (sync === 'batch') {
            const since = A.saveSince(docs[writer]!, known)
            if (since.byteLength > 0) take(to, since)
          } else if (sync === 'mixed') take(to, A.saveSince(docs[writer]!, []))
          else if (sync === 'reversed') for (const c of A.getChanges(A.view(docs[to]!, known), docs[writer]!).reverse()) take(to, c)
        }
        // A late joiner given everything merged, as one batch of changes; then a pairwise sync.
        let merged = A.clone(docs[0]!)
        for (const d of docs.slice(1)) merged = A.merge(merged, A.clone(d))
        // (Nothing new when every edit was a no-op: an empty delta is refused, so none is sent.)
        const news = A.saveSince(merged, A.getHeads(seed))
        let joiner = news.byteLength > 0 ? backend.applyDelta(replicaOf(seed), news) : replicaOf(seed)
        expect(JSON.stringify(A.toJS(joiner))).to.equal(JSON.stringify(A.toJS(merged)))
        backend.dispose?.(joiner)
        joiner = backend.applyDelta(backend.create(new Uint8Array(16).fill(9)), A.saveSince(merged, []))
        backend.dispose?.(joiner)
        for (let i = 0; i < 6; i++) {
          for (let j = 0; j < 6; j++) {
            const since = A.saveSince(
              docs[i]!,
              A.getHeads(docs[j]!).filter((h) => A.hasHeads(docs[i]!, [h])),
            )
            if (i !== j && since.byteLength > 0) take(j, since)
          }
        }
        const values = replicas.map((r) => JSON.stringify(A.toJS(r)))
        expect(new Set(values).size).to.equal(1)
        expect(values[0]).to.equal(JSON.stringify(A.toJS(merged)))
        for (const r of replicas) backend.dispose?.(r)
        backend.dispose?.(seedReplica)
      }),
      { numRuns: 60 },
    )
  })

  it('probe: list preds naming a superseded value at the right element (set, del, inc on an int) keep their hash and are taken, but converge in every order and load', () => {
    let base = A.change(A.init<Record<string, unknown>>({ actor: WRITER }), { time: 0 }, (d) => void (d['l'] = [1, 2, 3]))
    const l = objAt(base, 'l')
    const e0 = idAt(base, l, 0)
    base = A.change(base, { time: 0 }, (d) => void ((d['l'] as number[])[0] = 10))
    const v2 = idAt(base, l, 0)
    const honest = A.getLastLocalChange(A.change(A.clone(base, { actor: OTHER }), { time: 0 }, (d) => void ((d['l'] as number[])[0] = 50)))!
    const cases: Op[][] = [
      [{ action: 'set', obj: l, elemId: e0, value: 99, datatype: 'int', pred: [e0] } as unknown as Op],
      [{ action: 'del', obj: l, elemId: e0, pred: [e0] } as unknown as Op],
      [{ action: 'inc', obj: l, elemId: e0, value: 3, pred: [v2] } as unknown as Op],
    ]
    for (const ops of cases) {
      const hostile = crafted(base, HOSTILE, ops)
      const runs = inEveryOrder(base, hostile, honest)
      expect(runs.map((r) => r.loads)).to.deep.equal(['loads', 'loads', 'loads', 'loads'])
      expect(new Set(runs.map((r) => r.value)).size).to.equal(1)
    }
  })

  it('probe: writing into an object deleted in its past is harmless in Automerge (converges, keeps its hash, loads): the "shown" rule can be relaxed to "made in its past"', () => {
    const { base } = start()
    const m = objAt(base, 'm')
    const del = A.change(A.clone(base), { time: 0 }, (d) => void delete d['m'])
    const hostile = crafted(del, HOSTILE, [
      { action: 'set', obj: m, key: 'x', value: 9, datatype: 'int', pred: [idAt(base, m, 'x')] },
      { action: 'set', obj: m, key: 'y', value: 9, datatype: 'int', pred: [] },
    ])
    const honest = A.getLastLocalChange(A.change(A.clone(del, { actor: OTHER }), { time: 0 }, (d) => void (d['m'] = { z: 1 })))!
    const values = [
      [hostile, honest],
      [honest, hostile],
    ].map((order) => {
      let d = A.clone(del)
      for (const c of order) d = A.loadIncremental(d, c)
      const held = new Set(
        A.getBackend(d)
          .getChangesMeta([])
          .map((c) => c.hash),
      )
      expect(
        A.getBackend(d)
          .getChanges([])
          .every((c) => held.has(A.decodeChange(c).hash)),
      ).to.equal(true)
      return JSON.stringify(A.toJS(A.load(A.save(d))))
    })
    expect(values[0]).to.equal(values[1])
  })

  it('probe: refused live and in batches — a bad change compressed, twice in one delta; duplicate seq 1 and seq-2 forks in one batch (Automerge); the same good change twice is taken', () => {
    const { base, moved, otherChange } = start()
    const bad = badOn(base)
    expect(run(base, [compressChange(bad)]).verdicts).to.deep.equal(['ERR_INVALID_DELTA'])
    expect(run(moved, [compressChange(bad)]).verdicts).to.deep.equal(['ERR_INVALID_DELTA'])
    expect(run(base, [backend.mergeDeltas([bad, bad])]).verdicts).to.deep.equal(['ERR_INVALID_DELTA'])
    expect(run(base, [backend.mergeDeltas([otherChange, otherChange])]).verdicts).to.deep.equal(['applied'])
    const h1doc = A.change(A.clone(base, { actor: HOSTILE }), { time: 0 }, (d) => void (d['q'] = 1))
    const h1 = A.decodeChange(A.getLastLocalChange(h1doc)!)
    const again = crafted(h1doc, HOSTILE, [{ action: 'set', obj: '_root', key: 'r', value: 2, datatype: 'int', pred: [] }], { seq: 1 })
    expect(run(base, [A.getLastLocalChange(h1doc)!, again]).verdicts[1]).to.equal('ERR_INVALID_DELTA')
    expect(run(base, [backend.mergeDeltas([A.getLastLocalChange(h1doc)!, again])]).verdicts[0]).to.equal('ERR_INVALID_DELTA')
    expect(h1.seq).to.equal(1)
  })

  it('probe: a document holding a bad change, followed by a change chunk, is taken as a laundered (valid, rehashed) change: it loads and forwards cleanly', () => {
    const { base } = start()
    const badDoc = A.applyChanges(A.clone(base), [badOn(base)])[0]
    const extra = A.getLastLocalChange(A.change(A.clone(base, { actor: OTHER }), { time: 0 }, (d) => void (d['z'] = 3)))!
    const mixed = backend.mergeDeltas([A.save(badDoc), extra])
    const r = run(base, [mixed])
    expect(r.loads).to.equal('loads')
    const reloaded = backend.load(A.save(base), [mixed], new Uint8Array(16))
    const forwarded = run(base, [backend.deltaSince(reloaded, backend.version(replicaOf(base)))!])
    expect(forwarded.verdicts).to.deep.equal(['applied'])
    expect(forwarded.value).to.equal(r.value)
    backend.dispose?.(reloaded)
  })
})
