// holdsAll answers A.hasHeads from the change graph (holds.ts): it must agree with hasHeads for
// every hash — applied, queued for a missing dependency, or unknown — whatever waits in the
// document, alone or several at once.
import { expect } from 'chai'
import fc from 'fast-check'
import * as A from '@automerge/automerge'
import { holdsAll } from '../src/holds.js'

type Doc = A.Doc<Record<string, unknown>>

/** Changes of two writers on one document: `a`'s chain and `b`'s, each building on all before it. */
function history(steps: readonly boolean[]): Uint8Array[] {
  let a: Doc = A.init({ actor: 'aa'.repeat(16) })
  let b: Doc = A.init({ actor: 'bb'.repeat(16) })
  const changes: Uint8Array[] = []
  steps.forEach((byA, i) => {
    if (byA) {
      a = A.change(a, (d) => void (d[`k${i}`] = i))
      const c = A.getLastLocalChange(a)!
      changes.push(c)
      b = A.applyChanges(b, [c])[0]
    } else {
      b = A.change(b, (d) => void (d[`k${i}`] = i))
      const c = A.getLastLocalChange(b)!
      changes.push(c)
      a = A.applyChanges(a, [c])[0]
    }
  })
  return changes
}

describe('automerge backend: holdsAll', () => {
  it('agrees with A.hasHeads for applied, queued and unknown hashes, one and several at once (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }),
        fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 4 }),
        (steps, given, picks) => {
          const changes = history(steps)
          const hashes = changes.map((c) => A.decodeChange(c).hash)
          // The changes not given are missing: those after one of them wait in the queue.
          const doc = A.applyChanges(
            A.init<Record<string, unknown>>({ actor: 'cc'.repeat(16) }),
            changes.filter((_, i) => given[i]),
          )[0]
          const candidates = [...hashes, 'ab'.repeat(32), '00'.repeat(32)]
          for (const h of candidates) expect(holdsAll(doc, [h]), `hash ${candidates.indexOf(h)}`).to.equal(A.hasHeads(doc, [h]))
          const several = picks.map((p) => candidates[p % candidates.length]!)
          expect(holdsAll(doc, several)).to.equal(A.hasHeads(doc, several))
          A.free(doc)
        },
      ),
      { numRuns: 200 },
    )
  })

  it('says no for a change that waits for a missing one (applied changes around it are held)', () => {
    const changes = history([true, true, false])
    const [h1, h2, h3] = changes.map((c) => A.decodeChange(c).hash)
    const doc = A.applyChanges(A.init<Record<string, unknown>>(), [changes[0]!, changes[2]!])[0]
    expect(holdsAll(doc, [h1!])).to.equal(true)
    expect(holdsAll(doc, [h3!]), 'queued').to.equal(false)
    expect(holdsAll(doc, [h2!]), 'missing').to.equal(false)
    expect(holdsAll(doc, [])).to.equal(true)
  })

  it('throws for a hash that is not 32 bytes of hex, as hasHeads does', () => {
    const doc = A.init<Record<string, unknown>>()
    expect(() => holdsAll(doc, ['zz'])).to.throw()
    expect(() => A.hasHeads(doc, ['zz'])).to.throw()
  })
})
