/**
 * Format 0 (values stored bare, before checksums) → format 1, in place at open(): on a folder
 * written by the format-0 store itself (test/fixtures/format-0, see format0-data.ts).
 */
import assert from 'node:assert/strict'
import { isConvergentError, leafOf, sha256, toHex, type Store } from '@convergent/core'
import { classicLevelStore, type LevelStore } from '../src/index.js'
import { encodeJson } from '../src/codec.js'
import { FORMAT_KEY, MIGRATION_KEY } from '../src/keys.js'
import { STORE_FORMAT } from '../src/format.js'
import { HEADER_BYTES, openRecord, prefixSum, sealCopy } from '../src/record.js'
import { FORMAT0_COLLECTIONS, FORMAT0_ENTITIES, FORMAT0_META, format0Delta, format0Feed, format0Head, format0Id, format0Snapshot } from './format0-data.js'
import { collect, copyFormat0Fixture, failBatchesAfter, putRaw, rawRecords, removeDir } from './helpers.js'

const FORMAT = `!store!${FORMAT_KEY}`
const PROGRESS = `!store!${MIGRATION_KEY}`

/** Checks, through the Store API, that every record of the fixture reads back as written. */
async function expectFixtureData(store: Store): Promise<void> {
  assert.deepEqual(await store.collections(), new Map(FORMAT0_COLLECTIONS.map(([c, backend]) => [c, { backend }])))
  for (const [key, bytes] of FORMAT0_META) assert.equal(toHex((await store.getMeta(key))!), toHex(bytes), key)
  for (const [collection] of FORMAT0_COLLECTIONS) {
    for (let k = 0; k < FORMAT0_ENTITIES; k++) {
      const head = format0Head(collection, k)
      const entity = await store.readEntity(collection, format0Id(k))
      assert.ok(entity !== undefined, `${collection}/${format0Id(k)} is missing`)
      assert.deepEqual({ ...entity.head, versionHash: toHex(entity.head.versionHash) }, { ...head, versionHash: toHex(head.versionHash) })
      const snapshot = format0Snapshot(collection, k)
      assert.equal(entity.snapshot === undefined ? undefined : toHex(entity.snapshot), snapshot === undefined ? undefined : toHex(snapshot))
      assert.deepEqual(
        entity.deltas.map(toHex),
        [...Array(head.deltaCount).keys()].map((i) => toHex(format0Delta(collection, k, i))),
      )
    }
    assert.equal((await collect(store.heads(collection))).length, FORMAT0_ENTITIES)
    assert.deepEqual(await collect(store.feed(collection, 0)), [...Array(FORMAT0_ENTITIES).keys()].map(format0Feed))
    assert.equal(await store.lastSeq(collection), FORMAT0_ENTITIES)
    const leaves = new Map((await collect(store.leaves(collection))).map(([leaf, bytes]) => [leaf, toHex(bytes)]))
    const expected = new Map<number, string>() // a later id of the same leaf overwrote its leaf
    for (let k = 0; k < FORMAT0_ENTITIES; k++) expected.set(leafOf(format0Id(k)), toHex(sha256('leaf', collection, format0Id(k))))
    assert.deepEqual(leaves, expected)
  }
}

/**
 * Checks the raw folder after a migration: the same keys as before plus the format record,
 * every value the old one behind a header that checks (sealed once, not twice).
 */
function expectMigratedOnce(before: Map<string, Uint8Array>, after: Map<string, Uint8Array>): void {
  assert.equal(after.has(PROGRESS), false, 'the progress record is left behind')
  assert.ok(after.has(FORMAT), 'no format record')
  assert.deepEqual([...after.keys()].filter((k) => k !== FORMAT).sort(), [...before.keys()].sort())
  for (const [key, old] of before) {
    const prefix = key.slice(0, key.indexOf('!', 1) + 1)
    const body = openRecord(prefixSum(prefix), key.slice(prefix.length), after.get(key)!)
    assert.ok(body !== undefined, `${JSON.stringify(key)} does not check`)
    assert.equal(toHex(body), toHex(old), `${JSON.stringify(key)} is not its old value behind one header`)
  }
}

describe('LevelStore format migration (format 0 → 1)', function () {
  this.timeout(30_000)
  const dirs: string[] = []
  let store: LevelStore | undefined
  afterEach(async () => {
    await store?.close().catch(() => undefined)
    store = undefined
    for (const dir of dirs.splice(0)) await removeDir(dir)
  })

  async function fixture(): Promise<{ dir: string; before: Map<string, Uint8Array> }> {
    const dir = await copyFormat0Fixture()
    dirs.push(dir)
    const before = await rawRecords(dir)
    assert.ok(before.size > 1000, `${before.size} records in the fixture`)
    assert.equal(before.has(FORMAT), false, 'the fixture is not format 0')
    return { dir, before }
  }

  it('opens a folder written by the format-0 store: every record is kept, sealed in place, once', async function () {
    const { dir, before } = await fixture()
    store = classicLevelStore(dir)
    await store.open()
    await expectFixtureData(store)
    await store.close()
    const after = await rawRecords(dir)
    expectMigratedOnce(before, after)
    // The next open finds format 1 and rewrites nothing.
    store = classicLevelStore(dir)
    await store.open()
    await expectFixtureData(store)
    await store.close()
    const again = await rawRecords(dir)
    assert.deepEqual(
      [...again].map(([k, v]) => [k, toHex(v)]),
      [...after].map(([k, v]) => [k, toHex(v)]),
    )
  })

  /** How many batches a whole migration of the fixture takes, in chunks of 97. */
  async function batchesOfMigration(): Promise<number> {
    const { dir } = await fixture()
    store = classicLevelStore(dir, { chunk: 97 })
    let count = 0
    const batch = store.db.batch.bind(store.db)
    store.db.batch = (() => (count++, batch())) as typeof store.db.batch
    await store.open()
    await store.close()
    store = undefined
    return count
  }

  for (const stop of [0, 1, 4, 13, 'all but the last'] as const) {
    it(`a migration stopped after ${stop} of its batches (a crash) is finished by the next open, nothing lost or sealed twice`, async function () {
      const batches = stop === 'all but the last' ? (await batchesOfMigration()) - 1 : stop
      if (stop === 'all but the last') assert.ok(batches > 13, `the migration took ${batches + 1} batches`)
      const { dir, before } = await fixture()
      store = classicLevelStore(dir, { chunk: 97 })
      failBatchesAfter(store, batches)
      const err = await store.open().then(
        () => undefined,
        (e: unknown) => e,
      )
      assert.ok(isConvergentError(err, 'ERR_STORE'), `open() did not fail: ${String(err)}`)
      await store.close()
      const partial = await rawRecords(dir)
      assert.equal(partial.has(FORMAT), false)
      assert.equal(partial.has(PROGRESS), batches > 0, 'the progress record goes with the first batch')

      store = classicLevelStore(dir, { chunk: 97 })
      await store.open()
      await expectFixtureData(store)
      await store.close()
      expectMigratedOnce(before, await rawRecords(dir))
    })
  }

  it('a progress record that fails its check: the migration starts over and seals only what is not sealed yet', async function () {
    const { dir, before } = await fixture()
    store = classicLevelStore(dir, { chunk: 100 })
    failBatchesAfter(store, 6)
    await store.open().catch(() => undefined)
    await store.close()
    const partial = await rawRecords(dir)
    const progress = new Uint8Array(partial.get(PROGRESS)!)
    progress[HEADER_BYTES + 3]! ^= 1
    await putRaw(dir, [[PROGRESS, progress]])

    store = classicLevelStore(dir)
    await store.open()
    await expectFixtureData(store)
    await store.close()
    expectMigratedOnce(before, await rawRecords(dir))
  })

  it('keeps a format-1 folder at 1 while only looked at or written plainly, and marks it 2 in the batch of its first feed entry with a proof', async function () {
    const { dir } = await fixture()
    store = classicLevelStore(dir)
    await store.open()
    await store.close()
    await putRaw(dir, [[FORMAT, sealCopy(FORMAT, encodeJson({ version: 1 }))]])
    const version = async (): Promise<unknown> => JSON.parse(Buffer.from((await rawRecords(dir)).get(FORMAT)!.subarray(HEADER_BYTES)).toString('utf8')).version
    const before = await rawRecords(dir)
    // Opened (a dump, an audit) and written without a proof: still 1, every record as it was but the new ones.
    store = classicLevelStore(dir)
    await store.open()
    await store.write([{ type: 'feed', collection: 'fmt', entry: { seq: 1, id: 'plain', origin: 'local', time: 1, kind: 'put' } }])
    await store.close()
    assert.equal(await version(), 1)
    const after = await rawRecords(dir)
    for (const [key, value] of before) assert.deepEqual(after.get(key), value, key)
    // The first entry naming a proof: 2, in the same batch.
    store = classicLevelStore(dir)
    await store.open()
    await store.write([{ type: 'feed', collection: 'fmt', entry: { seq: 2, id: 'signed', origin: 'peer', time: 2, kind: 'remote', proof: 'ab'.repeat(16) } }])
    await store.close()
    assert.equal(await version(), 2)
  })

  it('refuses a folder of a newer format, and one whose format record fails its check with no other record to tell (test/format-damage.test.ts: one that has them)', async function () {
    const { dir } = await fixture()
    store = classicLevelStore(dir)
    await store.open()
    await store.close()
    await putRaw(dir, [[FORMAT, sealCopy(FORMAT, encodeJson({ version: STORE_FORMAT + 1 }))]])
    store = classicLevelStore(dir)
    const newer = await store.open().then(
      () => undefined,
      (e: unknown) => e,
    )
    assert.ok(isConvergentError(newer, 'ERR_STORE') && newer.message.includes(`store format ${STORE_FORMAT + 1}, newer than`), String(newer))
    await store.close()

    // Every other record damaged too (its last byte flipped): nothing tells the format.
    const raw = await rawRecords(dir)
    const damaged: [string, Uint8Array][] = [...raw].map(([key, value]) => {
      const bytes = new Uint8Array(value)
      bytes[bytes.length - 1]! ^= 1
      return [key, bytes]
    })
    await putRaw(dir, damaged)
    store = classicLevelStore(dir)
    const corrupt = await store.open().then(
      () => undefined,
      (e: unknown) => e,
    )
    assert.ok(isConvergentError(corrupt, 'ERR_STORE_CORRUPT') && corrupt.message.includes("format record ('format' in the store keyspace)"), String(corrupt))
    await store.close()
    store = undefined
    assert.deepEqual([...(await rawRecords(dir)).get(FORMAT)!], [...damaged.find(([k]) => k === FORMAT)![1]], 'nothing was written')
  })
})
