import assert from 'node:assert/strict'
import * as Y from 'yjs'
import { backendComplianceSuite } from '@convergent/core/testing'
import { toHex } from '@convergent/core'
import { yjsBackend } from '../src/index.js'

backendComplianceSuite('yjs', yjsBackend)

describe('yjs backend specifics', function () {
  const backend = yjsBackend()
  const actor = (n: number): Uint8Array => Uint8Array.from({ length: 16 }, (_, i) => (i < 4 ? (i === 3 ? n : 0) : i))

  it('the version covers the delete set: after map.delete the state vectors match but the hashes do not', function () {
    const a = backend.put(backend.create(actor(1)), { x: 1, y: 2 }).doc
    const b = backend.create(actor(2))
    backend.applyDelta(b, Y.encodeStateAsUpdate(a))
    const change = backend.put(a, { x: 1 })
    assert.ok(change.delta !== null)
    assert.equal(toHex(Y.encodeStateVector(a)), toHex(Y.encodeStateVector(b)))
    assert.notEqual(toHex(backend.versionHash(a)), toHex(backend.versionHash(b)))
    backend.applyDelta(b, backend.deltaSince(a, backend.version(b))!)
    assert.equal(toHex(backend.versionHash(a)), toHex(backend.versionHash(b)))
  })

  it('derives the client id from the first 4 actor bytes, never 0', function () {
    assert.equal(backend.create(Uint8Array.of(0, 0, 1, 2, ...new Array(12).fill(9))).clientID, 0x0102)
    assert.equal(backend.create(new Uint8Array(16)).clientID, 1)
  })

  it('keeps nested Y.Maps when an object field is rewritten, and stores strings as plain values', function () {
    const doc = backend.put(backend.create(actor(3)), { o: { a: 1 }, s: 'text' }).doc
    const inner = doc.getMap('value').get('o')
    backend.put(doc, { o: { a: 2, b: 3 }, s: 'text 2' })
    assert.equal(doc.getMap('value').get('o'), inner)
    assert.equal(typeof doc.getMap('value').get('s'), 'string')
  })

  it('rejects updates that write to other root types or hold other content', function () {
    const other = new Y.Doc()
    other.getText('t').insert(0, 'hello')
    const doc = backend.create(actor(4))
    assert.throws(() => backend.applyDelta(doc, Y.encodeStateAsUpdate(other)), { code: 'ERR_INVALID_DELTA' })
    const foreignRoot = new Y.Doc()
    foreignRoot.getMap('elsewhere').set('a', 1)
    assert.throws(() => backend.applyDelta(doc, Y.encodeStateAsUpdate(foreignRoot)), { code: 'ERR_INVALID_DELTA' })
    assert.equal(backend.hasPending(doc), false)
  })

  it('reads a "__proto__" field as an own property', function () {
    const value = JSON.parse('{"__proto__": {"a": 1}}')
    const doc = backend.put(backend.create(actor(5)), value).doc
    const read = backend.read(doc)!
    assert.deepEqual(Object.keys(read), ['__proto__'])
    assert.equal(Object.getPrototypeOf(read), Object.prototype)
  })
})
