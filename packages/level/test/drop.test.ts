/**
 * dropCollection() is crash-safe: a marker first, chunked deletes, the marker last; open()
 * finishes an interrupted drop before anything is read.
 */
import assert from 'node:assert/strict'
import { isConvergentError, type Store, type StoreOp } from '@convergent/core'
import { classicLevelStore, memoryLevelStore, type LevelStore } from '../src/index.js'
import { encodeJson } from '../src/codec.js'
import { dropMarkerKey } from '../src/keys.js'
import { sealCopy } from '../src/record.js'
import { entityWrite } from './entity-ops.js'
import { collect, failBatchesAfter, putRaw, rawRecords, removeDir, tempDir } from './helpers.js'

const ENTITIES = 40

/** Collection `c` with ENTITIES entities (delta, head, leaf, feed each), a snapshot, its meta. */
function fill(c: string): StoreOp[][] {
  const writes: StoreOp[][] = [[{ type: 'collection', collection: c, meta: { backend: 'yjs' } }]]
  for (let n = 1; n <= ENTITIES; n++) writes.push(entityWrite(c, n))
  writes.push([{ type: 'snapshot', collection: c, id: 'entity-1', bytes: new Uint8Array([1, 2, 3]) }])
  return writes
}

async function fillStore(store: Store, ...collections: string[]): Promise<void> {
  for (const c of collections) for (const ops of fill(c)) await store.write(ops)
}

/** What the store holds of collection c, through every read path. */
async function contents(store: Store, c: string): Promise<{ listed: boolean; heads: number; leaves: number; feed: number; lastSeq: number; entity: boolean }> {
  return {
    listed: (await store.collections()).has(c),
    heads: (await collect(store.heads(c))).length,
    leaves: (await collect(store.leaves(c))).length,
    feed: (await collect(store.feed(c, 0))).length,
    lastSeq: await store.lastSeq(c),
    entity: (await store.readEntity(c, 'entity-1')) !== undefined,
  }
}

const GONE = { listed: false, heads: 0, leaves: 0, feed: 0, lastSeq: 0, entity: false }
const FULL = { listed: true, heads: ENTITIES, leaves: ENTITIES, feed: ENTITIES, lastSeq: ENTITIES, entity: true }

/** Raw keys of collection c (prefix `c NUL` or the collection record) in a closed folder. */
async function rawKeysOf(dir: string, c: string): Promise<string[]> {
  return [...(await rawRecords(dir)).keys()].filter((key) => key.includes(`!${c}\u0000`) || key === `!collections!${c}` || key.endsWith(`drop\u0000${c}`))
}

describe('LevelStore dropCollection: crash safety', function () {
  this.timeout(30_000)
  let dir: string
  let store: LevelStore | undefined
  beforeEach(async () => (dir = await tempDir('convergent-drop-')))
  afterEach(async () => {
    await store?.close().catch(() => undefined)
    store = undefined
    await removeDir(dir)
  })

  for (const batches of [0, 1, 3, 6]) {
    it(`a drop interrupted after ${batches} of its batches hides the collection, and the next open() finishes it before anything is read`, async function () {
      store = classicLevelStore(dir, { chunk: 15 })
      await store.open()
      await fillStore(store, 'c', 'c2')
      failBatchesAfter(store, batches)
      const err = await store.dropCollection('c').then(
        () => undefined,
        (e: unknown) => e,
      )
      assert.ok(isConvergentError(err, 'ERR_STORE'), `the drop did not fail: ${String(err)}`)
      if (batches > 0) {
        // Begun: the collection reads as empty and takes no writes until the drop is finished.
        assert.deepEqual(await contents(store, 'c'), GONE)
        const refused = await store.write(entityWrite('c', 99)).then(
          () => undefined,
          (e: unknown) => e,
        )
        assert.ok(isConvergentError(refused, 'ERR_STORE') && /being dropped/.test(refused.message), String(refused))
      }
      await store.close()
      if (batches > 0) {
        const left = await rawKeysOf(dir, 'c')
        assert.ok(left.includes(`!store!${dropMarkerKey('c')}`), 'the marker is gone before the drop finished')
        assert.equal(left.includes('!collections!c'), false, 'the collection record goes with the marker')
      }

      store = classicLevelStore(dir, { chunk: 15 })
      await store.open()
      assert.deepEqual(await contents(store, 'c'), batches > 0 ? GONE : FULL) // 0: the drop never began
      assert.deepEqual(await contents(store, 'c2'), FULL)
      await store.close()
      store = undefined
      if (batches > 0) assert.deepEqual(await rawKeysOf(dir, 'c'), [])
    })
  }

  it('a drop marker written by hand (a crash right after the first batch) is finished by open()', async function () {
    store = classicLevelStore(dir)
    await store.open()
    await fillStore(store, 'c', 'c2', 'c\u0001')
    await store.close()
    const key = `!store!${dropMarkerKey('c')}`
    await putRaw(dir, [[key, sealCopy(key, encodeJson({ time: Date.now() }))]])

    store = classicLevelStore(dir)
    await store.open()
    assert.deepEqual(await contents(store, 'c'), GONE)
    assert.deepEqual(await contents(store, 'c2'), FULL)
    assert.deepEqual(await contents(store, 'c\u0001'), FULL)
    assert.deepEqual(store.damage, [])
    await store.close()
    store = undefined
    assert.deepEqual(await rawKeysOf(dir, 'c'), [])
  })

  it('a drop marker that fails its check is quarantined, not acted on (its key may name the wrong collection), and reported', async function () {
    store = classicLevelStore(dir)
    await store.open()
    await fillStore(store, 'c')
    await store.close()
    const key = `!store!${dropMarkerKey('c')}`
    const marker = sealCopy(key, encodeJson({ time: Date.now() }))
    marker[7]! ^= 1
    await putRaw(dir, [[key, marker]])

    store = classicLevelStore(dir)
    await store.open()
    assert.deepEqual(await contents(store, 'c'), FULL)
    assert.equal(store.damage.length, 1)
    assert.match(store.damage[0]!, /drop marker of collection 'c' failed its checksum/)
    const kept = await collect(store.quarantined())
    assert.deepEqual(
      kept.map((r) => [r.keyspace, r.key]),
      [['store', dropMarkerKey('c')]],
    )
    await store.dropCollection('c') // asked again, it drops
    assert.deepEqual(await contents(store, 'c'), GONE)
  })

  it('while a drop runs, the collection is not listed and reads as empty, writes to it are refused, and writes to others wait for it', async function () {
    store = memoryLevelStore({ chunk: 10 })
    await store.open()
    await fillStore(store, 'c', 'other')
    // Hold the drop's third batch (deletes under way) until the test releases it.
    let release!: () => void
    let calls = 0
    const batch = store.db.batch.bind(store.db)
    store.db.batch = (() => {
      const b = batch()
      if (++calls === 3) {
        const write = b.write.bind(b)
        b.write = ((options: never) => new Promise<void>((resolve, reject) => (release = () => void write(options).then(resolve, reject)))) as typeof b.write
      }
      return b
    }) as typeof store.db.batch
    const dropped = store.dropCollection('c')
    for (let turns = 0; calls < 3; turns++) {
      assert.ok(turns < 10_000, `the drop wrote ${calls} batches, not a third to hold`)
      await new Promise((resolve) => setImmediate(resolve))
    }
    assert.deepEqual(await contents(store, 'c'), GONE)
    assert.equal(await store.getHead('c', 'entity-2'), undefined)
    const refused = await store.write(entityWrite('c', 99)).then(
      () => undefined,
      (e: unknown) => e,
    )
    assert.ok(isConvergentError(refused, 'ERR_STORE'), String(refused))
    let landed = false
    const other = store.write(entityWrite('other', 41)).then(() => (landed = true))
    await new Promise((resolve) => setTimeout(resolve, 20))
    assert.equal(landed, false, 'a write went out in the middle of the drop')
    release()
    await dropped
    await other
    assert.equal(await store.lastSeq('other'), 41)
    assert.deepEqual(await contents(store, 'c'), GONE)
    await store.write(entityWrite('c', 1)) // done: the collection takes writes again
    assert.equal(await store.lastSeq('c'), 1)
  })
})
