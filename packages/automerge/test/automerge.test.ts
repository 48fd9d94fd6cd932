import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import * as A from '@automerge/automerge'
import { backendComplianceSuite } from '@convergent/core/testing'
import type { JsonObject } from '@convergent/core'
import { automergeBackend, type AutomergeDoc } from '../src/index.js'
import { actor, compressChange } from './fixtures.js'

const capabilities = { mergesConcurrentNestedCreation: true }
backendComplianceSuite('automerge', automergeBackend, capabilities)
// deltaSince weighs the whole document against every non-empty gap: catch-ups by document
// (and the receiver's merge of one) run through every property of the suite.
backendComplianceSuite('automerge, whole-document catch-up', () => automergeBackend({ compactCheckBytes: 0 }), capabilities)

describe('automerge backend specifics', function () {
  const backend = automergeBackend()

  it('stores strings as ImmutableString scalars and big integers as f64', function () {
    const doc = backend.put(backend.create(actor(1)), { s: 'plain', big: 1e300, huge: 2 ** 60, list: ['x'] }).doc
    assert.ok(A.isImmutableString(doc.s))
    assert.equal(doc.big, 1e300)
    assert.equal(doc.huge, 2 ** 60)
    assert.ok(A.isImmutableString((doc.list as unknown[])[0]))
  })

  it('hides the delete flag and refuses it as a field name', function () {
    const doc = backend.put(backend.create(actor(2)), { a: 1 }).doc
    assert.deepEqual(Object.keys(backend.read(doc)!), ['a'])
    assert.throws(() => backend.put(doc, { '\u0000deleted': 1 }), { code: 'ERR_INVALID_VALUE' })
  })

  it('refuses a "__proto__" field with ERR_INVALID_VALUE and leaves the doc usable', function () {
    const doc = backend.put(backend.create(actor(3)), { a: 1 }).doc
    assert.throws(() => backend.put(doc, JSON.parse('{"__proto__": 1}')), { code: 'ERR_INVALID_VALUE' })
    assert.deepEqual(backend.read(backend.put(doc, { a: 2 }).doc), { a: 2 })
  })

  it('a delta with a valid chunk followed by a corrupt one is rejected whole', function () {
    // Automerge itself would load the first chunk and silently skip the rest.
    let src: AutomergeDoc = backend.create(actor(4))
    const c1 = backend.put(src, { a: 1 })
    src = c1.doc
    const c2 = backend.put(src, { a: 2 })
    const bad = c2.delta!.slice()
    bad[bad.length - 1]! ^= 0xff
    const both = new Uint8Array(c1.delta!.byteLength + bad.byteLength)
    both.set(c1.delta!)
    both.set(bad, c1.delta!.byteLength)
    const target = backend.create(actor(5))
    assert.throws(() => backend.applyDelta(target, both), { code: 'ERR_INVALID_DELTA' })
    assert.equal(backend.read(target), undefined)
    assert.deepEqual(A.getHeads(target), [])
  })

  it('a chunk whose body is garbage under a valid checksum is rejected after a good one, and never wipes a stored entity', function () {
    // Framing and checksum right, body unparseable: Automerge's loadIncremental would apply the
    // good chunk, skip this one, and the stored delta would later load as nothing at all.
    const body = Uint8Array.from({ length: 24 }, (_, i) => (i * 37 + 11) & 0xff)
    const checksum = createHash('sha256').update(Uint8Array.of(1, body.byteLength)).update(body).digest().subarray(0, 4)
    const garbage = Uint8Array.of(0x85, 0x6f, 0x4a, 0x83, ...checksum, 1, body.byteLength, ...body)
    let src: AutomergeDoc = backend.create(actor(6))
    const first = backend.put(src, { x: 1 })
    src = first.doc
    const second = backend.put(src, { x: 1, y: 2 })
    const target = backend.applyDelta(backend.create(actor(7)), first.delta!) // not empty: the loadIncremental path
    const poisoned = Uint8Array.of(...second.delta!, ...garbage)
    // (Refused by the column scan now, before the parse of chunks after the first would.)
    assert.throws(() => backend.applyDelta(target, poisoned), { code: 'ERR_INVALID_DELTA' })
    assert.deepEqual(backend.read(target), { x: 1 })
    // Stored bytes that hold such a chunk fail to load instead of loading as an empty entity.
    assert.throws(() => backend.load(undefined, [first.delta!, poisoned], actor(8)), { code: 'ERR_INVALID_DELTA' })
  })

  it('accepts compressed change chunks (verifying their checksum after inflating)', function () {
    const change = backend.put(backend.create(actor(6)), { a: 'x'.repeat(500) }).delta!
    const compressed = compressChange(change)
    assert.deepEqual(backend.read(backend.applyDelta(backend.create(actor(7)), compressed)), { a: 'x'.repeat(500) })
    const corrupt = compressed.slice()
    corrupt[5]! ^= 0x01
    assert.throws(() => backend.applyDelta(backend.create(actor(8)), corrupt), { code: 'ERR_INVALID_DELTA' })
  })

  it('deltaSince sends only what follows the heads the remote has', function () {
    const a = backend.put(backend.create(actor(9)), Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`f${i}`, i]))).doc
    const v = backend.version(a)
    const next = backend.put(a, { ...backend.read(a)!, f1: -1 }).doc
    const delta = backend.deltaSince(next, v)!
    assert.ok(delta.byteLength < 200, `delta of ${delta.byteLength} bytes`)
  })

  it('changes carry time 0, not the wall clock, so their bytes are deterministic', function () {
    const make = () => backend.put(backend.create(actor(3)), { a: 1, b: ['x'] }).delta!
    const first = make()
    assert.equal(A.decodeChange(first).time, 0)
    assert.deepEqual(make(), first)
  })

  it('load() keeps deltas whose dependencies are missing pending, like applyDelta', function () {
    let a = backend.create(actor(4))
    const deltas: Uint8Array[] = []
    for (let i = 0; i < 3; i++) {
      const change = backend.put(a, { n: i })
      a = change.doc
      deltas.push(change.delta!)
    }
    const partial = backend.load(undefined, [deltas[0]!, deltas[2]!], actor(5))
    assert.equal(backend.hasPending(partial), true)
    assert.deepEqual(backend.read(partial), { n: 0 })
    const whole = backend.applyDelta(partial, deltas[1]!)
    assert.equal(backend.hasPending(whole), false)
    assert.deepEqual(backend.read(whole), { n: 2 })
  })

  it('reads and writes the same through the document object as through the WASM state', function () {
    // Local changes on a created or loaded document are read from its JS object; after a
    // delta from elsewhere, from the WASM state (A.toJS). Both must agree with toJS throughout.
    let a = backend.create(actor(6))
    let b = backend.create(actor(7))
    const values: JsonObject[] = [{ x: 1, o: { p: [1, { q: 'r' }] } }, { x: 2, o: { p: [1, { q: 's' }, 3] }, y: null }, { o: { p: [] } }, { s: 'é', n: -0.5 }]
    for (const [i, value] of values.entries()) {
      const change = backend.put(i % 2 === 0 ? a : b, value)
      if (i % 2 === 0) a = change.doc
      else b = change.doc
      b = i % 2 === 0 ? backend.applyDelta(b, change.delta!) : b
      a = i % 2 === 1 ? backend.applyDelta(a, change.delta!) : a
      for (const doc of [a, b]) assert.deepEqual(backend.read(doc), backend.read(backend.load(backend.save(doc), [], actor(8))))
    }
    const deleted = backend.delete(a).doc
    assert.equal(backend.read(deleted), undefined)
    assert.equal(backend.read(backend.load(backend.save(deleted), [], actor(8))), undefined)
  })
})
