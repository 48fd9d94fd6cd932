/**
 * Pins what packages/yjs/README.md ("Merge semantics") says this backend does when replicas
 * write concurrently. Replicas are made with client ids 1, 2, 3 (actor bytes 0,0,0,n): where
 * Yjs orders concurrent writes by client id, the expected values below depend on that.
 */
import assert from 'node:assert/strict'
import type * as Y from 'yjs'
import type { JsonObject } from '@convergent/core'
import { toHex } from '@convergent/core'
import { yjsBackend } from '../src/index.js'

const backend = yjsBackend()
const replica = (client: number): Y.Doc => backend.create(Uint8Array.from({ length: 16 }, (_, i) => (i === 3 ? client : i < 4 ? 0 : 9)))

/** Each side takes what it lacks from the other, through deltaSince (as anti-entropy does). */
function sync(...docs: Y.Doc[]): void {
  for (const from of docs) {
    for (const to of docs) {
      if (from === to) continue
      const delta = backend.deltaSince(from, backend.version(to))
      if (delta !== null) backend.applyDelta(to, delta)
    }
  }
}

/** Every replica reads `value` and they hash alike. */
function allRead(docs: Y.Doc[], value: JsonObject | undefined): void {
  for (const doc of docs) assert.deepEqual(backend.read(doc), value)
  assert.equal(new Set(docs.map((d) => toHex(backend.versionHash(d)))).size, 1)
}

describe('yjs merge semantics (README)', function () {
  describe('nested objects', function () {
    it("two replicas creating the same object field concurrently: one object wins whole (the higher client id), the other's fields are lost", function () {
      const a = replica(1)
      const b = replica(2)
      backend.put(a, { name: 'a', address: { city: 'X' } })
      backend.put(b, { other: 'b', address: { zip: 'Y' } })
      sync(a, b)
      // Top-level fields merge (the root map is shared by name); the two address objects are
      // two Y.Maps under one key, and the one of client 2 is the key's value.
      allRead([a, b], { name: 'a', other: 'b', address: { zip: 'Y' } })
    })

    it('the same when the entity already exists and the object field is new on both sides', function () {
      const a = replica(1)
      const b = replica(2)
      backend.put(a, { name: 'n' })
      sync(a, b)
      backend.put(a, { name: 'n', address: { city: 'X' } })
      backend.put(b, { name: 'n', address: { zip: 'Y' } })
      sync(a, b)
      allRead([a, b], { name: 'n', address: { zip: 'Y' } })
    })

    it('an object and a scalar written concurrently to one new field: the higher client id wins', function () {
      const a = replica(1)
      const b = replica(2)
      backend.put(a, { f: 'scalar' })
      backend.put(b, { f: { nested: true } })
      sync(a, b)
      allRead([a, b], { f: { nested: true } })
      const c = replica(3)
      backend.put(c, { f: 'scalar of 3' })
      sync(a, b, c)
      allRead([a, b, c], { f: 'scalar of 3' })
    })

    it('once both hold the same object, concurrent edits of different fields in it, at any depth, merge', function () {
      const a = replica(1)
      const b = replica(2)
      backend.put(a, { address: { city: 'X', geo: { lat: 1, lng: 2 } } })
      sync(a, b)
      backend.put(a, { address: { city: 'X2', geo: { lat: 1, lng: 2 } } })
      backend.put(b, { address: { city: 'X', geo: { lat: 1, lng: 3 }, zip: 'Y' } })
      sync(a, b)
      allRead([a, b], { address: { city: 'X2', geo: { lat: 1, lng: 3 }, zip: 'Y' } })
    })

    it('removing an object wins over a concurrent edit inside it', function () {
      const a = replica(1)
      const b = replica(2)
      backend.put(a, { address: { city: 'X', zip: 'Y' } })
      sync(a, b)
      backend.put(a, {})
      backend.put(b, { address: { city: 'X', zip: 'Z' } })
      sync(a, b)
      allRead([a, b], {})
    })
  })

  describe('arrays', function () {
    it("concurrent inserts all survive; at one position, the lower client id's first", function () {
      const a = replica(1)
      const b = replica(2)
      backend.put(a, { list: [1, 2, 3] })
      sync(a, b)
      backend.put(b, { list: [1, 2, 3, 'b'] })
      backend.put(a, { list: [1, 2, 3, 'a'] })
      sync(a, b)
      allRead([a, b], { list: [1, 2, 3, 'a', 'b'] })
    })

    it('a put changing both ends of an array rewrites all between them: a concurrent insert in that span lands after the rewritten run', function () {
      const a = replica(1)
      const b = replica(2)
      backend.put(a, { list: [1, 2, 3] })
      sync(a, b)
      // b keeps no common prefix or suffix: it deletes 1, 2, 3 and inserts 0, 1, 2, 3, 'b'.
      backend.put(b, { list: [0, 1, 2, 3, 'b'] })
      backend.put(a, { list: [1, 2, 'x', 3] })
      sync(a, b)
      allRead([a, b], { list: [0, 1, 2, 3, 'b', 'x'] })
    })

    it('a scalar element replaced concurrently on two replicas: both replacements stay (an array edit is a delete and an insert)', function () {
      const a = replica(1)
      const b = replica(2)
      backend.put(a, { list: [1, 2, 3] })
      sync(a, b)
      backend.put(a, { list: [1, 'a', 3] })
      backend.put(b, { list: [1, 'b', 3] })
      sync(a, b)
      allRead([a, b], { list: [1, 'a', 'b', 3] })
      // Even the same new value twice.
      backend.put(a, { list: [1, 'a', 'b', 'same'] })
      backend.put(b, { list: [1, 'a', 'b', 'same'] })
      sync(a, b)
      allRead([a, b], { list: [1, 'a', 'b', 'same', 'same'] })
    })

    it('objects inside an array are edited in place when the length stays: concurrent edits of different fields merge', function () {
      const a = replica(1)
      const b = replica(2)
      backend.put(a, {
        items: [
          { id: 1, qty: 1 },
          { id: 2, qty: 1 },
        ],
      })
      sync(a, b)
      backend.put(a, {
        items: [
          { id: 1, qty: 5 },
          { id: 2, qty: 1 },
        ],
      })
      backend.put(b, {
        items: [
          { id: 1, qty: 1, note: 'gift' },
          { id: 2, qty: 1 },
        ],
      })
      sync(a, b)
      allRead([a, b], {
        items: [
          { id: 1, qty: 5, note: 'gift' },
          { id: 2, qty: 1 },
        ],
      })
    })

    it('the same array field created concurrently: one array wins whole (the higher client id)', function () {
      const a = replica(1)
      const b = replica(2)
      backend.put(a, { tags: ['x'] })
      backend.put(b, { tags: ['y', 'z'] })
      sync(a, b)
      allRead([a, b], { tags: ['y', 'z'] })
    })
  })

  describe('delete and re-creation', function () {
    /** a deletes { x: 1, y: 1 } while b rewrites x and adds z; then both sync. */
    function deletedWhileUpdated(): [Y.Doc, Y.Doc] {
      const a = replica(1)
      const b = replica(2)
      backend.put(a, { x: 1, y: 1 })
      sync(a, b)
      backend.delete(a)
      backend.put(b, { x: 2, y: 1, z: 3 })
      sync(a, b)
      return [a, b]
    }

    it('a delete wins over an update concurrent with it', function () {
      allRead(deletedWhileUpdated(), undefined)
    })

    it('re-created by a replica that has seen the concurrent update (or by its writer): exactly the new value', function () {
      const [a, b] = deletedWhileUpdated()
      backend.put(a, { w: 9 })
      sync(a, b)
      allRead([a, b], { w: 9 })
      backend.delete(b)
      sync(a, b)
      backend.put(b, { v: 1 })
      sync(a, b)
      allRead([a, b], { v: 1 })
    })

    it('re-created by a replica that has seen the delete but not the concurrent update: the top-level fields that update wrote reappear, its edits inside objects do not', function () {
      const a = replica(1)
      const b = replica(2)
      const c = replica(3)
      backend.put(a, { x: 1, y: 1, o: { p: 1 } })
      sync(a, b, c)
      backend.delete(a)
      // Concurrent with the delete: b rewrites x, adds z and o2, edits o.p, leaves y alone.
      backend.put(b, { x: 2, y: 1, z: 3, o: { p: 2 }, o2: { q: 1 } })
      sync(a, c) // c sees the delete only
      assert.equal(backend.read(c), undefined)
      backend.put(c, { w: 9 })
      sync(a, b, c)
      // x, z and o2 are live entries of the root map that the delete did not know of; y was
      // deleted by it; o.p lived inside the object the delete removed.
      allRead([a, b, c], { w: 9, x: 2, z: 3, o2: { q: 1 } })
    })

    it('two replicas re-creating it concurrently merge like two first puts', function () {
      const a = replica(1)
      const b = replica(2)
      backend.put(a, { x: 1 })
      sync(a, b)
      backend.delete(a)
      sync(a, b)
      backend.put(a, { w: 1, shared: { from: 'a' } })
      backend.put(b, { v: 2, shared: { from: 'b' } })
      sync(a, b)
      allRead([a, b], { w: 1, v: 2, shared: { from: 'b' } })
    })
  })
})
