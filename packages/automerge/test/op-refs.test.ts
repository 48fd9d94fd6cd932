// A received change may name (pred, obj, elemId) only ops its author could see: in its own
// causal past, at that place (op-refs.ts). Each hostile change below is one Automerge itself
// takes — and each breaks something: convergence, saving, or loading after a save.
import { expect } from 'chai'
import fc from 'fast-check'
import * as A from '@automerge/automerge'
import type { AutomergeDoc } from '../src/index.js'
import { backend, crafted, exchangeAll, HOSTILE, idAt, objAt, OTHER, replicaOf, run, WRITER, type Doc, type Op } from './op-refs-helpers.js'

describe('automerge backend: a change names only ops it could see (op-refs)', () => {
  /** WRITER's document {m: {x: 1}, l: [1, 2, 3], k: 1}, and OTHER's copy that moved on (k: 2) concurrently. */
  function start(): { base: Doc; other: Doc; otherChange: Uint8Array } {
    const base = A.change(A.init<Record<string, unknown>>({ actor: WRITER }), (d) => {
      d['m'] = { x: 1 }
      d['l'] = [1, 2, 3]
      d['k'] = 1
    })
    const other = A.change(A.clone(base, { actor: OTHER }), (d) => void (d['k'] = 2))
    return { base, other, otherChange: A.getLastLocalChange(other)! }
  }

  /** Applied through the backend to a replica of `doc`: 'applied', or the error's code. */
  const apply = (doc: Doc, delta: Uint8Array): string => run(doc, [delta]).verdicts[0]!

  const hostile: [string, (s: ReturnType<typeof start>) => Op[]][] = [
    // The next op OTHER makes (its change's first op), named before OTHER made it.
    [
      "a pred naming an op not made yet (its writer's next)",
      ({ base }) => [{ action: 'del', obj: '_root', key: 'k', pred: [idAt(base, '_root', 'k'), `8@${WRITER}`] }],
    ],
    ["a pred naming an op that will never exist (a gap in its actor's counters)", () => [{ action: 'del', obj: '_root', key: 'k', pred: [`500@${WRITER}`] }]],
    ['a pred naming a value at another key', ({ base }) => [{ action: 'del', obj: '_root', key: 'k', pred: [idAt(base, '_root', 'k'), objAt(base, 'm')] }]],
    [
      'a pred naming a value of a nested map at another key',
      ({ base }) => [{ action: 'set', obj: objAt(base, 'm'), key: 'y', value: 5, datatype: 'int', pred: [idAt(base, objAt(base, 'm'), 'x')] }],
    ],
    [
      'a list delete whose pred names another element',
      ({ base }) => [
        { action: 'del', obj: objAt(base, 'l'), elemId: idAt(base, objAt(base, 'l'), 0), pred: [idAt(base, objAt(base, 'l'), 1)] } as unknown as Op,
      ],
    ],
    ['a map key written in a list object', ({ base }) => [{ action: 'set', obj: objAt(base, 'l'), key: 'y', value: 1, datatype: 'int', pred: [] }]],
    // Op ids in a change are counters and actor indexes (A.encodeChange refuses 'x', '-1@…', 2^64):
    // the worst a change can name is a counter no op has.
    ['a pred naming op counter 0, which no op has', ({ base }) => [{ action: 'del', obj: '_root', key: 'k', pred: [idAt(base, '_root', 'k'), `0@${WRITER}`] }]],
  ]

  for (const [name, ops] of hostile) {
    it(`refuses ${name}: live (on the heads) and in a batch with a concurrent change, the document unchanged`, () => {
      const s = start()
      const change = crafted(s.base, HOSTILE, ops(s))
      expect(apply(s.base, change), 'live').to.equal('ERR_INVALID_DELTA')
      expect(apply(s.base, backend.mergeDeltas([s.otherChange, change])), 'batch').to.equal('ERR_INVALID_DELTA')
      expect(apply(s.base, s.otherChange), 'the honest change alone').to.equal('applied')
    })
  }

  it('refuses a pred naming a concurrent op at the right place (taken where that op came first, never applies where it comes after)', () => {
    const { base, other, otherChange } = start()
    // HOSTILE's change depends on base only, but deletes OTHER's concurrent value of k.
    const change = crafted(base, HOSTILE, [{ action: 'del', obj: '_root', key: 'k', pred: [idAt(base, '_root', 'k'), idAt(other, '_root', 'k')] }])
    expect(apply(other, change), 'after the op').to.equal('ERR_INVALID_DELTA')
    expect(apply(base, backend.mergeDeltas([otherChange, change])), 'in one batch').to.equal('ERR_INVALID_DELTA')
    expect(apply(base, change), 'before the op').to.equal('ERR_INVALID_DELTA')
  })

  it('the harm is real without the check: Automerge takes these changes, and the document then fails to save or to load again', () => {
    const s = start()
    const broken = hostile.slice(1, 5).map(([name, ops]) => {
      const [doc] = A.applyChanges(A.clone(s.base), [crafted(s.base, HOSTILE, ops(s))])
      try {
        A.load(A.save(doc))
        return `${name}: loads`
      } catch {
        return 'broken'
      }
    })
    expect(broken).to.deep.equal(['broken', 'broken', 'broken', 'broken'])
  })

  it('honest edits by three writers (nested maps made concurrently, counters, list inserts/sets/splices, conflicts), delivered live, in batches, mixing held and new changes, one change at a time in reverse (queued), as whole documents, and to late joiners as changes: never refused, converge (fast-check)', () => {
    const edit = fc.oneof(
      fc.record({ kind: fc.constant('put' as const), key: fc.constantFrom('a', 'b'), value: fc.integer({ min: 0, max: 9 }) }),
      fc.record({ kind: fc.constant('delete' as const), key: fc.constantFrom('a', 'b', 'n') }),
      fc.record({ kind: fc.constant('map' as const), value: fc.integer({ min: 0, max: 9 }) }), // n = {v} afresh: concurrent maps at one key
      fc.record({ kind: fc.constant('nested' as const), key: fc.constantFrom('x', 'y'), value: fc.integer({ min: 0, max: 9 }) }),
      fc.record({ kind: fc.constant('count' as const), by: fc.integer({ min: -3, max: 3 }) }),
      fc.record({
        kind: fc.constant('list' as const),
        op: fc.constantFrom('insert', 'set', 'splice', 'push'),
        at: fc.nat(4),
        value: fc.integer({ min: 0, max: 9 }),
      }),
    )
    const sync = fc.constantFrom('none', 'live', 'batch', 'mixed', 'reversed', 'document', 'joiner')
    const step = fc.record({ writer: fc.nat(2), edits: fc.array(edit, { minLength: 1, maxLength: 3 }), sync })
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 10 }), (steps) => {
        const actors = ['01', '02', '03'].map((a) => a.repeat(16))
        const seed = A.change(A.init<Record<string, unknown>>({ actor: actors[0] }), (d) => {
          d['n'] = {}
          d['l'] = [0]
          d['c'] = new A.Counter(0)
        })
        const docs = actors.map((actor) => A.clone(seed, { actor }))
        const replicas: AutomergeDoc[] = actors.map(() => replicaOf(seed))
        const take = (i: number, delta: Uint8Array): void => {
          replicas[i] = backend.applyDelta(replicas[i]!, delta) // an honest delta must never throw
          docs[i] = A.loadIncremental(docs[i]!, delta)
        }
        for (const { writer, edits, sync } of steps) {
          const heads = A.getHeads(docs[writer]!)
          docs[writer] = A.change(docs[writer]!, (d) => {
            for (const e of edits) {
              if (e.kind === 'put') d[e.key] = e.value
              else if (e.kind === 'delete') delete d[e.key]
              else if (e.kind === 'map') d['n'] = { v: e.value }
              else if (e.kind === 'nested') {
                if (typeof d['n'] === 'object' && d['n'] !== null) (d['n'] as Record<string, number>)[e.key] = e.value
              } else if (e.kind === 'count') {
                if (d['c'] instanceof A.Counter) d['c'].increment(e.by)
                else d['c'] = new A.Counter(e.by)
              } else {
                const list = d['l'] as number[]
                if (e.op === 'insert') (list as unknown as A.List<number>).insertAt(Math.min(e.at, list.length), e.value)
                else if (e.op === 'set' && list.length > 0) list[e.at % list.length] = e.value
                else if (e.op === 'splice' && list.length > 0) list.splice(e.at % list.length, 1, e.value, e.value + 1)
                else list.push(e.value)
              }
            }
          })
          const own = A.saveSince(docs[writer], heads)
          if (own.byteLength === 0) continue
          replicas[writer] = backend.applyDelta(replicas[writer]!, own)
          if (sync === 'none') continue
          const to = (writer + 1) % 3
          const known = A.getHeads(docs[to]!).filter((h) => A.hasHeads(docs[writer]!, [h]))
          if (sync === 'live') take(to, own)
          else if (sync === 'batch') {
            const since = A.saveSince(docs[writer], known)
            if (since.byteLength > 0) take(to, since)
          } else if (sync === 'mixed')
            take(to, A.saveSince(docs[writer], [])) // everything: held and new
          else if (sync === 'document') take(to, A.save(docs[writer]))
          else if (sync === 'reversed') {
            for (const c of A.getChanges(A.view(docs[to]!, known), docs[writer]).reverse()) take(to, c)
          } else {
            // A late joiner given the writer's changes (not its document), then handing them on.
            let joiner = backend.create(new Uint8Array(16).fill(7))
            joiner = backend.applyDelta(joiner, A.saveSince(docs[writer], []))
            expect(JSON.stringify(A.toJS(joiner))).to.equal(JSON.stringify(A.toJS(docs[writer])))
            backend.dispose?.(joiner)
          }
        }
        exchangeAll(docs, take)
        const values = replicas.map((r) => JSON.stringify(A.toJS(r)))
        expect(new Set(values).size).to.equal(1)
        expect(values[0]).to.equal(JSON.stringify(A.toJS(docs[0]!)))
        for (const r of replicas) backend.dispose?.(r)
      }),
      { numRuns: 120 },
    )
  })
})
