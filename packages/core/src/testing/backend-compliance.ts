/**
 * The Backend compliance suite: every Backend implementation runs it (see backend.ts for the
 * contract). Needs mocha globals and fast-check. Assertions use node:assert/strict (chai 6
 * ships no type declarations).
 *
 * Semantics it pins down, beyond the interface comment:
 *  - A delete wins over updates concurrent with it; a put made after the delete (causally)
 *    brings the entity back with exactly the put value.
 *  - Two replicas that create the same entity concurrently merge top-level fields. (Two
 *    objects created concurrently at the same field are a conflict: one of them wins whole —
 *    unless the backend declares `mergesConcurrentNestedCreation`: then they merge field by
 *    field, recursively, and later writes to the merged object behave as on any object.)
 *  - delete() of a document that was never written, or is already deleted, is a no-op (null).
 *  - The empty byte string and the version of a fresh document both mean "knows nothing".
 *  - Field names '__proto__' and names starting with NUL are not generated: a backend may
 *    reserve them (Automerge refuses '__proto__'; the Automerge backend keeps its delete flag
 *    under a NUL-prefixed key). Core's toEntityValue never yields a '__proto__' field.
 */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import type { Backend } from '../backend.js'
import { isConvergentError, type ErrorCode } from '../errors.js'
import { concatBytes, toHex } from '../hash.js'
import { cloneJson, jsonEqual, type JsonObject, type JsonValue } from '../json.js'
import { seededRandom } from './random.js'

const RUNS = 50
const HEAVY_RUNS = 30

/** What a backend does beyond the common contract; the suite checks each one it declares. */
export interface BackendCapabilities {
  /**
   * Objects created concurrently at the same field (A puts {address: {city}}, B puts
   * {address: {zip}}) merge field by field, recursively, the same on every replica; and a
   * later write to the merged object sticks (a removed field does not come back).
   * Default false: one of the objects wins whole.
   */
  mergesConcurrentNestedCreation?: boolean
}

export function backendComplianceSuite(name: string, makeBackend: () => Backend<unknown>, capabilities: BackendCapabilities = {}): void {
  describe(`Backend compliance: ${name}`, function () {
    this.timeout(60_000)
    let backend: Backend<unknown>

    before(function () {
      backend = makeBackend()
    })

    const replica = (doc?: unknown): Replica => new Replica(backend, doc)

    describe('put and read', function () {
      it('a new document reads undefined and has no pending operations', function () {
        const r = replica()
        assert.equal(r.read(), undefined)
        assert.equal(backend.hasPending(r.doc), false)
        assert.equal(backend.versionHash(r.doc).byteLength, 32)
      })

      it('round-trips any JSON object, locally and through its delta', function () {
        fc.assert(
          fc.property(entityArb, (value) => {
            const a = replica()
            const delta = a.put(value)
            assert.ok(delta instanceof Uint8Array && delta.byteLength > 0)
            assertJsonEqual(a.read(), value)
            const b = replica()
            b.apply(delta)
            assertJsonEqual(b.read(), value)
            assert.equal(b.hash(), a.hash())
          }),
          { numRuns: RUNS },
        )
      })

      it('reconciles any value into any other, and a follower applying the deltas agrees', function () {
        fc.assert(
          fc.property(fc.array(entityArb, { minLength: 2, maxLength: 4 }), (values) => {
            const a = replica()
            const b = replica()
            for (const value of values) {
              const delta = a.put(value)
              assertJsonEqual(a.read(), value)
              if (delta !== null) b.apply(delta)
              assertJsonEqual(b.read(), value)
              assert.equal(b.hash(), a.hash())
            }
          }),
          { numRuns: RUNS },
        )
      })

      it('a put of an unchanged value returns a null delta and keeps the version', function () {
        fc.assert(
          fc.property(entityArb, (value) => {
            const a = replica()
            a.put(value)
            const before = a.hash()
            assert.equal(a.put(cloneJson(value)), null)
            assert.equal(a.put(a.read()!), null)
            assert.equal(a.hash(), before)
          }),
          { numRuns: RUNS },
        )
      })

      it('every local change that returns a delta moves the version hash (deletions too)', function () {
        const a = replica()
        let before = a.hash()
        const steps: JsonObject[] = [
          { a: 1, b: { c: 2, d: [1, 2, 3] }, e: 'x' },
          { a: 1, b: { c: 2, d: [1, 2, 3] } }, // only removes a field
          { a: 1, b: { c: 2, d: [1, 3] } }, // only removes an array element
          { a: 1, b: { d: [1, 3] } }, // only removes a nested field
        ]
        for (const step of steps) {
          assert.notEqual(a.put(step), null)
          assert.notEqual(a.hash(), before, `putting ${JSON.stringify(step)} must move the version hash`)
          before = a.hash()
        }
        assert.notEqual(a.delete(), null)
        assert.notEqual(a.hash(), before)
      })

      it("read returns a fresh copy, and put keeps none of the caller's objects", function () {
        const value: JsonObject = { a: { b: [1, { c: 'x' }] }, d: 'y' }
        const a = replica()
        a.put(value)
        ;((value.a as JsonObject).b as JsonValue[]).push(2)
        value.d = 'changed'
        const first = a.read()!
        assertJsonEqual(first, { a: { b: [1, { c: 'x' }] }, d: 'y' })
        ;((first.a as JsonObject).b as JsonValue[]).push(3)
        first.d = 'mutated'
        assertJsonEqual(a.read(), { a: { b: [1, { c: 'x' }] }, d: 'y' })
      })

      it('keeps scalars exact: unicode strings, big and tiny numbers, null, booleans', function () {
        const value: JsonObject = {
          s: 'héllo 🌍 \u0000 𝄞 e\u0301',
          '🔑 key': '',
          '': 'empty key',
          big: 1e300,
          huge: 2 ** 60,
          tiny: 5e-324,
          neg: -123.456,
          negInt: -(2 ** 40),
          max: Number.MAX_SAFE_INTEGER,
          zero: 0,
          n: null,
          t: true,
          f: false,
          nested: { list: ['a', 1, null, true, { deep: ['x'] }, []], empty: {} },
        }
        const a = replica()
        const b = replica()
        b.apply(a.put(value)!)
        assertJsonEqual(a.read(), value)
        assertJsonEqual(b.read(), value)
        assert.equal(typeof a.read()!.s, 'string')
      })
    })

    describe('convergence', function () {
      it('any order, duplication and interleaving of the same deltas gives equal values and version hashes', function () {
        fc.assert(
          fc.property(historyArb, fc.noShrink(fc.integer()), fc.noShrink(fc.integer()), (ops, seed1, seed2) => {
            const h = runHistory(backend, ops)
            const inOrder = replica()
            for (const d of h.deltas) inOrder.apply(d)
            assert.equal(backend.hasPending(inOrder.doc), false)
            for (const seed of [seed1, seed2]) {
              const shuffled = replica()
              for (const d of shuffleWithDuplicates(h.deltas, seed)) shuffled.apply(d)
              assertSameState(shuffled, inOrder)
              assert.equal(backend.hasPending(shuffled.doc), false)
            }
            // A replica that pulled from all three through deltaSince agrees too.
            const pulled = replica()
            for (const r of h.replicas) pulled.pullFrom(r)
            assertSameState(pulled, inOrder)
          }),
          { numRuns: HEAVY_RUNS },
        )
      })

      it('merge is commutative, associative and idempotent', function () {
        fc.assert(
          fc.property(historyArb, (ops) => {
            const [a, b, c] = runHistory(backend, ops).replicas as [Replica, Replica, Replica]
            const merge = (x: Replica, y: Replica): Replica => {
              const out = x.clone()
              out.pullFrom(y)
              return out
            }
            assertSameState(merge(a, b), merge(b, a))
            assertSameState(merge(merge(a, b), c), merge(a, merge(b, c)))
            assertSameState(merge(a, a), a)
            assertSameState(merge(merge(a, b), b), merge(a, b))
          }),
          { numRuns: HEAVY_RUNS },
        )
      })

      it('concurrent edits of different fields, nested ones included, all survive', function () {
        fc.assert(
          fc.property(valueArb, valueArb, valueArb, (va, vb, vc) => {
            const base: JsonObject = { left: { x: 0, y: 0, keep: 'k' }, right: 'r', list: [1, 2] }
            const a = replica()
            const b = replica()
            b.apply(a.put(base)!)
            const da = a.put({ ...base, left: { x: va, y: 0, keep: 'k' } })
            const db = b.put({ ...base, left: { x: 0, y: vb, keep: 'k' }, right: vc })
            if (da !== null) b.apply(da)
            if (db !== null) a.apply(db)
            assertJsonEqual(a.read(), { left: { x: va, y: vb, keep: 'k' }, right: vc, list: [1, 2] })
            assertSameState(a, b)
          }),
          { numRuns: RUNS },
        )
      })

      it('concurrent appends to the same array both survive', function () {
        const a = replica()
        const b = replica()
        b.apply(a.put({ list: ['base'] })!)
        const da = a.put({ list: ['base', 'from a'] })!
        const db = b.put({ list: ['base', 'from b'] })!
        a.apply(db)
        b.apply(da)
        const list = a.read()!.list as JsonValue[]
        assert.equal(list.length, 3)
        assert.deepEqual([...list].sort(), ['base', 'from a', 'from b'])
        assertSameState(a, b)
      })

      it('one delta carrying concurrent changes to the same field reads like the deltas applied one by one', function () {
        // (Automerge 3.5 patches its doc object wrongly here when x's write of k was the winning
        // one, hence x is created after y: later actors sort higher. read must not trust it.)
        const y = replica()
        const x = replica()
        const d1 = x.put({ k: 'from x', other: 1 })!
        const d2 = y.put({ k: 'from y' })!
        const d3 = x.put({ other: 1 })! // removes k, concurrently with y's write of k
        const oneByOne = replica()
        for (const d of [d1, d2, d3]) oneByOne.apply(d)
        const batched = replica()
        batched.apply(d1)
        batched.apply(backend.mergeDeltas([d2, d3]))
        assertSameState(batched, oneByOne)
        // Whether y's write survives x's removal is the backend's conflict rule; either way
        // the untouched field stays.
        assert.equal(batched.read()!.other, 1)
      })

      it('concurrent first puts of the same entity merge field by field', function () {
        fc.assert(
          fc.property(entityArb, entityArb, valueArb, valueArb, (ea, eb, sa, sb) => {
            const va = { ...prefixKeys('a:', ea), shared: sa }
            const vb = { ...prefixKeys('b:', eb), shared: sb }
            const a = replica()
            const b = replica()
            const da = a.put(va)!
            const db = b.put(vb)!
            a.apply(db)
            b.apply(da)
            assertSameState(a, b)
            const merged = a.read()!
            const { shared, ...rest } = merged
            assertJsonEqual(rest, { ...prefixKeys('a:', ea), ...prefixKeys('b:', eb) })
            if (capabilities.mergesConcurrentNestedCreation) {
              assert.ok(isMergeOf(shared, sa, sb), `the shared field merges the two writes: ${JSON.stringify(shared)}`)
            } else {
              assert.ok(jsonEqual(shared, sa) || jsonEqual(shared, sb), 'the shared field holds one of the two writes')
            }
          }),
          { numRuns: RUNS },
        )
      })

      it('objects created concurrently at the same field merge field by field in any order, and later writes to them stick (mergesConcurrentNestedCreation)', function () {
        if (!capabilities.mergesConcurrentNestedCreation) this.skip()
        fc.assert(
          fc.property(entityArb, objectArb, objectArb, fc.nat(), (base, oa, ob, pick) => {
            const { shared: _dropped, ...rest } = base
            const a = replica()
            const b = replica()
            const created = a.put(rest)!
            b.apply(created)
            const da = a.put({ ...rest, shared: oa })!
            const db = b.put({ ...rest, shared: ob })!
            a.apply(db)
            b.apply(da)
            // A third replica that takes them the other way round agrees.
            const c = replica()
            c.apply(created)
            c.apply(db)
            c.apply(da)
            assertSameState(a, b)
            assertSameState(c, a)
            const merged = a.read()!.shared as JsonObject
            assert.ok(isMergeOf(merged, oa, ob), `merged ${JSON.stringify(merged)} from ${JSON.stringify(oa)} and ${JSON.stringify(ob)}`)
            // Later, concurrently: b removes a field of the merged object (whichever copy it came
            // from), a adds one. Both writes stick, on both sides, and the removed field stays gone.
            const keys = Object.keys(merged).sort()
            const removed = keys.length > 0 ? keys[pick % keys.length]! : undefined
            const fromB = { ...merged }
            if (removed !== undefined) delete fromB[removed]
            const fromA = { ...merged, 'added by a': true }
            const wb = b.put({ ...rest, shared: fromB })
            const wa = a.put({ ...rest, shared: fromA })!
            assertJsonEqual(b.read()!.shared, fromB)
            if (wb !== null) a.apply(wb)
            b.apply(wa)
            const expected = { ...fromB, 'added by a': true }
            assertJsonEqual(a.read(), { ...rest, shared: expected })
            assertSameState(a, b)
            // Written over once more by one side, the object is exactly what it wrote.
            const final = { only: 1 }
            b.apply(a.put({ ...rest, shared: final })!)
            assertJsonEqual(b.read()!.shared, final)
            assertSameState(a, b)
          }),
          { numRuns: RUNS },
        )
      })
    })

    describe('delete', function () {
      it('delete makes read undefined; deleting again, or a never-written document, is a no-op', function () {
        const a = replica()
        assert.equal(a.delete(), null)
        a.put({ x: 1 })
        const delta = a.delete()
        assert.ok(delta instanceof Uint8Array)
        assert.equal(a.read(), undefined)
        const hash = a.hash()
        assert.equal(a.delete(), null)
        assert.equal(a.hash(), hash)
        const b = replica()
        b.apply(delta)
        assert.equal(b.read(), undefined)
      })

      it('a delete wins over a concurrent update, on both sides', function () {
        fc.assert(
          fc.property(entityArb, entityArb, (v1, v2) => {
            const a = replica()
            const b = replica()
            b.apply(a.put(v1)!)
            const del = a.delete()!
            const upd = b.put({ ...v2, extra: 'concurrent' })!
            a.apply(upd)
            b.apply(del)
            assert.equal(a.read(), undefined)
            assert.equal(b.read(), undefined)
            assertSameState(a, b)
          }),
          { numRuns: RUNS },
        )
      })

      it('a put after a synced delete brings the entity back with exactly the new value', function () {
        fc.assert(
          fc.property(entityArb, entityArb, entityArb, (v1, v2, v3) => {
            const a = replica()
            const b = replica()
            b.apply(a.put(v1)!)
            const del = a.delete()!
            const upd = b.put({ ...v2, leftover: 'concurrent' })! // lost to the delete
            a.apply(upd)
            b.apply(del)
            // b puts after seeing the delete: live again, with no trace of earlier fields.
            const back = b.put(v3)
            assert.ok(back instanceof Uint8Array)
            assertJsonEqual(b.read(), v3)
            a.apply(back)
            assertJsonEqual(a.read(), v3)
            assertSameState(a, b)
            // The deleting replica can recreate it too.
            const again = a.delete()!
            b.apply(again)
            const recreate = a.put(v1)!
            b.apply(recreate)
            assertJsonEqual(b.read(), v1)
            assertSameState(a, b)
          }),
          { numRuns: RUNS },
        )
      })
    })

    describe('versions and deltaSince', function () {
      it('deltaSince(a, version(b)) brings b up to a; null when b provably lacks nothing', function () {
        fc.assert(
          fc.property(historyArb, (ops) => {
            const [a, b] = runHistory(backend, ops).replicas as [Replica, Replica, Replica]
            assert.equal(backend.deltaSince(a.doc, backend.version(a.doc)), null)
            const delta = backend.deltaSince(a.doc, backend.version(b.doc))
            const bBefore = b.hash()
            if (delta === null) {
              // b lacked nothing: taking all of a's state changes nothing.
              const probe = b.clone()
              probe.pullAll(a)
              assert.equal(probe.hash(), bBefore)
            } else {
              b.apply(delta)
            }
            // b now holds all of a. a may not know that (Automerge cannot tell whether heads it
            // has never seen descend from its own), so a further delta may come, but it adds nothing.
            const again = backend.deltaSince(a.doc, backend.version(b.doc))
            if (again !== null) {
              const hash = b.hash()
              b.apply(again)
              assert.equal(b.hash(), hash)
            }
            // The other direction makes them equal.
            const back = backend.deltaSince(b.doc, backend.version(a.doc))
            if (back !== null) a.apply(back)
            assertSameState(a, b)
            assert.equal(backend.deltaSince(b.doc, backend.version(a.doc)), null)
          }),
          { numRuns: HEAVY_RUNS },
        )
      })

      it('deltaSince is not null when the other side lacks only a deletion', function () {
        const a = replica()
        const b = replica()
        b.apply(a.put({ x: 1, y: 2, list: [1, 2, 3] })!)
        a.put({ x: 1, list: [1, 2, 3] })
        const delta = backend.deltaSince(a.doc, backend.version(b.doc))
        assert.ok(delta !== null, 'b lacks the removal of y')
        b.apply(delta)
        assertSameState(a, b)
        a.put({ x: 1, list: [1, 3] })
        const delta2 = backend.deltaSince(a.doc, backend.version(b.doc))
        assert.ok(delta2 !== null, 'b lacks the removal of an array element')
        b.apply(delta2)
        assertSameState(a, b)
      })

      it('the empty version and the version of a fresh document both mean "knows nothing"', function () {
        fc.assert(
          fc.property(entityArb, (value) => {
            const a = replica()
            a.put(value)
            for (const version of [new Uint8Array(0), backend.version(replica().doc)]) {
              const delta = backend.deltaSince(a.doc, version)
              assert.ok(delta !== null)
              const b = replica()
              b.apply(delta)
              assertSameState(b, a)
            }
            assert.equal(backend.deltaSince(replica().doc, new Uint8Array(0)), null)
          }),
          { numRuns: RUNS },
        )
      })

      it('garbage version bytes throw ERR_INVALID_VERSION', function () {
        const a = replica()
        a.put({ x: 1, y: [1, 2] })
        const b = replica()
        b.apply(a.put({ x: 2 })!)
        b.put({ x: 3, z: 1 })
        const real = [backend.version(a.doc), backend.version(b.doc)]
        fc.assert(
          fc.property(
            fc.oneof(
              // A real version cut short (by less than one 32-byte hash).
              fc.tuple(fc.constantFrom(...real), fc.integer({ min: 1, max: 31 })).map(([v, cut]) => v.slice(0, Math.max(1, v.byteLength - cut))),
              // A real version with bytes appended.
              fc.tuple(fc.constantFrom(...real), fc.uint8Array({ minLength: 1, maxLength: 31 })).map(([v, extra]) => concatBytes([v, extra])),
              // Bytes that never end a varint, of a length that is not a whole number of hashes.
              fc.uint8Array({ min: 0x80, max: 0xff, minLength: 1, maxLength: 100 }).filter((u) => u.byteLength % 32 !== 0),
            ),
            (garbage) => {
              assertThrowsCode(() => backend.deltaSince(a.doc, garbage), 'ERR_INVALID_VERSION')
            },
          ),
          { numRuns: RUNS },
        )
      })
    })

    describe('includes (what a write acknowledgement asks a peer)', function () {
      it('b includes version(a) exactly once b holds all of a: pulling from a then changes nothing', function () {
        fc.assert(
          fc.property(historyArb, (ops) => {
            const [a, b] = runHistory(backend, ops).replicas as [Replica, Replica, Replica]
            assert.equal(backend.includes(a.doc, backend.version(a.doc)), true)
            if (backend.includes(b.doc, backend.version(a.doc))) {
              const probe = b.clone()
              probe.pullAll(a)
              assert.equal(probe.hash(), b.hash())
            }
            b.pullFrom(a)
            assert.equal(backend.includes(b.doc, backend.version(a.doc)), true)
          }),
          { numRuns: HEAVY_RUNS },
        )
      })

      it('a change the other side lacks, a concurrent one included, is not included', function () {
        const a = replica()
        const b = replica()
        b.apply(a.put({ x: 1 })!)
        assert.equal(backend.includes(b.doc, backend.version(a.doc)), true)
        a.put({ x: 1, y: 2 })
        b.put({ x: 1, z: 3 })
        assert.equal(backend.includes(b.doc, backend.version(a.doc)), false)
        assert.equal(backend.includes(a.doc, backend.version(b.doc)), false)
        b.pullFrom(a)
        assert.equal(backend.includes(b.doc, backend.version(a.doc)), true)
        assert.equal(backend.includes(a.doc, backend.version(b.doc)), false, 'b holds its own change a lacks')
      })

      it('a deletion the other side lacks is not included (a Yjs state vector does not move on deletions)', function () {
        const a = replica()
        const b = replica()
        b.apply(a.put({ x: 1, y: 2, list: [1, 2, 3] })!)
        const removal = a.put({ x: 1, list: [1, 3] })!
        assert.equal(backend.includes(b.doc, backend.version(a.doc)), false, 'b lacks the removals')
        b.apply(removal)
        assert.equal(backend.includes(b.doc, backend.version(a.doc)), true)
        const deletion = a.delete()!
        assert.equal(backend.includes(b.doc, backend.version(a.doc)), false, 'b lacks the delete')
        b.apply(deletion)
        assert.equal(backend.includes(b.doc, backend.version(a.doc)), true)
      })

      it('a delta held for missing dependencies is not included; the empty version always is', function () {
        const a = replica()
        const d1 = a.put({ name: 'Mug', price: 12 })!
        const d2 = a.put({ name: 'Mug', price: 13 })!
        const b = replica()
        b.apply(d2)
        assert.equal(backend.includes(b.doc, backend.version(a.doc)), false)
        b.apply(d1)
        assert.equal(backend.includes(b.doc, backend.version(a.doc)), true)
        for (const empty of [new Uint8Array(0), backend.version(replica().doc)]) {
          assert.equal(backend.includes(replica().doc, empty), true)
          assert.equal(backend.includes(a.doc, empty), true)
        }
        assert.equal(backend.includes(replica().doc, backend.version(a.doc)), false)
      })

      it('garbage version bytes throw ERR_INVALID_VERSION', function () {
        const a = replica()
        a.put({ x: 1 })
        const real = backend.version(a.doc)
        for (const garbage of [real.slice(0, real.byteLength - 1), concatBytes([real, new Uint8Array([0x80])]), new Uint8Array([0xff, 0xff, 0xff])]) {
          assertThrowsCode(() => backend.includes(a.doc, garbage), 'ERR_INVALID_VERSION')
        }
      })
    })

    describe('persistence and coalescing', function () {
      it('save/load round-trips, and a snapshot plus later deltas rebuilds the document', function () {
        fc.assert(
          fc.property(fc.array(entityArb, { minLength: 2, maxLength: 4 }), fc.boolean(), (values, deleteAtEnd) => {
            const a = replica()
            const [first, ...rest] = values as [JsonObject, ...JsonObject[]]
            const all: Uint8Array[] = [a.put(first)!]
            const snapshot = backend.save(a.doc)
            const later: Uint8Array[] = []
            for (const v of rest) {
              const d = a.put(v)
              if (d !== null) later.push(d)
            }
            if (deleteAtEnd) later.push(a.delete()!)
            all.push(...later)
            assertSameState(replica(backend.load(backend.save(a.doc), [], nextActor())), a)
            assertSameState(replica(backend.load(snapshot, later, nextActor())), a)
            assertSameState(replica(backend.load(undefined, all, nextActor())), a)
            // A loaded document keeps working, and its writes reach the original.
            const loaded = replica(backend.load(snapshot, later, nextActor()))
            const d = loaded.put({ ...first, afterLoad: true })
            if (d !== null) a.apply(d)
            assertSameState(loaded, a)
          }),
          { numRuns: RUNS },
        )
      })

      it('dispose (if the backend has it) frees only that document; its state loads back from its deltas', function () {
        if (backend.dispose === undefined) this.skip()
        fc.assert(
          fc.property(fc.array(entityArb, { minLength: 1, maxLength: 3 }), (values) => {
            const a = replica()
            const other = replica()
            other.put({ other: true })
            const stored: Uint8Array[] = []
            for (const v of values) {
              const d = a.put(v)
              if (d !== null) stored.push(d)
            }
            const value = a.read()
            const hash = a.hash()
            backend.dispose!(a.doc)
            const reloaded = replica(backend.load(undefined, stored, nextActor()))
            assert.deepEqual(reloaded.read(), value)
            assert.equal(reloaded.hash(), hash)
            // Neither the reloaded document nor one that lived alongside the disposed one is hurt.
            reloaded.put({ ...value, afterReload: 1 })
            assert.deepEqual(other.read(), { other: true })
            other.put({ other: false })
            assert.deepEqual(other.read(), { other: false })
          }),
          { numRuns: RUNS },
        )
      })

      it('the snapshot of an empty document loads as an empty document', function () {
        const loaded = replica(backend.load(backend.save(replica().doc), [], nextActor()))
        assert.equal(loaded.read(), undefined)
        assert.equal(loaded.hash(), replica().hash())
      })

      it('load throws ERR_INVALID_DELTA on corrupt bytes', function () {
        const a = replica()
        const d = a.put({ x: 1 })!
        const snapshot = backend.save(a.doc)
        assertThrowsCode(() => backend.load(snapshot.slice(0, snapshot.byteLength - 1), [], nextActor()), 'ERR_INVALID_DELTA')
        assertThrowsCode(() => backend.load(snapshot, [d.slice(0, d.byteLength - 1)], nextActor()), 'ERR_INVALID_DELTA')
        assertThrowsCode(() => backend.load(undefined, [new Uint8Array(0)], nextActor()), 'ERR_INVALID_DELTA')
      })

      it('a snapshot merged with the deltas after it is the whole state as one delta (how stored entities are served)', function () {
        fc.assert(
          fc.property(historyArb, fc.nat(), (ops, cut) => {
            const h = runHistory(backend, ops)
            if (h.deltas.length === 0) return
            const k = 1 + (cut % h.deltas.length) // stored snapshots come from compaction: never empty
            const base = replica()
            for (const d of h.deltas.slice(0, k)) base.apply(d)
            const full = replica()
            for (const d of h.deltas) full.apply(d)
            const served = replica()
            served.apply(backend.mergeDeltas([backend.save(base.doc), ...h.deltas.slice(k)]))
            assertSameState(served, full)
          }),
          { numRuns: HEAVY_RUNS },
        )
      })

      it('mergeDeltas equals applying the deltas in order', function () {
        fc.assert(
          fc.property(historyArb, fc.noShrink(fc.integer()), (ops, seed) => {
            const h = runHistory(backend, ops)
            if (h.deltas.length === 0) return
            const subsets = [h.deltas, pickSubset(h.deltas, seed)]
            for (const deltas of subsets) {
              if (deltas.length === 0) continue
              const stepwise = replica()
              for (const d of deltas) stepwise.apply(d)
              const merged = replica()
              merged.apply(backend.mergeDeltas(deltas))
              assertSameState(merged, stepwise)
              assert.equal(backend.hasPending(merged.doc), backend.hasPending(stepwise.doc))
            }
          }),
          { numRuns: HEAVY_RUNS },
        )
      })

      it('holds a delta whose dependencies are missing, and applies it when they arrive', function () {
        const a = replica()
        const d1 = a.put({ name: 'Mug', price: 12 })!
        const d2 = a.put({ name: 'Mug', price: 13 })!
        const b = replica()
        b.apply(d2)
        assert.equal(backend.hasPending(b.doc), true)
        assert.notEqual(b.hash(), a.hash())
        b.apply(d1)
        assert.equal(backend.hasPending(b.doc), false)
        assertSameState(b, a)
        // The held delta survives save/load.
        const c = replica()
        c.apply(d2)
        const reloaded = replica(backend.load(backend.save(c.doc), [], nextActor()))
        reloaded.apply(d1)
        assertSameState(reloaded, a)
      })
    })

    describe('bad input', function () {
      it('random bytes throw ERR_INVALID_DELTA and leave the document unchanged', function () {
        fc.assert(
          fc.property(entityArb, fc.noBias(fc.uint8Array({ minLength: 1, maxLength: 200 })), (value, garbage) => {
            const a = replica()
            a.put(value)
            assertRejectedUnchanged(a, garbage)
          }),
          { numRuns: RUNS },
        )
      })

      it('empty bytes, truncated deltas and deltas with trailing bytes throw ERR_INVALID_DELTA and change nothing', function () {
        fc.assert(
          fc.property(entityArb, entityArb, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 16 }), (v1, v2, cut, extra) => {
            const source = replica()
            const first = source.put(v1)!
            const second = source.put({ ...v2, changed: true })!
            const target = replica()
            target.apply(first)
            assertRejectedUnchanged(target, new Uint8Array(0))
            for (const real of [second, backend.save(source.doc), backend.deltaSince(source.doc, backend.version(target.doc))!]) {
              assertRejectedUnchanged(target, real.slice(0, 1 + (cut % (real.byteLength - 1))))
              assertRejectedUnchanged(target, concatBytes([real, extra]))
            }
            // The document is still usable: the real delta applies (a caller keeps a document whose
            // refusal applyDelta marked beforeTouching: Backend.applyDelta).
            target.apply(second)
            assertSameState(target, source)
          }),
          { numRuns: RUNS },
        )
      })

      it('mergeDeltas of nothing throws ERR_INVALID_ARGUMENT', function () {
        assertThrowsCode(() => backend.mergeDeltas([]), 'ERR_INVALID_ARGUMENT')
      })
    })

    describe('history.nextTopLevelWrites (if the backend has it)', function () {
      const writesOf = (): ((doc: unknown, delta: Uint8Array) => [string, JsonValue | undefined][] | undefined) | undefined => {
        const history = backend.history
        return history?.nextTopLevelWrites === undefined ? undefined : (doc, delta) => history.nextTopLevelWrites!(doc, delta)
      }

      it("a change on top of a follower's document: its writes applied to read() give the value read() shows once it is applied", function () {
        const writes = writesOf()
        if (writes === undefined) return this.skip()
        let defined = 0
        fc.assert(
          fc.property(fc.array(fc.dictionary(smallKeyArb, smallValueArb, { maxKeys: 4, noNullPrototype: true }), { minLength: 1, maxLength: 5 }), (values) => {
            const a = replica()
            const b = replica()
            for (const value of values) {
              const delta = a.put(value)
              if (delta === null) continue
              const before = b.read()
              const named = writes(b.doc, delta)
              b.apply(delta)
              if (named === undefined) continue // an object or list, the first put (it sets the delete flag)…
              defined++
              const expected: JsonObject = { ...before }
              for (const [key, v] of named) {
                if (v === undefined) delete expected[key]
                else expected[key] = v
              }
              assertJsonEqual(b.read(), expected)
            }
          }),
          { numRuns: 100 },
        )
        assert.ok(defined > 0, 'nextTopLevelWrites answered for some deltas')
      })

      it('undefined where the change is not on top of the document; ERR_INVALID_DELTA for bytes that are not changes', function () {
        const writes = writesOf()
        if (writes === undefined) return this.skip()
        const a = replica()
        const b = replica()
        b.apply(a.put({ x: 1, y: 1 })!)
        const first = a.put({ x: 2, y: 1 })!
        const second = a.put({ x: 3, y: 1 })!
        assert.equal(writes(b.doc, second), undefined, 'a change whose dependency the document lacks')
        assert.deepEqual(writes(b.doc, first), [['x', 2]])
        assert.equal(writes(b.doc, backend.mergeDeltas([first, second])), undefined, 'two changes')
        // c holds a's changes and a concurrent one of b's: a's next change is on top of a's document, not c's.
        const c = replica(backend.load(backend.save(b.doc), [], nextActor()))
        for (const delta of [first, second, b.put({ x: 9, y: 1 })!]) c.apply(delta)
        assert.equal(writes(c.doc, a.put({ x: 4, y: 1 })!), undefined, 'a change that does not depend on every head')
        assert.equal(writes(a.doc, backend.save(a.doc)), undefined, 'a whole document')
        assertThrowsCode(() => writes(b.doc, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)), 'ERR_INVALID_DELTA')
      })
    })

    describe('minimality', function () {
      const big: JsonObject = {}
      for (let i = 0; i < 300; i++) big[`field${i}`] = `value number ${i} of a rather large entity`
      big.nested = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`inner${i}`, { n: i, s: `nested ${i}` }]))
      big.list = Array.from({ length: 200 }, (_, i) => ({ id: i, label: `item ${i}` }))
      big.numbers = Array.from({ length: 200 }, (_, i) => i)

      const bigJsonBytes = Buffer.byteLength(JSON.stringify(big))
      const smallEnough = (delta: Uint8Array | null, what: string): void => {
        assert.ok(delta !== null, `${what}: expected a delta`)
        // The object is ~40 kB of JSON; one field's worth of operation is a few dozen bytes.
        assert.ok(
          delta.byteLength < 300 && delta.byteLength * 100 < bigJsonBytes,
          `${what}: delta of ${delta.byteLength} bytes for a ${bigJsonBytes}-byte object`,
        )
      }

      it('updating one field of a big object produces a delta much smaller than the object', function () {
        const a = replica()
        a.put(big)
        const edits: [string, (v: JsonObject) => void][] = [
          ['top-level field', (v) => (v.field150 = 'changed')],
          ['nested field', (v) => (((v.nested as JsonObject).inner50 as JsonObject).n = -1)],
          ['object inside an array', (v) => (((v.list as JsonValue[])[100] as JsonObject).label = 'changed')],
          ['append to an array', (v) => (v.numbers as JsonValue[]).push(200)],
          ['insert in the middle of an array', (v) => (v.numbers as JsonValue[]).splice(100, 0, -1)],
          ['remove from the middle of an array', (v) => (v.numbers as JsonValue[]).splice(50, 1)],
          ['remove a field', (v) => delete v.field7],
        ]
        for (const [what, edit] of edits) {
          const next = a.read()!
          edit(next)
          smallEnough(a.put(next), what)
          assertJsonEqual(a.read(), next)
        }
      })
    })
  })
}

// ---------------------------------------------------------------------------------------------
// Replicas

let actorCounter = 0

/** 16 actor bytes, distinct in their first 4 bytes (Yjs derives its client id from those). */
function nextActor(): Uint8Array {
  const actor = new Uint8Array(16)
  const view = new DataView(actor.buffer)
  view.setUint32(0, ++actorCounter)
  view.setUint32(4, 0x636f6e76) // 'conv'
  for (let i = 8; i < 16; i++) actor[i] = (actorCounter * 31 + i * 17) & 0xff
  return actor
}

/** A document plus the backend, always continuing with the doc a method returns. */
class Replica {
  doc: unknown

  constructor(
    readonly backend: Backend<unknown>,
    doc?: unknown,
  ) {
    this.doc = doc ?? backend.create(nextActor())
  }

  put(value: JsonObject): Uint8Array | null {
    const change = this.backend.put(this.doc, value)
    this.doc = change.doc
    return change.delta
  }

  delete(): Uint8Array | null {
    const change = this.backend.delete(this.doc)
    this.doc = change.doc
    return change.delta
  }

  apply(delta: Uint8Array): void {
    this.doc = this.backend.applyDelta(this.doc, delta)
  }

  read(): JsonObject | undefined {
    return this.backend.read(this.doc)
  }

  hash(): string {
    return toHex(this.backend.versionHash(this.doc))
  }

  /** Takes what `other` has and this replica lacks, through deltaSince. */
  pullFrom(other: Replica): void {
    const delta = this.backend.deltaSince(other.doc, this.backend.version(this.doc))
    if (delta !== null) this.apply(delta)
  }

  /** Takes everything `other` has, whether or not this replica lacks it. */
  pullAll(other: Replica): void {
    const delta = this.backend.deltaSince(other.doc, new Uint8Array(0))
    if (delta !== null) this.apply(delta)
  }

  clone(): Replica {
    return new Replica(this.backend, this.backend.load(this.backend.save(this.doc), [], nextActor()))
  }
}

// ---------------------------------------------------------------------------------------------
// Histories: three replicas editing one entity, syncing now and then.

type Op =
  | { kind: 'put'; replica: number; value: JsonObject }
  | { kind: 'set'; replica: number; path: string[]; value: JsonValue }
  | { kind: 'remove'; replica: number; key: string }
  | { kind: 'push'; replica: number; value: JsonValue }
  | { kind: 'delete'; replica: number }
  | { kind: 'sync'; from: number; to: number }

interface History {
  replicas: Replica[]
  /** Every delta a local operation produced, in the order they were made (a causal order). */
  deltas: Uint8Array[]
}

function runHistory(backend: Backend<unknown>, ops: readonly Op[]): History {
  const replicas = [0, 1, 2].map(() => new Replica(backend))
  const deltas: Uint8Array[] = []
  const local = (r: Replica, value: JsonObject): void => {
    const before = r.hash()
    const delta = r.put(value)
    if (delta !== null) {
      deltas.push(delta)
      assert.notEqual(r.hash(), before, 'a put that returns a delta moves the version hash')
    }
    assertJsonEqual(r.read(), value)
  }
  for (const op of ops) {
    if (op.kind === 'sync') {
      replicas[op.to]!.pullFrom(replicas[op.from]!)
      continue
    }
    const r = replicas[op.replica]!
    const current = r.read() ?? {}
    switch (op.kind) {
      case 'put':
        local(r, op.value)
        break
      case 'set':
        local(r, setPath(current, op.path, op.value))
        break
      case 'remove': {
        const { [op.key]: _removed, ...rest } = current
        local(r, rest)
        break
      }
      case 'push': {
        const list = Array.isArray(current.list) ? current.list : []
        local(r, { ...current, list: [...list, op.value] })
        break
      }
      case 'delete': {
        const delta = r.delete()
        if (delta !== null) deltas.push(delta)
        assert.equal(r.read(), undefined)
        break
      }
    }
  }
  return { replicas, deltas }
}

function setPath(obj: JsonObject, path: readonly string[], value: JsonValue): JsonObject {
  const [head, ...rest] = path as [string, ...string[]]
  if (rest.length === 0) return { ...obj, [head]: value }
  const child = obj[head]
  const childObj = typeof child === 'object' && child !== null && !Array.isArray(child) ? child : {}
  return { ...obj, [head]: setPath(childObj, rest, value) }
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

/** Field names: short unicode strings, never '__proto__' or NUL-prefixed (see the header). */
const keyArb = fc
  .oneof(fc.constantFrom('a', 'b', 'name', 'x y', ''), fc.string({ unit: 'grapheme', maxLength: 6 }), fc.string({ maxLength: 6 }))
  .filter((k) => k !== '__proto__' && !k.startsWith('\u0000') && k.isWellFormed())

const stringArb = fc.oneof(fc.string({ unit: 'grapheme', maxLength: 12 }), fc.string({ maxLength: 12 })).filter((s) => s.isWellFormed())

const scalarArb: fc.Arbitrary<JsonValue> = fc.oneof(
  stringArb,
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(2 ** 53, 2 ** 60, -(2 ** 63), 1e21, Number.MAX_SAFE_INTEGER),
  fc.boolean(),
  fc.constant(null),
)

const { value: valueArb } = fc.letrec<{ value: JsonValue; array: JsonValue[]; object: JsonObject }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', maxDepth: 3 }, scalarArb, tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 4 }),
  object: fc.dictionary(keyArb, tie('value'), { maxKeys: 4, noNullPrototype: true }),
}))

const entityArb: fc.Arbitrary<JsonObject> = fc.dictionary(keyArb, valueArb, { maxKeys: 6, noNullPrototype: true })

/** Objects with few field names, so two of them share some (at any depth) and not others. */
const { object: objectArb } = fc.letrec<{ value: JsonValue; object: JsonObject }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', maxDepth: 3 }, scalarArb, fc.array(scalarArb, { maxLength: 3 }), tie('object')),
  object: fc.dictionary(fc.constantFrom('a', 'b', 'c', 'nested'), tie('value'), { maxKeys: 4, noNullPrototype: true }),
}))

/** Few field names, so replicas collide on fields, nest into each other and edit lists. */
const smallKeyArb = fc.constantFrom('a', 'b', 'c', 'list', 'nested')
const smallValueArb: fc.Arbitrary<JsonValue> = fc.oneof(
  scalarArb,
  fc.array(scalarArb, { maxLength: 3 }),
  fc.dictionary(smallKeyArb, scalarArb, { maxKeys: 2, noNullPrototype: true }),
)
const replicaArb = fc.nat(2)

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('put' as const),
      replica: replicaArb,
      value: fc.dictionary(smallKeyArb, smallValueArb, { maxKeys: 4, noNullPrototype: true }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('set' as const),
      replica: replicaArb,
      path: fc.array(smallKeyArb, { minLength: 1, maxLength: 2 }),
      value: smallValueArb,
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('remove' as const), replica: replicaArb, key: smallKeyArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('push' as const), replica: replicaArb, value: scalarArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), replica: replicaArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('sync' as const), from: replicaArb, to: replicaArb }) },
)

const historyArb = fc.array(opArb, { minLength: 1, maxLength: 20 })

// ---------------------------------------------------------------------------------------------
// Helpers

function assertJsonEqual(actual: JsonValue | undefined, expected: JsonValue | undefined): void {
  if (!jsonEqual(actual, expected)) {
    assert.fail(`values differ:\n  actual:   ${JSON.stringify(actual)}\n  expected: ${JSON.stringify(expected)}`)
  }
}

function assertSameState(a: Replica, b: Replica): void {
  assertJsonEqual(a.read(), b.read())
  assert.equal(a.hash(), b.hash(), 'equal operations must give equal version hashes')
}

function assertThrowsCode(fn: () => unknown, code: ErrorCode): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isConvergentError(err, code), `expected ConvergentError ${code}, got ${String(err)}`)
    return true
  })
}

/** Applying `bad` throws ERR_INVALID_DELTA and leaves value, version and pending state alone. */
function assertRejectedUnchanged(r: Replica, bad: Uint8Array): void {
  const before = { value: r.read(), hash: r.hash(), pending: r.backend.hasPending(r.doc) }
  assertThrowsCode(() => r.backend.applyDelta(r.doc, bad), 'ERR_INVALID_DELTA')
  assertJsonEqual(r.read(), before.value)
  assert.equal(r.hash(), before.hash)
  assert.equal(r.backend.hasPending(r.doc), before.pending)
}

/**
 * Whether `merged` is what concurrently written `x` and `y` merge to: two objects merge field
 * by field, recursively (a field of one of them only is kept as it is); anything else is one
 * of the two.
 */
function isMergeOf(merged: JsonValue | undefined, x: JsonValue, y: JsonValue): boolean {
  if (!isPlainObject(x) || !isPlainObject(y)) return jsonEqual(merged, x) || jsonEqual(merged, y)
  if (!isPlainObject(merged)) return false
  const keys = new Set([...Object.keys(x), ...Object.keys(y)])
  if (Object.keys(merged).length !== keys.size) return false
  for (const key of keys) {
    if (!Object.prototype.hasOwnProperty.call(merged, key)) return false
    const inX = Object.prototype.hasOwnProperty.call(x, key)
    const inY = Object.prototype.hasOwnProperty.call(y, key)
    const ok = inX && inY ? isMergeOf(merged[key], x[key]!, y[key]!) : jsonEqual(merged[key], inX ? x[key] : y[key])
    if (!ok) return false
  }
  return true
}

function isPlainObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function prefixKeys(prefix: string, obj: JsonObject): JsonObject {
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [prefix + k, v]))
}

/** Every item at least once, some twice, in a random order. */
function shuffleWithDuplicates<T>(items: readonly T[], seed: number): T[] {
  const random = seededRandom(seed)
  const out = [...items, ...items.filter(() => random() < 0.3)]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

/** A random subsequence (order kept), so some deltas miss their dependencies. */
function pickSubset<T>(items: readonly T[], seed: number): T[] {
  const random = seededRandom(seed)
  return items.filter(() => random() < 0.5)
}
