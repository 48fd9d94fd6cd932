import assert from 'node:assert/strict'
import * as Y from 'yjs'
import { toHex } from '@convergent/core'
import { yjsBackend } from '../src/index.js'
import { validateUpdate } from '../src/validate.js'
import { fuzz, type Finding } from './fuzz-updates.js'
import { encodeUpdate, type Struct, type UpdateModel } from './update-model.js'

const backend = yjsBackend()
const actor = (n: number): Uint8Array => Uint8Array.from({ length: 16 }, (_, i) => (i === 3 ? n : i < 4 ? 0 : i))

/** A struct of the model: an item named by its parent, or by its origins. */
const item = (fields: Partial<Extract<Struct, { kind: 'item' }>> & Pick<Extract<Struct, { kind: 'item' }>, 'content'>): Struct => ({
  kind: 'item',
  origin: null,
  rightOrigin: null,
  parent: null,
  parentSub: null,
  ...fields,
})
const update = (groups: UpdateModel['groups'], ds: UpdateModel['ds'] = []): Uint8Array => encodeUpdate({ groups, ds })
const entry = (root: string, key: string, value: unknown): Struct => item({ parent: { root }, parentSub: key, content: { kind: 'any', values: [value] } })

/** Client 7's delta: (7,0) meta.deleted = false, (7,1) value.a = 'trace' — both fine — then `rest`. */
const traceThen = (...rest: Struct[]): Uint8Array =>
  update([{ client: 7, clock: 0, structs: [entry('meta', 'deleted', false), entry('value', 'a', 'trace'), ...rest] }])

/** What applyDelta must leave as it was when it refuses a delta before touching the document. */
const state = (doc: Y.Doc): string => JSON.stringify([backend.read(doc), toHex(backend.versionHash(doc)), backend.hasPending(doc)])

function refusedUnchanged(doc: Y.Doc, delta: Uint8Array, reason: RegExp): void {
  const before = state(doc)
  assert.throws(
    () => backend.applyDelta(doc, delta),
    (err: Error & { code?: string }) => err.code === 'ERR_INVALID_DELTA' && reason.test(err.message),
  )
  assert.equal(state(doc), before)
}

describe('yjs validation against Y.applyUpdate', function () {
  this.timeout(120_000)

  describe('updates Yjs throws on half-way, refused before they touch the document', function () {
    it('a struct referring to a later struct of its own client (the trace-leaving recipe)', function () {
      const c = 7
      // (7,2) names itself as its left origin, which Yjs looks up in its own store (not yet
      // holding it) and throws.
      const delta = traceThen(item({ origin: { client: c, clock: 2 }, content: { kind: 'any', values: [1] } }))
      assert.throws(() => Y.applyUpdate(backend.create(actor(1)), delta))
      const raw = backend.create(actor(1))
      try {
        Y.applyUpdate(raw, delta)
      } catch {
        // Yjs mutates in place: what it integrated before throwing stays.
      }
      assert.deepEqual(backend.read(raw), { a: 'trace' })
      assert.throws(() => validateUpdate(delta), /refers to a later one of its own client/)
      refusedUnchanged(backend.create(actor(1)), delta, /refers to a later one of its own client/)
      // The same for a right origin and for a parent named by id.
      for (const s of [
        item({ rightOrigin: { client: c, clock: 1 }, content: { kind: 'any', values: [1] } }),
        item({ parent: { id: { client: c, clock: 5 } }, parentSub: 'x', content: { kind: 'any', values: [1] } }),
      ]) {
        assert.throws(() => validateUpdate(update([{ client: c, clock: 1, structs: [s] }])), /refers to a later one of its own client/)
      }
    })

    it('a map entry named with its key that holds several values (Yjs throws when it collects the map later)', function () {
      const delta = update([{ client: 9, clock: 0, structs: [item({ parent: { root: 'value' }, parentSub: 'a', content: { kind: 'any', values: [1, 2] } })] }]) // explicit key
      assert.throws(() => validateUpdate(delta), /a map entry holds several values/)
    })

    it('a map entry of several values that takes its key from an entry the document holds', function () {
      const doc = backend.create(actor(1))
      backend.put(doc, { a: 1 })
      const entry = { client: doc.clientID, clock: 1 } // value.a
      const delta = update([{ client: 9, clock: 0, structs: [item({ origin: entry, content: { kind: 'any', values: ['x', 'y'] } })] }])
      assert.doesNotThrow(() => validateUpdate(delta)) // nothing to see without the document
      refusedUnchanged(doc, delta, /a map entry holds several values/)
    })

    it('a client listed twice (Yjs would drop its first group without a word)', function () {
      const one = entry('value', 'a', 1)
      const delta = update([
        { client: 9, clock: 0, structs: [one] },
        { client: 9, clock: 1, structs: [one] },
      ])
      const raw = backend.create(actor(1))
      Y.applyUpdate(raw, delta)
      assert.equal(Y.getState(raw.store, 9), 0, 'Yjs kept only the second group, which waits for the first')
      assert.throws(() => validateUpdate(delta), /lists a client twice/)
    })
  })

  it('what still gets through the scan and throws half-way: a map entry of several values taking its key from a struct of the same delta (applyDelta throws after Yjs integrated it; the caller discards the document)', function () {
    // (7,2) value.k = 0, then (7,3): two values inserted after it.
    const delta = traceThen(entry('value', 'k', 0), item({ origin: { client: 7, clock: 2 }, content: { kind: 'any', values: [1, 2] } }))
    assert.doesNotThrow(() => validateUpdate(delta))
    const doc = backend.create(actor(1))
    assert.throws(
      () => backend.applyDelta(doc, delta),
      (err: Error & { code?: string }) => err.code === 'ERR_INVALID_DELTA' && /map entry of several values/.test(err.message),
    )
    assert.deepEqual(backend.read(doc), { a: 'trace', k: 2 }, 'the trace Yjs left')
  })

  it('a struct that begins before what the document holds of its client, after a GC struct, is cut to what the document lacks instead of crashing Yjs', function () {
    const doc = backend.create(actor(1))
    backend.put(doc, { k: 1 })
    const entry = { client: doc.clientID, clock: 1 } // value.k
    backend.applyDelta(doc, update([{ client: 9, clock: 0, structs: [{ kind: 'gc', len: 1 }] }]))
    // (9,0) is known as a GC; this claims (9,0..1) as a deleted entry next to value.k.
    const delta = update([{ client: 9, clock: 0, structs: [item({ rightOrigin: entry, content: { kind: 'deleted', len: 2 } })] }])
    const raw = backend.load(backend.save(doc), [], actor(2))
    assert.throws(() => Y.applyUpdate(raw, delta), /reading 'origin'/)
    backend.applyDelta(doc, delta)
    assert.deepEqual(backend.read(doc), { k: 1 })
    assert.equal(Y.getState(doc.store, 9), 2)
  })

  it('structs held back for a missing dependency are retried through the same checks, and dropped when refused: the honest update that completes them applies', function () {
    // e writes { o: { x: 1 } }; a forged update from client 9 inserts two values after o.x
    // (a map entry of several values) while e's writes have not arrived: Yjs holds it back.
    const e = backend.create(actor(3))
    const honest = backend.put(e, { o: { x: 1 } }).delta!
    const ox = (e.getMap('value').get('o') as Y.Map<unknown>)._map.get('x')!.id
    const forged = update([{ client: 9, clock: 0, structs: [item({ origin: ox, content: { kind: 'any', values: ['f1', 'f2'] } })] }])
    const doc = backend.create(actor(4))
    backend.applyDelta(doc, forged)
    assert.equal(backend.hasPending(doc), true)
    backend.applyDelta(doc, honest)
    assert.deepEqual(backend.read(doc), { o: { x: 1 } })
    assert.equal(backend.hasPending(doc), false)
    assert.equal(toHex(backend.versionHash(doc)), toHex(backend.versionHash(e)))
    // Deleting o later collects its entries: with the forged values integrated, Yjs threw here
    // (a live value left of o.x), in a local put.
    const deleted = backend.put(doc, {}).delta!
    backend.applyDelta(e, deleted)
    assert.deepEqual(backend.read(e), {})
  })

  describe('differential fuzzing: real updates mutated and recombined, seeded', function () {
    /**
     * What the fuzz may still find, by kind (see fuzz-updates.ts), and why it is allowed:
     *  - partial: applyDelta refused after Yjs had integrated part of the update — a map entry
     *    of several values taking its key from a struct of the same update (the scan looks
     *    neighbours up in the document only). The Backend contract lets a throw leave part of
     *    the delta: the caller discards the document.
     *  - poison: an honest update of the history is refused after the forged one was accepted:
     *    the forged one claimed (client, clock) ids that honest operations also use, so the
     *    honest structs referring to them read as something else (nothing can tell which of two
     *    structs under one id is the real one), or a struct of it held back for a missing
     *    dependency was refused only after integration began.
     * Either way the throw must be one of ours (ERR_INVALID_DELTA from a check), never Yjs
     * failing half-way on something the checks let through.
     */
    const ours = (f: Finding): boolean => f.site.includes('/packages/yjs/dist/src/validate.js')

    for (const seed of [1, 2]) {
      it(`seed ${seed}: nothing the scan accepts makes Yjs throw, on a fresh document or on one holding earlier updates`, function () {
        const result = fuzz(seed, 2000)
        assert.ok(result.accepted > 800, `only ${result.accepted} of ${result.cases} mutated updates were accepted: the fuzz tests little`)
        const wrong = result.findings.filter((f) => f.kind === 'fresh' || f.kind === 'unexpected' || !ours(f))
        assert.deepEqual(
          wrong.map((f) => `${f.kind} (${f.where}) at ${f.site}: ${f.message} — case ${f.index}, ${Buffer.from(f.update).toString('hex')}`),
          [],
        )
      })
    }
  })
})
