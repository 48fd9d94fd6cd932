// The Automerge backend's history (what signed heads are checked against): changes read from
// their headers must be exactly what Automerge decodes — actor, seq, hash and dependencies — for
// any change (a compressed one, which local changes never are, is decoded instead).
import { expect } from 'chai'
import fc from 'fast-check'
import * as A from '@automerge/automerge'
import { automergeBackend } from '../src/index.js'

describe('automerge backend: history', () => {
  const backend = automergeBackend()
  const history = backend.history!

  it('changesIn and lastChange, read from change headers, agree with A.decodeChange for random edits of any size (fast-check)', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 600 }), { minLength: 1, maxLength: 6 }), fc.integer({ min: 0, max: 0xffffff }), (texts, tag) => {
        let doc = A.init<Record<string, unknown>>({ actor: tag.toString(16).padStart(8, '0').padEnd(48, '0') })
        const changes: Uint8Array[] = []
        for (const t of texts) {
          doc = A.change(doc, (d) => void (d.text = t))
          changes.push(A.getLastLocalChange(doc)!)
        }
        const delta = backend.mergeDeltas(changes)
        const decoded = changes.map((c) => A.decodeChange(c))
        const read = history.changesIn(delta)!
        expect(read.map((c) => [c.actor, c.seq, c.hash, c.deps])).to.deep.equal(decoded.map((c) => [c.actor, c.seq, c.hash, c.deps]))
        const last = decoded.at(-1)!
        expect(history.lastChange(delta)).to.deep.equal({ actor: last.actor, seq: last.seq, hash: last.hash })
      }),
      { numRuns: 100 },
    )
  })

  it('actorsIn names every actor whose changes a delta holds: changes or a whole document', () => {
    let a = A.init<Record<string, unknown>>({ actor: 'aa'.repeat(24) })
    a = A.change(a, (d) => void (d.x = 1))
    let b = A.merge(A.init<Record<string, unknown>>({ actor: 'bb'.repeat(24) }), a)
    b = A.change(b, (d) => void (d.y = 2))
    expect(history.actorsIn(A.save(b)).sort()).to.deep.equal(['aa'.repeat(24), 'bb'.repeat(24)])
    expect(history.actorsIn(A.getLastLocalChange(b)!)).to.deep.equal(['bb'.repeat(24)])
    expect(history.actorsIn(backend.mergeDeltas([A.getLastLocalChange(a)!, A.getLastLocalChange(b)!])).sort()).to.deep.equal(['aa'.repeat(24), 'bb'.repeat(24)])
  })

  it('changesIn says a whole document cannot be read ahead (undefined); holds and changesSince follow the document', () => {
    let doc = A.init<Record<string, unknown>>()
    doc = A.change(doc, (d) => void (d.a = 1))
    const before = backend.version(doc)
    doc = A.change(doc, (d) => void (d.a = 2))
    expect(history.changesIn(A.save(doc))).to.equal(undefined)
    const since = history.changesSince(doc, before)
    expect(since.map((c) => c.seq)).to.deep.equal([2])
    expect(history.holds(doc, since[0]!.hash)).to.equal(true)
    expect(history.holds(doc, '00'.repeat(32))).to.equal(false)
  })
})
