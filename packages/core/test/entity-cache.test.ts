import assert from 'node:assert/strict'
import fc from 'fast-check'
import type { Backend } from '../src/backend.js'
import { EntityCache, type LoadedEntity } from '../src/entity-cache.js'

/** Two stand-in backends: only their identity and resident budget matter to the cache. */
const roomy = { name: 'roomy' } as Backend
const tight = { name: 'tight', maxResident: 3 } as unknown as Backend

function entity(id: string, backend: Backend = roomy, pins = 0): LoadedEntity {
  return {
    collection: 'c',
    id,
    leaf: 0,
    backend,
    doc: undefined,
    head: undefined,
    versionStale: false,
    treeHash: undefined,
    snapshotBytes: 0,
    deltaBytes: 0,
    pins,
    lastWrite: Promise.resolve(true),
    stale: false,
    discarded: false,
  }
}

/** A cache of `capacity` that records the ids it evicts; put() sets an entity under its own key. */
function tracked(capacity: number) {
  const evicted: string[] = []
  const cache = new EntityCache(capacity, (e) => evicted.push(e.id))
  const put = (e: LoadedEntity): LoadedEntity => {
    cache.set(EntityCache.key('c', e.id), e)
    return e
  }
  return { cache, evicted, put }
}

describe('EntityCache', function () {
  it('evicts the least recently used entity, and a get() counts as a use', function () {
    const { cache, evicted, put } = tracked(2)
    put(entity('a'))
    put(entity('b'))
    cache.get(EntityCache.key('c', 'a'))
    put(entity('x'))
    assert.deepEqual(evicted, ['b'])
  })

  it('never evicts a pinned entity; it goes once unpinned and over budget again', function () {
    const { cache, evicted, put } = tracked(2)
    const a = put(entity('a', roomy, 1))
    put(entity('b', roomy, 1))
    put(entity('x', roomy, 1))
    assert.deepEqual(evicted, [])
    assert.equal(cache.size, 3)
    cache.unpin(a)
    cache.evict()
    assert.deepEqual(evicted, ['a'])
    assert.equal(cache.size, 2)
  })

  it('keeps a backend within its resident budget', function () {
    const { evicted, put } = tracked(100)
    for (const id of ['t1', 't2', 't3', 't4']) put(entity(id, tight))
    put(entity('r', roomy))
    assert.deepEqual(evicted, ['t1'])
  })

  it('a dropped entity unpinned later does not unpin the one now under its key', function () {
    const { cache, evicted, put } = tracked(1)
    const old = put(entity('a', roomy, 1))
    cache.delete(EntityCache.key('c', 'a'))
    put(entity('a', roomy, 1))
    cache.unpin(old) // the dropped copy: the new one stays pinned
    put(entity('b'))
    assert.deepEqual(evicted, ['b'])
  })

  /** Random sets, gets, pins, unpins and deletes against what the cache must keep true. */
  it('never evicts a pinned entity, evicts each entity at most once, and stays within budget whenever it can', function () {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), id: fc.integer({ min: 0, max: 11 }), tight: fc.boolean(), pins: fc.integer({ min: 0, max: 2 }) }),
      fc.record({ kind: fc.constantFrom('get' as const, 'pin' as const, 'unpin' as const, 'delete' as const), id: fc.integer({ min: 0, max: 11 }) }),
    )
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(op, { maxLength: 120 }), (capacity, ops) => {
        const evictedOnce = new Set<LoadedEntity>()
        const cache = new EntityCache(capacity, (e) => {
          assert.equal(e.pins, 0, `evicted ${e.id} while pinned`)
          assert.ok(!evictedOnce.has(e), `evicted ${e.id} twice`)
          evictedOnce.add(e)
        })
        const held = new Map<string, LoadedEntity>() // what the test put in and did not delete
        for (const o of ops) {
          const key = EntityCache.key('c', String(o.id))
          const current = cache.get(key)
          if (current !== undefined) assert.equal(current, held.get(key), 'the cache holds another copy than was set')
          if (current === undefined) held.delete(key) // evicted
          switch (o.kind) {
            case 'set': {
              if (current !== undefined && current.pins > 0) break // the caller never replaces an entity in use
              const e = entity(String(o.id), o.tight ? tight : roomy, o.pins)
              cache.set(key, e)
              held.set(key, e)
              break
            }
            case 'pin':
              if (current !== undefined) cache.pin(current)
              break
            case 'unpin':
              if (current !== undefined && current.pins > 0) {
                cache.unpin(current)
                cache.evict() // as Entities.release does at zero
              }
              break
            case 'delete':
              if (current !== undefined) {
                cache.delete(key)
                held.delete(key)
              }
              break
            case 'get':
              break
          }
          // Within budget whenever unpinned entries could be evicted to get there.
          const all = [...held.values()].filter((e) => cache.get(EntityCache.key('c', e.id)) === e)
          const unpinned = all.filter((e) => e.pins === 0)
          assert.ok(cache.size <= capacity || unpinned.length === 0, `size ${cache.size} over ${capacity} with ${unpinned.length} unpinned`)
          const tightAll = all.filter((e) => e.backend === tight)
          assert.ok(tightAll.length <= 3 || tightAll.every((e) => e.pins > 0), 'over the resident budget with an unpinned entity')
        }
      }),
      { numRuns: 400 },
    )
  })
})
