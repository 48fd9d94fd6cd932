/**
 * A store 'format' record that fails its check (a damaged disk): the folder's other records
 * tell whether it is sealed as this store seals (plain, or encrypted with the key given). If
 * they do, open() takes the folder as the current format, rewrites the record (the damaged one
 * moved aside) and says so in `damage`; if they do not, it refuses as before and writes nothing.
 * Plain and encrypted, classic-level and memory-level (no marker file: the records alone decide).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { isConvergentError } from '@convergent/core'
import { MemoryLevel } from 'memory-level'
import { classicLevelStore, LevelStore, memoryLevelStore } from '../src/index.js'
import { encodeJson } from '../src/codec.js'
import { AtRestSealer } from '../src/encryption.js'
import { STORE_FORMAT } from '../src/format.js'
import { FORMAT_KEY } from '../src/keys.js'
import { openRecord, prefixSum, sealCopy } from '../src/record.js'
import { entityWrite } from './entity-ops.js'
import { putRaw, rawRecords, rejection, removeDir, tempDir } from './helpers.js'

const FORMAT = `!store!${FORMAT_KEY}`
const KEY = randomBytes(32)
const OTHER = randomBytes(32)

type Mem = MemoryLevel<string, Uint8Array>

async function memRecords(db: Mem): Promise<Map<string, Uint8Array>> {
  await db.open()
  try {
    return new Map((await db.iterator().all()).map(([k, v]) => [k, new Uint8Array(v)]))
  } finally {
    await db.close()
  }
}

async function memPut(db: Mem, key: string, value: Uint8Array): Promise<void> {
  await db.open()
  try {
    await db.put(key, value)
  } finally {
    await db.close()
  }
}

function flipLast(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes)
  out[out.length - 1]! ^= 0x40
  return out
}

function versionIn(stored: Uint8Array, key?: Buffer): unknown {
  const body = key === undefined ? openRecord(prefixSum('!store!'), FORMAT_KEY, stored) : new AtRestSealer(key).open('!store!', 0, FORMAT_KEY, stored)
  assert.ok(body !== undefined, 'the format record does not open')
  return (JSON.parse(Buffer.from(body).toString('utf8')) as { version: unknown }).version
}

/** A memory-level store with two entities, its format record then damaged; the database. */
async function memoryFolder(encryption?: Buffer): Promise<{ db: Mem; damaged: Uint8Array }> {
  const store = memoryLevelStore(encryption === undefined ? {} : { encryption: { key: encryption } })
  await store.open()
  await store.write(entityWrite('c', 1))
  await store.write(entityWrite('c', 2))
  await store.close()
  const db = store.db as unknown as Mem
  const damaged = flipLast((await memRecords(db)).get(FORMAT)!)
  await memPut(db, FORMAT, damaged)
  return { db, damaged }
}

async function codeOf(open: () => Promise<unknown>): Promise<string | undefined> {
  const err = await rejection(open())
  assert.ok(isConvergentError(err), String(err))
  assert.ok(!err.message.includes(KEY.toString('hex')) && !err.message.includes(OTHER.toString('hex')), 'the message echoes a key')
  return err.code
}

describe('LevelStore: a damaged store format record', function () {
  this.timeout(30_000)
  const dirs: string[] = []
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await removeDir(dir)
  })

  it('classic-level, plain: the other records tell; the folder opens as the current format, the record is rewritten, the damaged one quarantined, damage says so; the next open is clean', async function () {
    const dir = await tempDir()
    dirs.push(dir)
    let store = classicLevelStore(dir)
    await store.open()
    await store.write(entityWrite('c', 1))
    await store.close()
    const damaged = flipLast((await rawRecords(dir)).get(FORMAT)!)
    await putRaw(dir, [[FORMAT, damaged]])
    store = classicLevelStore(dir)
    await store.open()
    try {
      assert.equal(store.damage.length, 1, store.damage.join(' | '))
      assert.match(store.damage[0]!, /format record \('format' in the store keyspace\) failed its check.*taken as store format 3/)
      assert.equal((await store.readEntity('c', 'entity-1'))?.deltas.length, 1)
      const moved = []
      for await (const r of store.quarantined()) moved.push([r.keyspace, r.key, [...r.bytes!]])
      assert.deepEqual(moved, [['store', FORMAT_KEY, [...damaged]]])
    } finally {
      await store.close()
    }
    assert.equal(versionIn((await rawRecords(dir)).get(FORMAT)!), STORE_FORMAT)
    store = classicLevelStore(dir)
    await store.open()
    assert.deepEqual(store.damage, [])
    await store.close()
  })

  it('plain: a flip of the format byte that makes the record look encrypted is still recovered (the records prove the folder plain)', async function () {
    const { db } = await memoryFolder()
    const stored = (await memRecords(db)).get(FORMAT)!
    const looksEncrypted = new Uint8Array(Math.max(stored.length, 64))
    looksEncrypted.set(stored)
    looksEncrypted[0] = 3
    await memPut(db, FORMAT, looksEncrypted)
    const store = new LevelStore(db)
    await store.open()
    assert.equal(store.damage.length, 1)
    await store.close()
    assert.equal(versionIn((await memRecords(db)).get(FORMAT)!), STORE_FORMAT)
  })

  it('memory-level, encrypted: with its key it is recovered (sealed with the key); without a key ERR_ENCRYPTED, with another ERR_WRONG_KEY, and nothing is written', async function () {
    const { db, damaged } = await memoryFolder(KEY)
    assert.equal(await codeOf(() => new LevelStore(db).open()), 'ERR_ENCRYPTED')
    assert.equal(await codeOf(() => new LevelStore(db, { encryption: { key: OTHER } }).open()), 'ERR_WRONG_KEY')
    assert.deepEqual([...(await memRecords(db)).get(FORMAT)!], [...damaged])
    const store = new LevelStore(db, { encryption: { key: KEY } })
    await store.open()
    assert.match(store.damage.join(' '), /encrypted with the key given/)
    assert.equal((await store.readEntity('c', 'entity-2'))?.deltas.length, 1)
    await store.close()
    assert.equal(versionIn((await memRecords(db)).get(FORMAT)!, KEY), STORE_FORMAT)
  })

  it('memory-level, plain, opened with a key: ERR_NOT_ENCRYPTED, nothing written (never taken as encrypted)', async function () {
    const { db, damaged } = await memoryFolder()
    assert.equal(await codeOf(() => new LevelStore(db, { encryption: { key: KEY } }).open()), 'ERR_NOT_ENCRYPTED')
    assert.deepEqual([...(await memRecords(db)).get(FORMAT)!], [...damaged])
  })

  it('nothing else in the folder: refused with ERR_STORE_CORRUPT naming the record and the way out, nothing written', async function () {
    const store0 = memoryLevelStore()
    await store0.open()
    await store0.close()
    const db = store0.db as unknown as Mem
    const damaged = flipLast((await memRecords(db)).get(FORMAT)!)
    await memPut(db, FORMAT, damaged)
    const err = await rejection(new LevelStore(db).open())
    assert.ok(isConvergentError(err, 'ERR_STORE_CORRUPT'), String(err))
    assert.match(err.message, /format record \('format' in the store keyspace\).*no other record opens.*Nothing was written.*restore the folder from a backup/)
    assert.deepEqual([...(await memRecords(db)).get(FORMAT)!], [...damaged])
  })

  it('a record that opens but does not decode (a layout of a newer release?): refused, nothing written', async function () {
    const { db, damaged } = await memoryFolder()
    await memPut(db, '!collections!odd', sealCopy('!collections!odd', encodeJson({ notBackend: 1 })))
    const err = await rejection(new LevelStore(db).open())
    assert.ok(isConvergentError(err, 'ERR_STORE_CORRUPT'), String(err))
    assert.match(err.message, /layout this version does not know/)
    assert.deepEqual([...(await memRecords(db)).get(FORMAT)!], [...damaged])
  })

  it('opened for inspection: reported (ERR_STORE_CORRUPT naming the record), nothing written', async function () {
    const dir = await tempDir()
    dirs.push(dir)
    const store = classicLevelStore(dir)
    await store.open()
    await store.write(entityWrite('c', 1))
    await store.close()
    const damaged = flipLast((await rawRecords(dir)).get(FORMAT)!)
    await putRaw(dir, [[FORMAT, damaged]])
    const err = await rejection(classicLevelStore(join(dir), { inspect: true }).open())
    assert.ok(isConvergentError(err, 'ERR_STORE_CORRUPT') && err.message.includes("format record ('format' in the store keyspace)"), String(err))
    assert.deepEqual([...(await rawRecords(dir)).get(FORMAT)!], [...damaged])
  })
})
