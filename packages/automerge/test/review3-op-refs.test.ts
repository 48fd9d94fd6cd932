// Third review of op-refs.ts: the rebuild without the queue (applyDelta, withoutQueue, rebuilt),
// inserts into lists a live chain made (checkAhead), and objects written in (checkApplied).
// Each "HOLE n" test failed then and states what must hold; "probe" tests are attacks that held.
// HOLE 1 here (a hostile's rebuild dropped honest queued changes too; HOLE 2 is its replica-level
// form, packages/core/test/review3-op-refs.test.ts) is fixed: the rebuild drops only the refused
// changes (backend.ts rebuildWithout). The cost test prints per-delta timings.
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { backend, badOn, crafted, HOSTILE, idAt, OTHER, plainDoc, run, type Doc, type Op } from './op-refs-helpers.js'

function startOpOn(doc: Doc): number {
  return (
    A.getAllChanges(doc)
      .map((c) => A.decodeChange(c))
      .reduce((max, c) => Math.max(max, c.startOp + c.ops.length - 1), 0) + 1
  )
}

/** OTHER's honest Y then C on `doc` (C depends on Y). */
function honestPair(doc: Doc): { y: Uint8Array; c: Uint8Array } {
  const yDoc = A.change(A.clone(doc, { actor: OTHER }), { time: 0 }, (d) => void (d['y'] = 'y'))
  const y = A.getLastLocalChange(yDoc)!
  const cDoc = A.change(A.clone(yDoc), { time: 0 }, (d) => void (d['c'] = 'c'))
  return { y, c: A.getLastLocalChange(cDoc)! }
}

/** HOSTILE's honest-looking D (held back) and a bad X on it, which waits for D. */
function trigger(doc: Doc, tag: string, seq = 1): { d: Uint8Array; x: Uint8Array } {
  const dDoc = A.change(A.clone(doc, { actor: HOSTILE }), { time: 0 }, (d) => void (d[`q${tag}`] = tag))
  const d = A.getLastLocalChange(dDoc)!
  return { d, x: badOn(dDoc, HOSTILE, { seq: seq + 1 }) }
}

describe('third review of op-refs: rebuild without the queue, made lists, objects written in', () => {
  describe('rebuild without the queue', () => {
    it('probe: a bad delta while honest changes are queued is still refused (not accepted by the retry), and the honest queued change stays', () => {
      const doc = plainDoc()
      const { y, c } = honestPair(doc)
      expect(A.decodeChange(c).deps).to.deep.equal([A.decodeChange(y).hash])
      const r = run(doc, [c, badOn(doc), y])
      expect(r.verdicts).to.deep.equal(['applied', 'ERR_INVALID_DELTA', 'applied'])
      expect(r.rebuilds).to.equal(0)
      expect(r.state['c']).to.equal('c')
      expect(r.state['k']).to.equal(1)
    })

    it('probe: the bad queued X is dropped by the rebuild, never applied; nothing stays queued', () => {
      const doc = plainDoc()
      const { d, x } = trigger(doc, '1')
      const r = run(doc, [x, d])
      expect(r.verdicts).to.deep.equal(['applied', 'applied'])
      expect(r.state['k']).to.equal(1) // X's delete never took effect
      expect(r.pending).to.equal(false)
    })

    it("HOLE 1 (honest data dropped by a hostile, medium): HOSTILE's own bad X queued for its own D, then D, wipes OTHER's honest queued change C too (acknowledged 'applied' when it came); C is back only if some peer sends it again", () => {
      const doc = plainDoc()
      const { y, c } = honestPair(doc)
      const { d, x } = trigger(doc, '1')
      // C waits for Y (delivered out of order); HOSTILE parks X, then sends D: rebuild.
      const r = run(doc, [c, x, d, y])
      expect(r.verdicts).to.deep.equal(['applied', 'applied', 'applied', 'applied'])
      expect(r.rebuilds).to.equal(1)
      // Should hold: the rebuild drops only what was refused (X); C, which the delta did not
      // release and which nothing judged, stays queued and applies with Y.
      expect(r.state['c'], 'honest queued C survives a rebuild it had no part in').to.equal('c')
    })
  })

  describe('live-path inserts into lists the chain made (checkAhead)', () => {
    /** HOSTILE's change on `doc`, ops built from its first op counter. */
    function listChange(doc: Doc, build: (id: (n: number) => string) => Op[]): Uint8Array {
      const s = startOpOn(doc)
      return crafted(
        doc,
        HOSTILE,
        build((n) => `${s + n}@${HOSTILE}`),
      )
    }
    const mk = (key: string): Op => ({ action: 'makeList', obj: '_root', key, pred: [] })
    const ins = (obj: string, elemId: string, value: unknown, extra: Partial<Op> = {}): Op =>
      ({ action: 'set', obj, elemId, insert: true, value, pred: [], ...extra }) as Op

    const cases: [string, (id: (n: number) => string) => Op[]][] = [
      ['an insert after an element of ANOTHER list the chain made', (id) => [mk('l1'), mk('l2'), ins(id(0), '_head', 1), ins(id(1), id(2), 2)]],
      [
        "an insert into a nested list after the nested list's own make op",
        (id) => [mk('l1'), { ...ins(id(0), '_head', undefined), action: 'makeList' }, ins(id(1), id(1), 1)],
      ],
      ['an insert into a made list after an element made later in the change', (id) => [mk('l1'), ins(id(0), id(2), 1), ins(id(0), '_head', 2)]],
      ['an insert into a made list after its own id', (id) => [mk('l1'), ins(id(0), id(1), 1)]],
      ['an insert with a pred (its own earlier element)', (id) => [mk('l1'), ins(id(0), '_head', 1), ins(id(0), id(1), 2, { pred: [id(1)] })]],
      [
        'a delete in a made list of an element of another made list',
        (id) => [mk('l1'), mk('l2'), ins(id(0), '_head', 1), ins(id(1), '_head', 2), { action: 'del', obj: id(1), elemId: id(2), pred: [id(2)] } as Op],
      ],
      [
        'a set (no insert) at an element of another made list',
        (id) => [
          mk('l1'),
          mk('l2'),
          ins(id(0), '_head', 1),
          ins(id(1), '_head', 2),
          { action: 'set', obj: id(1), elemId: id(2), value: 9, pred: [id(2)] } as Op,
        ],
      ],
      ['a map key written in a made list', (id) => [mk('l1'), { action: 'set', obj: id(0), key: 'a', value: 1, pred: [] }]],
      ['an insert into the old list l after an element of a made list', (id) => [mk('l1'), ins(id(0), '_head', 1), ins('__L__', id(1), 2)]],
    ]
    for (const [name, build] of cases) {
      it(`probe: ${name}: refused`, () => {
        const doc = plainDoc()
        const l = idAt(doc, '_root', 'l')
        const change = listChange(doc, (id) => build(id).map((op) => (op.obj === '__L__' ? { ...op, obj: l } : op)))
        const r = run(doc, [change])
        expect(r.verdicts).to.deep.equal(['ERR_INVALID_DELTA'])
      })
    }

    it("probe: honest nested arrays, text-like lists and overwrites in a new list (one chain of two changes) are taken and read the same as Automerge's", () => {
      const doc = plainDoc()
      const a = A.change(A.clone(doc, { actor: OTHER }), { time: 0 }, (d) => {
        d['n'] = [[1, [2, 3]], { z: [4] }, 'x']
      })
      const b = A.change(a, { time: 0 }, (d) => {
        const n = d['n'] as unknown[]
        n.splice(1, 0, [5])
        ;(n[0] as unknown[])[0] = 7
        n.push([[8]])
      })
      const delta = A.saveSince(b, A.getHeads(doc))
      const r = run(doc, [delta])
      expect(r.verdicts).to.deep.equal(['applied'])
      expect(r.state['n']).to.deep.equal(A.toJS(b)['n'])
    })
  })

  describe('objects written in (checkApplied)', () => {
    it("probe: a write into a map made concurrently (not in the change's past) is refused", () => {
      const doc = plainDoc()
      const other = A.change(A.clone(doc, { actor: OTHER }), { time: 0 }, (d) => void (d['o'] = { a: 1 }))
      const o = idAt(other, '_root', 'o')
      const bad = crafted(doc, HOSTILE, [{ action: 'set', obj: o, key: 'b', value: 2, pred: [] }])
      // Both in one delta (so Automerge has the object), and after it.
      const r1 = run(doc, [backend.mergeDeltas([A.getLastLocalChange(other)!, bad])])
      const r2 = run(other, [bad])
      expect([r1.verdicts, r2.verdicts]).to.deep.equal([['ERR_INVALID_DELTA'], ['ERR_INVALID_DELTA']])
    })

    it("probe: a write into a map in the change's past but deleted at its dependencies (honest Automerge cannot reach it) — taken, invisible, loads", () => {
      const doc = plainDoc()
      const gone = A.change(A.clone(doc, { actor: OTHER }), { time: 0 }, (d) => void delete d['m'])
      const m = idAt(doc, '_root', 'm')
      const write = crafted(gone, HOSTILE, [{ action: 'set', obj: m, key: 'y', value: 2, pred: [] }])
      const r = run(gone, [write])
      // Taken (it is in the change's past), and harmless: it stays invisible, and the document loads.
      expect([r.verdicts, r.state, r.loads]).to.deep.equal([['applied'], A.toJS(gone), 'loads'])
    })
  })
})
