// A change that skips its actor's seq (seq-gaps.ts): Automerge panics applying it after touching
// the document, so it is refused before (review-s35b HOLE 2b).
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { backend, edited, HOSTILE, OTHER, outcome, plainDoc, step, WRITER } from './op-refs-helpers.js'

describe('automerge backend: a change that skips its actor seq is refused before it touches the document', () => {
  it('without the check, Automerge panics on it (the harm): a fresh actor seq 2 on top of the heads', () => {
    const doc = plainDoc()
    const change = edited(step(doc, HOSTILE, (d) => void (d['k'] = 9)).change, { seq: 2 })
    expect(() => A.applyChanges(A.clone(doc), [change])).to.throw(/unwrap|panic/i)
  })

  it("refuses a fresh actor's seq 2, and an actor's seq 3 after its seq 1, untouched: the caller keeps the entity", () => {
    const doc = plainDoc()
    const fresh = edited(step(doc, HOSTILE, (d) => void (d['k'] = 9)).change, { seq: 2 })
    const first = step(doc, OTHER, (d) => void (d['k'] = 2))
    const skipping = edited(step(first.doc, OTHER, (d) => void (d['k'] = 3)).change, { seq: 3 })
    for (const [delta, on] of [
      [fresh, doc],
      [skipping, first.doc],
    ] as const) {
      const got = outcome(A.clone(on), delta)
      expect(got).to.not.equal('applied')
      expect(got).to.include({ untouched: true })
      expect((got as { message: string }).message).to.match(/skips its actor's seq/)
    }
  })

  it('takes honest changes whose previous change is a head, a few changes back, before them in the delta, or further back than the walk (the whole history read)', () => {
    let doc = plainDoc()
    // OTHER writes once, then WRITER 200 times: OTHER's last change is 200 changes back.
    const once = step(doc, OTHER, (d) => void (d['o'] = 1))
    doc = once.doc
    for (let i = 0; i < 200; i++) doc = step(doc, WRITER, (d) => void (d['w'] = i)).doc
    const later = step(doc, OTHER, (d) => void (d['o'] = 2))
    expect(A.decodeChange(later.change).seq).to.equal(2)
    expect(outcome(A.clone(doc), later.change)).to.equal('applied')
    // A chain of two of WRITER's in one delta; the first extends WRITER's own head.
    const a = step(doc, WRITER, (d) => void (d['w'] = 'a'))
    const b = step(a.doc, WRITER, (d) => void (d['w'] = 'b'))
    expect(outcome(A.clone(doc), new Uint8Array([...a.change, ...b.change]))).to.equal('applied')
  })

  it('a seq-2 change whose seq 1 comes in the same delta applies; one whose past is missing waits (queued, not refused)', () => {
    const doc = plainDoc()
    const one = step(doc, HOSTILE, (d) => void (d['h'] = 1))
    const two = step(one.doc, HOSTILE, (d) => void (d['h'] = 2))
    expect(outcome(A.clone(doc), new Uint8Array([...one.change, ...two.change]))).to.equal('applied')
    const queued = backend.applyDelta(A.clone(doc), two.change)
    expect(backend.hasPending(queued)).to.equal(true)
  })

  it('a queued change that skips its seq no longer blocks the change it waits for: the delta applies without the queue (Automerge panicked on every delivery of it, for good, the queue being saved with the document)', () => {
    const doc = plainDoc()
    const honest = step(doc, OTHER, (d) => void (d['k'] = 2))
    const bomb = edited(step(honest.doc, HOSTILE, (d) => void (d['h'] = 1)).change, { seq: 2 })
    // Waits for the honest change (its dependency): judged only once released.
    const queued = backend.applyDelta(A.clone(doc), bomb)
    expect(backend.hasPending(queued)).to.equal(true)
    for (const held of [queued, A.load<Record<string, unknown>>(A.save(queued))]) {
      const next = backend.applyDelta(held, honest.change)
      expect(next['k']).to.equal(2)
      expect(backend.hasPending(next), 'the queue went').to.equal(false)
      expect(backend.rebuilt!(next), 'stored whole by the caller').to.equal(true)
    }
  })

  it("judges a delta's changes in whatever order they come: a chain of 300 sent newest first applies, and with one seq skipped it is refused", () => {
    const doc = plainDoc()
    const changes: Uint8Array[] = []
    let at = doc
    for (let i = 0; i < 300; i++) {
      const next = step(at, HOSTILE, (d) => void (d['n'] = i))
      changes.push(next.change)
      at = next.doc
    }
    const reversed = (list: Uint8Array[]) => new Uint8Array(list.toReversed().flatMap((c) => [...c]))
    expect(outcome(A.clone(doc), reversed(changes))).to.equal('applied')
    // The last change with its seq one too far: its dependency still applies before it.
    const skipped = [...changes.slice(0, -1), edited(changes.at(-1)!, { seq: 301 })]
    expect(outcome(A.clone(doc), reversed(skipped))).to.deep.include({ untouched: true })
  })
})
