import assert from 'node:assert/strict'
import type { JsonObject } from '@convergent/core'
import { automergeBackend, type AutomergeDoc } from '../src/index.js'
import { actor } from './fixtures.js'

describe('automerge: objects created concurrently at the same key merge (README, Merge semantics)', function () {
  const backend = automergeBackend()

  /** Two replicas of an entity that each put `a` and `b` without seeing the other's, then exchanged. */
  function concurrently(base: JsonObject, a: JsonObject, b: JsonObject, n: number): { a: AutomergeDoc; b: AutomergeDoc; deltas: Uint8Array[] } {
    const created = backend.put(backend.create(actor(n)), base)
    const other = backend.applyDelta(backend.create(actor(n + 1)), created.delta!)
    const da = backend.put(created.doc, a)
    const db = backend.put(other, b)
    return { a: backend.applyDelta(da.doc, db.delta!), b: backend.applyDelta(db.doc, da.delta!), deltas: [created.delta!, da.delta!, db.delta!] }
  }

  it('{address: {city}} and {address: {zip}} read as {address: {city, zip}} everywhere, nested objects too', function () {
    const r = concurrently(
      { name: 'Ann' },
      { name: 'Ann', address: { city: 'X', geo: { lat: 1 } } },
      { name: 'Ann', address: { zip: 'Y', geo: { lon: 2 } } },
      10,
    )
    const expected = { name: 'Ann', address: { city: 'X', zip: 'Y', geo: { lat: 1, lon: 2 } } }
    assert.deepEqual(backend.read(r.a), expected)
    assert.deepEqual(backend.read(r.b), expected)
    // Loaded from bytes (no knowledge carried over) and applied in the other order: the same.
    assert.deepEqual(backend.read(backend.load(backend.save(r.a), [], actor(12))), expected)
    const [created, da, db] = r.deltas as [Uint8Array, Uint8Array, Uint8Array]
    assert.deepEqual(backend.read(backend.load(undefined, [created, db, da], actor(13))), expected)
    // Concurrent creation of the whole entity merges the same way.
    const fresh = concurrently({}, { address: { city: 'X' } }, { address: { zip: 'Y' } }, 14)
    assert.deepEqual(backend.read(fresh.a), { address: { city: 'X', zip: 'Y' } })
    // An object against a scalar is not merged: the greater operation id wins whole, everywhere.
    const mixed = concurrently({ name: 'Ann' }, { name: 'Ann', address: { city: 'X' } }, { name: 'Ann', address: 'unknown' }, 16)
    const read = backend.read(mixed.a)!
    assert.deepEqual(backend.read(mixed.b), read)
    assert.ok(read.address === 'unknown' || JSON.stringify(read.address) === '{"city":"X"}', JSON.stringify(read))
  })

  it('a field removed afterwards stays removed, whichever copy it came from; a put of the value as read changes nothing', function () {
    const keeps: JsonObject[] = [{ zip: 'Y' }, { city: 'X' }]
    for (const [i, kept] of keeps.entries()) {
      const r = concurrently({ name: 'Ann' }, { name: 'Ann', address: { city: 'X' } }, { name: 'Ann', address: { zip: 'Y' } }, 20 + 4 * i)
      assert.equal(backend.put(r.a, backend.read(r.a)!).delta, null)
      const w = backend.put(r.a, { name: 'Ann', address: kept })
      assert.deepEqual(backend.read(w.doc), { name: 'Ann', address: kept })
      const other = backend.applyDelta(r.b, w.delta!)
      assert.deepEqual(backend.read(other), { name: 'Ann', address: kept })
      assert.deepEqual(backend.read(backend.load(backend.save(other), [], actor(22 + 4 * i))), { name: 'Ann', address: kept })
    }
  })

  it('concurrent writes of different fields of the merged object both survive', function () {
    const r = concurrently({ name: 'Ann' }, { name: 'Ann', address: { city: 'X' } }, { name: 'Ann', address: { zip: 'Y' } }, 30)
    const wa = backend.put(r.a, { name: 'Ann', address: { city: 'X2', zip: 'Y' } })
    const wb = backend.put(r.b, { name: 'Ann', address: { city: 'X' } }) // removes zip
    const a = backend.applyDelta(wa.doc, wb.delta!)
    const b = backend.applyDelta(wb.doc, wa.delta!)
    assert.deepEqual(backend.read(a), { name: 'Ann', address: { city: 'X2' } })
    assert.deepEqual(backend.read(b), { name: 'Ann', address: { city: 'X2' } })
    assert.deepEqual(backend.versionHash(a), backend.versionHash(b))
  })
})
