// Review s36: the seq-gap check (seq-gaps.ts) and the fallback to the delta alone (applyDelta).
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { concatBytes, ForkedActorError } from '@convergent/core'
import { backend, edited, HOSTILE, OTHER, outcome, plainDoc, step } from './op-refs-helpers.js'

const concat = (...parts: Uint8Array[]): Uint8Array => concatBytes(parts)

describe('review s36: seq gaps and the delta alone', () => {
  it('HOLE 1 (medium): a seq-gap change whose dependency comes in a whole-document chunk of the same delta is not judged (applyingNow only counts change chunks): Automerge panics after touching the document, and the caller discards and reloads the entity (HOLE 2b again, O(history) per push)', () => {
    const doc = plainDoc()
    // A change of OTHER's the document does not hold, carried as a whole document; the bomb depends on it.
    const m = step(doc, OTHER, (d) => void (d['o'] = 1))
    const bomb = edited(step(m.doc, HOSTILE, (d) => void (d['h'] = 1)).change, { seq: 2 })
    expect(A.decodeChange(bomb).deps).to.deep.equal(A.getHeads(m.doc))
    for (const delta of [concat(A.save(m.doc), bomb), concat(bomb, A.save(m.doc))]) {
      const got = outcome(A.clone(doc), delta)
      expect(got).to.not.equal('applied')
      expect((got as { message: string }).message).to.match(/skips its actor's seq/)
      expect(got, 'refused before touching the document: the entity is kept').to.include({ untouched: true })
    }
  })
  it("probe: honest deltas mixing a whole document with changes still apply: the actor's previous change in the document chunk, or the document saved with its queue", () => {
    const doc = plainDoc()
    const one = step(doc, OTHER, (d) => void (d['o'] = 1))
    const two = step(one.doc, OTHER, (d) => void (d['o'] = 2))
    const three = step(two.doc, HOSTILE, (d) => void (d['h'] = 3))
    const four = step(three.doc, OTHER, (d) => void (d['o'] = 4))
    // OTHER's 1 in the document, its 2 (and later 3) as changes, before or after it.
    expect(outcome(A.clone(doc), concat(A.save(one.doc), two.change))).to.equal('applied')
    expect(outcome(A.clone(doc), concat(two.change, A.save(one.doc)))).to.equal('applied')
    expect(outcome(A.clone(doc), concat(A.save(one.doc), two.change, three.change, four.change))).to.equal('applied')
    // A document saved with a queued change (its chunk after the document), then what it waited for.
    const queued = A.loadIncremental(A.clone(one.doc), four.change)
    const withQueue = A.save(queued)
    const applied = backend.applyDelta(A.clone(doc), concat(withQueue, two.change, three.change))
    expect(applied['o']).to.equal(4)
  })
  it('HOLE 2 (medium): the whole-history read is remembered by heads, 8 of them: a peer pushing seq-gap changes to nine entities in turn makes every push read the whole history metadata (getChangesMeta([]): ~3x the A.load of the entity reload it replaced), uncharged to the history-read budget', function () {
    this.timeout(120_000)
    let doc = plainDoc()
    for (let i = 0; i < 3000; i++) doc = A.change(doc, { time: 0 }, (d) => void (d['w' + (i % 50)] = i))
    const saved = A.save(doc)
    const entities = Array.from({ length: 12 }, (_, e) => {
      const own = step(doc, (0x30 + e).toString(16).repeat(16), (d) => void (d['e'] = e))
      const replica = backend.load(concat(saved, own.change), [], new Uint8Array(16))
      // A fresh actor's seq 2: its seq 1 is nowhere, so the walk back finds nothing and the whole history is read.
      const bomb = edited(step(own.doc, HOSTILE, (d) => void (d['h'] = e)).change, { seq: 2 })
      return { replica, bomb }
    })
    const push = (e: number): void => {
      const got = outcome(entities[e]!.replica, entities[e]!.bomb)
      expect(got).to.include({ untouched: true })
    }
    for (let e = 0; e < entities.length; e++) push(e) // each entity's first: its whole history read once
    // Counted, not timed: the whole history's metadata read (getChangesMeta of no heads) per push after each entity's first.
    const proto = Object.getPrototypeOf(A.getBackend(doc)) as { getChangesMeta: (heads: string[]) => unknown[] }
    const own = proto.getChangesMeta
    let wholeReads = 0
    proto.getChangesMeta = function (this: unknown, heads: string[]) {
      if (heads.length === 0) wholeReads++
      return own.call(this, heads)
    }
    try {
      for (let i = 0; i < 36; i++) push(i % entities.length)
    } finally {
      proto.getChangesMeta = own
    }
    expect(wholeReads, 'whole-history reads in 36 refused pushes to 12 entities, each read once before').to.equal(0)
  })
  it('probe: with changes queued, a delta that fails on its own (a fork of an actor) is still refused, as a fork: the fallback to the delta alone does not take it', () => {
    const doc = plainDoc()
    const one = step(doc, OTHER, (d) => void (d['o'] = 1))
    const waiting = step(one.doc, OTHER, (d) => void (d['o'] = 2)) // waits for `one`
    const queued = backend.applyDelta(A.clone(doc), waiting.change)
    expect(backend.hasPending(queued)).to.equal(true)
    const held = backend.applyDelta(queued, step(doc, HOSTILE, (d) => void (d['h'] = 1)).change)
    expect(backend.hasPending(held)).to.equal(true)
    // HOSTILE's seq 1 again, another change: a fork.
    const fork = step(doc, HOSTILE, (d) => void (d['h'] = 2)).change
    expect(() => backend.applyDelta(held, fork)).to.throw(ForkedActorError)
  })
})
