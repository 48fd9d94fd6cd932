// A received change may name (pred, obj, elemId) only ops its author could see: in its own
// causal past, at that place (op-refs.ts). Each hostile change below is one Automerge itself
// takes — and each breaks something: convergence, saving, or loading after a save.
import { expect } from 'chai'
import fc from 'fast-check'
import * as A from '@automerge/automerge'
import { ConvergentError } from '@convergent/core'
import { automergeBackend, type AutomergeDoc } from '../src/index.js'
import { crafted, exchangeAll, HOSTILE, idAt, objAt, OTHER, WRITER, type Doc, type Op } from './op-refs-helpers.js'

describe('automerge backend: a change names only ops it could see (op-refs)', () => {
  const backend = automergeBackend()

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

  /** Applied through the backend to a copy of `doc`: 'applied', or the error's code. */
  function apply(doc: Doc, delta: Uint8Array): string {
    const copy = backend.load(A.save(doc), [], new Uint8Array(16))
    try {
      const next = backend.applyDelta(copy, delta)
      backend.dispose?.(next)
      return 'applied'
    } catch (err) {
      return err instanceof ConvergentError ? err.code : `threw ${String(err)}`
    }
  }

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

  it('honest edits by three writers, exchanged live, in batches with concurrent changes, and as whole documents, are all taken and converge (fast-check)', () => {
    const edit = fc.oneof(
      fc.record({ kind: fc.constant('put' as const), key: fc.constantFrom('a', 'b', 'c'), value: fc.integer() }),
      fc.record({ kind: fc.constant('nested' as const), key: fc.constantFrom('x', 'y'), value: fc.integer() }),
      fc.record({ kind: fc.constant('list' as const), at: fc.nat(5), value: fc.integer(), remove: fc.boolean() }),
      fc.record({ kind: fc.constant('delete' as const), key: fc.constantFrom('a', 'b', 'c') }),
    )
    const step = fc.record({
      writer: fc.nat(2),
      edits: fc.array(edit, { minLength: 1, maxLength: 3 }),
      sync: fc.constantFrom('none', 'live', 'batch', 'document'),
    })
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 12 }), (steps) => {
        const actors = ['01', '02', '03'].map((a) => a.repeat(16))
        const seed = A.change(A.init<Record<string, unknown>>({ actor: actors[0] }), (d) => {
          d['n'] = {}
          d['l'] = [0]
        })
        // Each writer's document (Automerge, where it writes) and its replica (through the backend).
        let docs = actors.map((actor) => A.clone(seed, { actor }))
        let replicas: AutomergeDoc[] = actors.map(() => backend.load(A.save(seed), [], new Uint8Array(16)))
        const take = (i: number, delta: Uint8Array) => {
          replicas[i] = backend.applyDelta(replicas[i]!, delta)
          docs[i] = A.loadIncremental(docs[i]!, delta)
        }
        for (const { writer, edits, sync } of steps) {
          const heads = A.getHeads(docs[writer]!)
          docs[writer] = A.change(docs[writer]!, (d) => {
            for (const e of edits) {
              if (e.kind === 'put') d[e.key] = e.value
              else if (e.kind === 'delete') delete d[e.key]
              else if (e.kind === 'nested') (d['n'] as Record<string, number>)[e.key] = e.value
              else {
                const list = d['l'] as number[]
                if (e.remove && list.length > 0) list.splice(e.at % list.length, 1)
                else if (list.length > 0 && e.at < list.length) list[e.at] = e.value
                else list.push(e.value)
              }
            }
          })
          const own = A.saveSince(docs[writer], heads)
          if (own.byteLength === 0) continue // the edits changed nothing
          replicas[writer] = backend.applyDelta(replicas[writer]!, own)
          if (sync === 'none') continue
          const to = (writer + 1) % 3
          const delta =
            sync === 'live'
              ? A.saveSince(docs[writer], heads)
              : sync === 'batch'
                ? A.saveSince(
                    docs[writer],
                    A.getHeads(docs[to]!).filter((h) => A.hasHeads(docs[writer]!, [h])),
                  )
                : A.save(docs[writer])
          if (delta.byteLength > 0) take(to, delta)
        }
        // Everyone everything, as batches of changes.
        exchangeAll(docs, take)
        const values = replicas.map((r) => JSON.stringify(A.toJS(r)))
        expect(new Set(values).size).to.equal(1)
        for (const r of replicas) backend.dispose?.(r)
        docs = []
        replicas = []
      }),
      { numRuns: 150 },
    )
  })
})
