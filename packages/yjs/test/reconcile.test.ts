import assert from 'node:assert/strict'
import * as Y from 'yjs'
import type { JsonObject, JsonValue } from '@convergent/core'
import { yjsBackend } from '../src/index.js'

const backend = yjsBackend()
const actor = (n: number): Uint8Array => Uint8Array.from({ length: 16 }, (_, i) => (i === 3 ? n : i < 4 ? 0 : i))

/**
 * Counts calls of Y.Array's index-based methods while `fn` runs. Inserts of nothing are not
 * counted: Yjs itself inserts a new Y.Array's (empty) preliminary content when it integrates.
 */
function countArrayCalls<T>(fn: () => T): { result: T; insert: number; get: number } {
  const proto = Y.Array.prototype as unknown as Record<'insert' | 'get', (...args: unknown[]) => unknown>
  const original = { insert: proto.insert, get: proto.get }
  const counts = { insert: 0, get: 0 }
  proto.insert = function (this: unknown, ...args: unknown[]) {
    if ((args[1] as unknown[]).length > 0) counts.insert++
    return original.insert.apply(this, args)
  }
  proto.get = function (this: unknown, ...args: unknown[]) {
    counts.get++
    return original.get.apply(this, args)
  }
  try {
    return { result: fn(), ...counts }
  } finally {
    proto.insert = original.insert
    proto.get = original.get
  }
}

describe('yjs reconcile: lists of containers', function () {
  this.timeout(120_000)

  it('round-trips 100k empty objects and 100k empty arrays, locally and through the delta', function () {
    for (const make of [(): JsonValue => ({}), (): JsonValue => [], (i: number): JsonValue => (i % 2 === 0 ? {} : [])]) {
      const value: JsonObject = { list: Array.from({ length: 100_000 }, (_, i) => make(i)) }
      const doc = backend.create(actor(1))
      const { delta } = backend.put(doc, value)
      assert.deepEqual(backend.read(doc), value)
      const follower = backend.create(actor(2))
      backend.applyDelta(follower, delta!)
      assert.deepEqual(backend.read(follower), value)
      assert.equal(backend.put(doc, structuredClone(value)).delta, null)
    }
  })

  it('inserts a run of objects and arrays in one Y.Array insert and never looks them up by index (each lookup walks the list)', function () {
    const list: JsonValue[] = [{}, [], { a: 1 }, [1, [2, {}]], 'x', 3, {}, []]
    const doc = backend.create(actor(3))
    const { insert, get } = countArrayCalls(() => backend.put(doc, { list }))
    // One insert for `list`, one for [1, [2, {}]] and one for [2, {}]; empty arrays get none.
    assert.equal(insert, 3)
    assert.equal(get, 0)
    assert.deepEqual(backend.read(doc), { list })
  })

  it('replaces each run of changed elements of an equal-length list with one delete and one insert, keeping the others', function () {
    const doc = backend.create(actor(4))
    backend.put(doc, { list: [{ a: 1 }, 1, 2, 3, { b: 1 }, 4, 5] })
    const keptA = (doc.getMap('value').get('list') as Y.Array<unknown>).get(0)
    const next: JsonObject = { list: [{ a: 2 }, {}, [], 'x', { b: 1 }, [5], {}] }
    const { insert, get } = countArrayCalls(() => backend.put(doc, next))
    assert.equal(insert, 3) // [{}, [], 'x'], [[5], {}] and the 5 inside [5]
    assert.equal(get, 0)
    assert.deepEqual(backend.read(doc), next)
    assert.equal((doc.getMap('value').get('list') as Y.Array<unknown>).get(0), keptA, 'the object edited in place is the same Y.Map')
  })
})
