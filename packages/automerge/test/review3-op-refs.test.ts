// Third review of op-refs.ts: the rebuild without the queue (applyDelta, withoutQueue, rebuilt),
// inserts into lists a live chain made (checkAhead), and objects written in (checkApplied).
// Each "HOLE n" test failed then and states what must hold; "probe" tests are attacks that held.
// HOLE 1 here (a hostile's rebuild dropped honest queued changes too; HOLE 2 is its replica-level
// form, packages/core/test/review3-op-refs.test.ts) is fixed: the rebuild drops only the refused
// changes (backend.ts rebuildWithout). The cost test prints per-delta timings.
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { ConvergentError } from '@convergent/core'
import { automergeBackend } from '../src/index.js'

type Op = A.DecodedChange['ops'][number] & { elemId?: string; insert?: boolean }
type Doc = A.Doc<Record<string, unknown>>

const WRITER = 'aa'.repeat(16)
const OTHER = 'bb'.repeat(16)
const HOSTILE = 'ff'.repeat(16)

const backend = automergeBackend()

function crafted(doc: Doc, actor: string, ops: Op[], header: Partial<A.DecodedChange> = {}): Uint8Array {
  const fork = A.change(A.clone(doc, { actor }), { time: 0 }, (d) => void (d['zz'] = 1))
  const { hash: _hash, ...change } = A.decodeChange(A.getLastLocalChange(fork)!)
  return A.encodeChange({ ...change, ops, ...header })
}

function idAt(doc: Doc, obj: string, key: string | number): string {
  const all = A.getBackend(doc).getAll(obj, key)
  return String(all[0]![all[0]!.length - 1])
}

function startOpOn(doc: Doc): number {
  return (
    A.getAllChanges(doc)
      .map((c) => A.decodeChange(c))
      .reduce((max, c) => Math.max(max, c.startOp + c.ops.length - 1), 0) + 1
  )
}

function base(): Doc {
  return A.change(A.init<Record<string, unknown>>({ actor: WRITER }), { time: 0 }, (d) => {
    d['m'] = { x: 1 }
    d['l'] = [1, 2, 3]
    d['k'] = 1
  })
}

/** As core stores: deltas, or the document whole when rebuilt; a refusal reloads the stored state. */
function run(doc: Doc, deltas: Uint8Array[]): { verdicts: string[]; value: Record<string, unknown>; rebuilds: number; pending: boolean } {
  let snapshot = A.save(doc)
  let stored: Uint8Array[] = []
  let rebuilds = 0
  let replica = backend.load(snapshot, [], new Uint8Array(16))
  const verdicts = deltas.map((delta) => {
    try {
      replica = backend.applyDelta(replica, delta)
      if (backend.rebuilt?.(replica) === true) {
        rebuilds++
        snapshot = backend.save(replica)
        stored = []
      } else stored.push(delta)
      return 'applied'
    } catch (err) {
      replica = backend.load(snapshot, stored, new Uint8Array(16))
      return err instanceof ConvergentError ? err.code : `threw ${String(err)}`
    }
  })
  backend.dispose?.(replica)
  replica = backend.load(snapshot, stored, new Uint8Array(16))
  const value: Record<string, unknown> = A.toJS(replica)
  const pending = backend.hasPending(replica)
  backend.dispose?.(replica)
  return { verdicts, value, rebuilds, pending }
}

/** A bad change by HOSTILE on `doc`: a delete whose pred names an op that never exists. */
function badOn(doc: Doc, header: Partial<A.DecodedChange> = {}): Uint8Array {
  return crafted(doc, HOSTILE, [{ action: 'del', obj: '_root', key: 'k', pred: [idAt(doc, '_root', 'k'), `500@${WRITER}`] }], header)
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
  return { d, x: badOn(dDoc, { seq: seq + 1 }) }
}

describe('third review of op-refs: rebuild without the queue, made lists, objects written in', () => {
  describe('rebuild without the queue', () => {
    it('probe: a bad delta while honest changes are queued is still refused (not accepted by the retry), and the honest queued change stays', () => {
      const doc = base()
      const { y, c } = honestPair(doc)
      expect(A.decodeChange(c).deps).to.deep.equal([A.decodeChange(y).hash])
      const r = run(doc, [c, badOn(doc), y])
      expect(r.verdicts).to.deep.equal(['applied', 'ERR_INVALID_DELTA', 'applied'])
      expect(r.rebuilds).to.equal(0)
      expect(r.value['c']).to.equal('c')
      expect(r.value['k']).to.equal(1)
    })

    it('probe: the bad queued X is dropped by the rebuild, never applied; nothing stays queued', () => {
      const doc = base()
      const { d, x } = trigger(doc, '1')
      const r = run(doc, [x, d])
      expect(r.verdicts).to.deep.equal(['applied', 'applied'])
      expect(r.value['k']).to.equal(1) // X's delete never took effect
      expect(r.pending).to.equal(false)
    })

    it("HOLE 1 (honest data dropped by a hostile, medium): HOSTILE's own bad X queued for its own D, then D, wipes OTHER's honest queued change C too (acknowledged 'applied' when it came); C is back only if some peer sends it again", () => {
      const doc = base()
      const { y, c } = honestPair(doc)
      const { d, x } = trigger(doc, '1')
      // C waits for Y (delivered out of order); HOSTILE parks X, then sends D: rebuild.
      const r = run(doc, [c, x, d, y])
      expect(r.verdicts).to.deep.equal(['applied', 'applied', 'applied', 'applied'])
      expect(r.rebuilds).to.equal(1)
      // Should hold: the rebuild drops only what was refused (X); C, which the delta did not
      // release and which nothing judged, stays queued and applies with Y.
      expect(r.value['c'], 'honest queued C survives a rebuild it had no part in').to.equal('c')
    })

    it('cost: a permanently queued change (a dependency that never exists) makes every later bad delta fork, save and load the whole document; each D after a parked X forces a rebuild and a snapshot', function () {
      this.timeout(300_000)
      // A document of N small changes.
      const N = 5000
      const handle = A.getBackend(A.init({ actor: WRITER }))
      for (let i = 0; i < N; i++) {
        handle.put('_root', `k${i % 200}`, i, 'int')
        handle.commit(null, 0)
      }
      handle.put('_root', 'k', 1, 'int')
      handle.commit(null, 0)
      const doc = A.load<Record<string, unknown>>(handle.save())
      handle.free()
      const saved = A.save(doc)
      // A change that waits forever (its dependency is a hash no change has).
      const forever = A.encodeChange({
        ...A.decodeChange(crafted(doc, OTHER, [{ action: 'set', obj: '_root', key: 'w', value: 1, pred: [] }])),
        deps: ['11'.repeat(32)],
      })
      const bad = badOn(doc)
      const time = (label: string, queued: boolean, delta: () => Uint8Array, n = 20): number => {
        let replica = backend.load(saved, queued ? [forever] : [], new Uint8Array(16))
        expect(backend.hasPending(replica)).to.equal(queued)
        const t0 = process.hrtime.bigint()
        for (let i = 0; i < n; i++) {
          try {
            replica = backend.applyDelta(replica, delta())
          } catch {
            // refused
          }
        }
        const ms = Number(process.hrtime.bigint() - t0) / 1e6 / n
        backend.dispose?.(replica)
        console.log(`      ${label}${queued ? ' (queue)' : ''}: ${ms.toFixed(2)} ms each`)
        return ms
      }
      const reload = (() => {
        const t0 = process.hrtime.bigint()
        for (let i = 0; i < 10; i++) backend.dispose?.(backend.load(saved, [forever], new Uint8Array(16)))
        return Number(process.hrtime.bigint() - t0) / 1e6 / 10
      })()
      console.log(`      reload from store (what core does after any refusal): ${reload.toFixed(2)} ms`)
      const plain = time('bad delta', false, () => bad)
      const queued = time('bad delta', true, () => bad)
      const live = A.getLastLocalChange(A.change(A.clone(doc, { actor: OTHER }), { time: 0 }, (d) => void (d['live'] = 1)))!
      time('honest live push on the heads', false, () => live, 1)
      time('honest live push on the heads', true, () => live, 1)
      // Rebuild pairs: X parked, then D, each pair new.
      let replica = backend.load(saved, [], new Uint8Array(16))
      const pairs = 10
      let rebuildMs = 0
      let snapMs = 0
      let snapBytes = 0
      for (let i = 0; i < pairs; i++) {
        const current = replica
        const { d, x } = trigger(current, String(i), i + 1)
        replica = backend.applyDelta(replica, x)
        const t0 = process.hrtime.bigint()
        replica = backend.applyDelta(replica, d)
        const t1 = process.hrtime.bigint()
        expect(backend.rebuilt?.(replica)).to.equal(true)
        snapBytes = backend.save(replica).byteLength
        const t2 = process.hrtime.bigint()
        rebuildMs += Number(t1 - t0) / 1e6
        snapMs += Number(t2 - t1) / 1e6
      }
      console.log(
        `      rebuild (D after parked X): ${(rebuildMs / pairs).toFixed(2)} ms + snapshot ${(snapMs / pairs).toFixed(2)} ms (${snapBytes} bytes written whole), per pair of deltas of ~${trigger(doc, 'z').x.byteLength + trigger(doc, 'z').d.byteLength} bytes`,
      )
      backend.dispose?.(replica)
      expect(queued).to.be.greaterThan(0)
      expect(plain).to.be.greaterThan(0)
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
        const doc = base()
        const l = idAt(doc, '_root', 'l')
        const change = listChange(doc, (id) => build(id).map((op) => (op.obj === '__L__' ? { ...op, obj: l } : op)))
        const r = run(doc, [change])
        expect(r.verdicts).to.deep.equal(['ERR_INVALID_DELTA'])
      })
    }

    it("probe: honest nested arrays, text-like lists and overwrites in a new list (one chain of two changes) are taken and read the same as Automerge's", () => {
      const doc = base()
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
      expect(r.value['n']).to.deep.equal(A.toJS(b)['n'])
    })
  })

  describe('objects written in (checkApplied)', () => {
    it("probe: a write into a map made concurrently (not in the change's past) is refused", () => {
      const doc = base()
      const other = A.change(A.clone(doc, { actor: OTHER }), { time: 0 }, (d) => void (d['o'] = { a: 1 }))
      const o = idAt(other, '_root', 'o')
      const bad = crafted(doc, HOSTILE, [{ action: 'set', obj: o, key: 'b', value: 2, pred: [] }])
      // Both in one delta (so Automerge has the object), and after it.
      const r1 = run(doc, [backend.mergeDeltas([A.getLastLocalChange(other)!, bad])])
      const r2 = run(other, [bad])
      expect([r1.verdicts, r2.verdicts]).to.deep.equal([['ERR_INVALID_DELTA'], ['ERR_INVALID_DELTA']])
    })

    it("probe: a write into a map in the change's past but deleted at its dependencies (honest Automerge cannot reach it) — what happens", () => {
      const doc = base()
      const gone = A.change(A.clone(doc, { actor: OTHER }), { time: 0 }, (d) => void delete d['m'])
      const m = idAt(doc, '_root', 'm')
      const write = crafted(gone, HOSTILE, [{ action: 'set', obj: m, key: 'y', value: 2, pred: [] }])
      const r = run(gone, [write])
      console.log(`      write into a deleted map: ${r.verdicts.join(',')} value ${JSON.stringify(r.value)}`)
      expect(r.verdicts).to.have.length(1)
    })
  })
})
