// causalSteps (row-guard.ts): what a counter's take-back rule judges each change against — the
// value at its dependencies and with it — read from the document, not from what the receiver held.
import { randomBytes } from 'node:crypto'
import { expect } from 'chai'
import fc from 'fast-check'
import { automergeBackend } from '@convergent/automerge'
import type { Backend, JsonObject } from '../src/index.js'
import { causalSteps, MAX_CAUSAL_STEPS } from '../src/replication/row-guard.js'

describe('causalSteps: each change against its own causal past', () => {
  const backend = automergeBackend() as unknown as Backend<unknown>
  const history = backend.history!

  /** `n` writes on one document from `start`, each setting key k<i> (and deleting the one before). */
  function chain(start: unknown, n: number, tag: string): unknown {
    let doc = start
    let value = backend.read(doc) ?? {}
    for (let i = 0; i < n; i++) {
      const next: JsonObject = { ...value }
      delete next[`${tag}${i - 1}`]
      next[`${tag}${i}`] = i
      doc = backend.put(doc, next).doc
      value = next
    }
    return doc
  }

  it('a lone change that follows the heads is judged against the values the receiver already read (no other value is materialised)', () => {
    const base = chain(backend.create(randomBytes(16)), 3, 'a')
    const version = backend.version(base)
    const after = chain(backend.clone!(base), 1, 'b')
    let reads = 0
    const counting = { ...backend, history: { ...history, readAt: (d: unknown, h: readonly string[]) => (reads++, history.readAt!(d, h)) } } as Backend<unknown>
    const known = { before: { x: 1 }, after: { y: 2 } }
    const steps = causalSteps(counting, after, version, known)!
    expect(steps).to.have.length(1)
    expect(steps[0]).to.include({ before: known.before, after: known.after })
    expect(reads).to.equal(0)
  })

  it('changes of two concurrent branches: each is judged against its own past, never seeing the other branch, and ends on its own change (fast-check over branch lengths)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 }), (left, right) => {
        const base = chain(backend.create(randomBytes(16)), 2, 'a')
        const version = backend.version(base)
        const fork = () => backend.load(backend.save(base), [], randomBytes(16)) // another writer
        const one = chain(fork(), left, 'l')
        const two = chain(fork(), right, 'r')
        const merged = backend.applyDelta(one, backend.deltaSince(two, version)!, { maxDecodedBytes: 1 << 20 })
        const steps = causalSteps(backend, merged, version, { before: backend.read(base), after: backend.read(merged) })!
        if (steps.length !== left + right) return false
        return steps.every((s) => {
          const keys = [...Object.keys(s.before ?? {}), ...Object.keys(s.after ?? {})]
          const mixed = keys.some((k) => k.startsWith('l')) && keys.some((k) => k.startsWith('r'))
          // With it: the value at that change alone, which holds one more key of its branch than before it, or the same one moved on.
          return !mixed && JSON.stringify(s.after) !== JSON.stringify(s.before)
        })
      }),
      { numRuns: 20 },
    )
  })

  it(`a delta of more than ${MAX_CAUSAL_STEPS} changes (a catch-up) is left to the receiver's document; a backend without a history too`, () => {
    const base = backend.create(randomBytes(16))
    const version = backend.version(base)
    const long = chain(backend.clone!(base), MAX_CAUSAL_STEPS + 1, 'k')
    expect(causalSteps(backend, long, version, { before: undefined, after: backend.read(long) })).to.equal(undefined)
    expect(causalSteps({ ...backend, history: undefined }, long, version, { before: undefined, after: undefined })).to.equal(undefined)
  })
})
