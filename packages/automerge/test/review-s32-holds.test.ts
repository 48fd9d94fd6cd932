// Review s32: holdsAll (holds.ts) against A.hasHeads on documents built every way the backend
// builds them — changes applied in several batches, loadIncremental, A.load with
// allowMissingChanges (a saved document followed by changes), A.merge, A.clone, a batch refused
// for a duplicate sequence number, a local change while changes wait — asked about applied,
// queued, missing and unknown hashes, one or several at once, repeated, in upper case.
//
// Why they agree (Automerge 3.4–3.5, rust/automerge): hasHeads is "every hash is in the change
// graph" (getChangeByHash finds a change only there). getMissingDeps walks back from the hashes
// named and the queued changes, through queued changes, to the first hash neither applied nor
// queued. Every apply (applyChanges, loadIncremental, load, merge) ends by popping every queued
// change whose dependencies are all applied or popped (ChangeQueue::pop_topo_sorted_ready), and
// a refused batch (duplicate sequence number) is refused before anything is queued or applied:
// so a queue is never left with a change that could be applied, and an empty answer means
// nothing is queued. A named hash that is queued then makes the answer non-empty, and hasHeads
// decides.
import { expect } from 'chai'
import fc from 'fast-check'
import * as A from '@automerge/automerge'
import { concatBytes } from '@convergent/core'
import { holdsAll } from '../src/holds.js'

type Doc = A.Doc<Record<string, unknown>>
const ACTORS = ['aa', 'bb', 'cc'].map((a) => a.repeat(16))
const SELF = 'dd'.repeat(16)

/** A change graph of three writers that merge each other now and then; and changes that reuse a sequence number. */
function graph(plan: readonly { writer: number; mergeFrom: number; del: boolean }[]): { changes: Uint8Array[]; forks: Uint8Array[] } {
  const docs: Doc[] = ACTORS.map((actor) => A.init({ actor }))
  const changes: Uint8Array[] = []
  plan.forEach(({ writer, mergeFrom, del }, i) => {
    if (mergeFrom !== writer) docs[writer] = A.merge(docs[writer]!, docs[mergeFrom]!)
    docs[writer] = A.change(docs[writer]!, (d) => {
      d[`k${i}`] = i
      if (del && i > 0) delete d[`k${i - 1}`]
    })
    changes.push(A.getLastLocalChange(docs[writer])!)
  })
  const forks = ACTORS.map((actor, i) => A.getLastLocalChange(A.change(A.init<Record<string, unknown>>({ actor }), (d) => void (d.fork = i)))!)
  docs.forEach((d) => A.free(d))
  return { changes, forks }
}

/** One way of bringing `picked` into `doc`; a refusal (duplicate sequence number) leaves `doc` as Automerge leaves it. */
function bring(doc: Doc, picked: Uint8Array[], how: number, step: number): Doc {
  try {
    switch (how) {
      case 0:
        return A.applyChanges(doc, picked)[0]
      case 1:
        return picked.length === 0 ? doc : A.loadIncremental(doc, concatBytes(picked))
      case 2:
        return A.load(concatBytes([A.save(doc), ...picked]), { actor: SELF, allowMissingChanges: true })
      case 3:
        return A.merge(doc, A.applyChanges(A.init<Record<string, unknown>>({ actor: 'ee'.repeat(16) }), picked)[0])
      case 4:
        return A.applyChanges(A.clone(doc, { actor: SELF }), picked)[0]
      default:
        return A.change(A.applyChanges(doc, picked)[0], (d) => void (d.local = step))
    }
  } catch {
    return doc
  }
}

describe('review s32: holdsAll against A.hasHeads on documents built every way', function () {
  this.timeout(60_000)

  it('agrees for applied, queued, missing and unknown hashes, one or several, whatever built the document (fast-check)', () => {
    let queuedRuns = 0
    fc.assert(
      fc.property(
        fc.array(fc.record({ writer: fc.nat(2), mergeFrom: fc.nat(2), del: fc.boolean() }), { minLength: 2, maxLength: 10 }),
        fc.array(fc.record({ pick: fc.array(fc.boolean(), { minLength: 13, maxLength: 13 }), fork: fc.nat(5), how: fc.nat(5) }), {
          minLength: 1,
          maxLength: 5,
        }),
        fc.array(fc.array(fc.nat(), { maxLength: 5 }), { minLength: 1, maxLength: 4 }),
        (plan, steps, asks) => {
          const { changes, forks } = graph(plan)
          const hashes = changes.map((c) => A.decodeChange(c).hash)
          const candidates = [...hashes, ...forks.map((c) => A.decodeChange(c).hash), 'ab'.repeat(32), hashes[0]!.toUpperCase()]
          let doc: Doc = A.init({ actor: SELF })
          steps.forEach(({ pick, fork, how }, step) => {
            const picked = changes.filter((_, i) => pick[i] === true)
            if (fork < forks.length) picked.push(forks[fork]!) // a sequence number already taken, or to be
            doc = bring(doc, picked, how, step)
            if (A.getMissingDeps(doc, []).length > 0) queuedRuns++
            for (const h of candidates) expect(holdsAll(doc, [h]), `hash ${candidates.indexOf(h)}, step ${step}`).to.equal(A.hasHeads(doc, [h]))
            for (const ask of asks) {
              const several = ask.map((p) => candidates[p % candidates.length]!)
              expect(holdsAll(doc, [...several, ...several]), JSON.stringify(ask)).to.equal(A.hasHeads(doc, several))
            }
          })
        },
      ),
      { numRuns: 100 },
    )
    expect(queuedRuns, 'documents with queued changes were asked about').to.be.greaterThan(20)
  })

  it('a refused batch leaves no change that could be applied in the queue: what it would have applied is not held', () => {
    const { changes, forks } = graph([
      { writer: 1, mergeFrom: 1, del: false },
      { writer: 0, mergeFrom: 1, del: false },
    ])
    const [b, x] = changes.map((c) => A.decodeChange(c).hash)
    // x (by aa) waits for b (by bb); then b comes with a change of bb's that reuses b's sequence number.
    let doc = A.applyChanges(A.init<Record<string, unknown>>({ actor: SELF }), [changes[1]!])[0]
    expect(() => A.applyChanges(doc, [changes[0]!, forks[1]!])).to.throw(/duplicate seq/)
    expect([holdsAll(doc, [b!]), A.hasHeads(doc, [b!])]).to.deep.equal([false, false])
    expect([holdsAll(doc, [x!]), A.hasHeads(doc, [x!])]).to.deep.equal([false, false])
    doc = A.applyChanges(doc, [changes[0]!])[0]
    expect([holdsAll(doc, [b!, x!]), A.hasHeads(doc, [b!, x!])]).to.deep.equal([true, true])
  })
})
