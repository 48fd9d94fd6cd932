// Fourth review of op-refs.ts: rebuildWithout (applyDelta when checkApplied refuses and the
// document had queued changes). Each "HOLE n" test failed then and states what must hold; both
// are fixed: the rebuild starts from the document as it was before the delta (a released bad
// change can corrupt what it is applied to), drops the whole queue when the delta's own change is
// blamed before refusing it (1), and applies the delta as with no queue (2). "probe" tests are
// attacks that held. The cost test prints numbers.
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { backend, badOn, crafted, HOSTILE, OTHER, plainDoc, run, step, WRITER, type Doc } from './op-refs-helpers.js'

/** A bad change by `actor` on `doc` that Automerge writes out again the same (kept by queuedIn): its ops start far past its past. */
function farOn(doc: Doc, actor: string): Uint8Array {
  const c = crafted(doc, actor, [{ action: 'set', obj: '_root', key: `w${actor.slice(0, 2)}`, value: 1, pred: [] }])
  return crafted(doc, actor, [{ action: 'set', obj: '_root', key: `w${actor.slice(0, 2)}`, value: 1, pred: [] }], { startOp: A.decodeChange(c).startOp + 50 })
}

function hashOf(c: Uint8Array): string {
  return A.decodeChange(c).hash
}

describe('fourth review of op-refs: rebuildWithout', () => {
  // HOSTILE's withheld D, and bad X queued on it.
  const setup = () => {
    const doc = plainDoc()
    const d = step(doc, HOSTILE, (r) => void (r['q'] = 'q'))
    const x = badOn(d.doc, HOSTILE, { seq: 2 })
    return { doc, d, x }
  }

  it("probe: the delta's own bad change, judged only in a later round (a queued X refused first), is still refused", () => {
    const { doc, d, x } = setup()
    // B: another bad change by a fresh actor on D, sent with D; X and B both wait on / come with D.
    const b = badOn(d.doc, OTHER)
    const r = run(doc, [x, backend.mergeDeltas([d.change, b])])
    expect(r.verdicts).to.deep.equal(['applied', 'ERR_INVALID_DELTA'])
    expect(r.state['k']).to.equal(1)
    expect(r.loads).to.equal('loads')
  })

  it('HOLE 2 (a refused change accepted, laundered, high): a whole document holding a bad change B, refused alone, is applied (B takes effect) when any change is queued: the rebuild loads it with loadIncremental (which rewrites B) and `own` leaves document chunks out', () => {
    const { doc, d, x } = setup()
    const b = badOn(d.doc, OTHER)
    const whole = A.save(A.loadIncremental(A.clone(d.doc), b))
    const r = run(doc, [x, whole])
    const alone = run(doc, [whole])
    expect(alone.verdicts).to.deep.equal(['ERR_INVALID_DELTA'])
    expect(r.verdicts[1]).to.equal('ERR_INVALID_DELTA')
    expect(r.state['k']).to.equal(1)
  })

  it('probe: a delta that re-sends the queued bad X with D is refused (X is its own); X never applies', () => {
    const { doc, d, x } = setup()
    const r = run(doc, [x, backend.mergeDeltas([d.change, x])])
    expect(r.verdicts).to.deep.equal(['applied', 'ERR_INVALID_DELTA'])
    expect(r.state['k']).to.equal(1)
  })

  it("probe: the delta's own bad B built on the queued bad X: once X is dropped B only waits (unjudged, accepted), and never applies, not even when X comes again", () => {
    const { doc, d, x } = setup()
    const xDoc = A.loadIncremental(A.clone(d.doc), x)
    const b = crafted(xDoc, OTHER, [{ action: 'set', obj: '_root', key: 'k', value: 9, pred: [`600@${WRITER}`] }])
    expect(A.decodeChange(b).deps).to.deep.equal([hashOf(x)])
    const r = run(doc, [x, backend.mergeDeltas([d.change, b]), x, backend.mergeDeltas([d.change, x])])
    console.log('      verdicts:', r.verdicts.join(', '))
    expect(r.state['k']).to.equal(1)
    expect(r.state['q']).to.equal('q')
    expect(r.loads).to.equal('loads')
  })

  it("HOLE 1 (honest change refused for good, high): a hostile's change queued on an honest Y, forged as WRITER seq 2 reusing WRITER's op ids 1..10, makes Y unreadable once both apply; checkApplied names Y (the first unreadable), the rebuild sees Y is the delta's own and refuses every delivery of Y while X waits (Y alone is applied)", () => {
    const doc = plainDoc()
    const y = step(doc, OTHER, (r) => void (r['l'] as number[]).splice(2, 0, 9)) // after element 2
    // X: "WRITER seq 2", ops 1..10 (overlapping WRITER's real ops), waiting on Y. Refused once judged.
    const x = crafted(
      y.doc,
      WRITER,
      Array.from({ length: 10 }, (_, i) => ({ action: 'set' as const, obj: '_root', key: `f${i}`, value: i, pred: [] })),
      { seq: 2, startOp: 1, deps: [hashOf(y.change)] },
    )
    expect(run(doc, [y.change]).verdicts, 'Y alone').to.deep.equal(['applied'])
    let replica = backend.load(A.save(doc), [x], new Uint8Array(16))
    try {
      replica = backend.applyDelta(replica, y.change)
    } catch (err) {
      console.log('       Y refused with X queued:', String(err).slice(0, 200))
    }
    backend.dispose?.(replica)
    const r = run(doc, [x, y.change, y.change])
    // Should hold: Y (honest, what X waited for) is applied; X, refused, is dropped.
    expect(r.verdicts[1], 'honest Y applied').to.equal('applied')
    expect(r.state['l']).to.deep.equal([1, 2, 9, 3])
  })

  it('probe: four queued bad changes on D beside an honest queued C (waiting on honest Y): C survives D (the README admits losing it only past four)', () => {
    const { doc, d } = setup()
    const ya = step(doc, OTHER, (r) => void (r['y'] = 'y'))
    const c = step(ya.doc, OTHER, (r) => void (r['c'] = 'c'))
    const bads = ['01', '02', '03', '04'].map((a) => farOn(d.doc, a.repeat(16)))
    const r = run(doc, [c.change, ...bads, d.change, ya.change])
    expect(r.verdicts).to.deep.equal(['applied', 'applied', 'applied', 'applied', 'applied', 'applied', 'applied'])
    expect(r.state['k']).to.equal(1)
    expect(r.state['c']).to.equal('c')
  })

  it('probe: five queued bad changes on D (past MAX_REBUILD_ROUNDS): the whole queue goes, the honest queued C with it (as the README says), and D is taken', () => {
    const { doc, d } = setup()
    const ya = step(doc, OTHER, (r) => void (r['y'] = 'y'))
    const c = step(ya.doc, OTHER, (r) => void (r['c'] = 'c'))
    const bads = ['01', '02', '03', '04', '05'].map((a) => farOn(d.doc, a.repeat(16)))
    const r = run(doc, [c.change, ...bads, d.change, ya.change])
    expect(r.verdicts.every((v) => v === 'applied')).to.equal(true)
    expect([r.state['q'], r.state['y'], r.state['c'], r.state['k']]).to.deep.equal(['q', 'y', undefined, 1])
  })
})
