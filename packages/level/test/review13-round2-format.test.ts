/**
 * Second review of signed writes (issue #13): the store format bump 1 → 2 on damaged, encrypted
 * and re-keyed folders. Probes: attacks tried that found no hole, kept as regression guards.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { isConvergentError } from '@convergent/core'
import { classicLevelStore, recryptStore, type LevelStore } from '../src/index.js'
import { encodeJson } from '../src/codec.js'
import { AtRestSealer } from '../src/encryption.js'
import { FORMAT_KEY } from '../src/keys.js'
import { openRecord, prefixSum, sealCopy } from '../src/record.js'
import { putRaw, rawRecords, rejection, removeDir, tempDir } from './helpers.js'

const FORMAT = `!store!${FORMAT_KEY}`
const PROOF = 'proof/orders\u000000112233445566778899aabbccddeeff'

describe('Store format 2 under attack (review 13, round 2)', function () {
  this.timeout(30_000)
  const dirs: string[] = []
  let store: LevelStore | undefined
  afterEach(async () => {
    await store?.close().catch(() => undefined)
    store = undefined
    for (const dir of dirs.splice(0)) await removeDir(dir)
  })

  /** A folder with a collection, a feed entry naming a proof and the proof, then marked format 1 (as a build before the bump wrote it). */
  async function format1Folder(key?: Buffer): Promise<string> {
    const parent = await tempDir('convergent-r13-')
    dirs.push(parent) // the whole temp folder goes afterwards, not only the store in it
    const dir = join(parent, 'db')
    store = classicLevelStore(dir, key === undefined ? {} : { encryption: { key } })
    await store.open()
    await store.write([
      { type: 'collection', collection: 'orders', meta: { backend: 'yjs' } },
      { type: 'feed', collection: 'orders', entry: { seq: 1, id: 'o-1', origin: 'peer', time: 1, kind: 'remote', proof: '00112233445566778899aabbccddeeff' } },
      { type: 'meta', key: PROOF, bytes: new Uint8Array([1, 2, 3]) },
    ])
    await store.close()
    store = undefined
    const body = encodeJson({ version: 1 })
    await putRaw(dir, [[FORMAT, key === undefined ? sealCopy(FORMAT, body) : new AtRestSealer(key).sealCopy(FORMAT, body)]])
    return dir
  }

  async function versionOf(dir: string, key?: Buffer): Promise<unknown> {
    const stored = (await rawRecords(dir)).get(FORMAT)!
    const body =
      key === undefined ? openRecord(prefixSum('!store!'), FORMAT_KEY, stored) : new AtRestSealer(key).open('!store!', prefixSum('!store!'), FORMAT_KEY, stored)
    return (JSON.parse(Buffer.from(body!).toString('utf8')) as { version: unknown }).version
  }

  it('probe: an encrypted format-1 folder stays 1 while read and becomes 2, sealed with its key, with its first proof entry; without the key, or with another, it is refused and left at 1', async function () {
    const key = randomBytes(32)
    const dir = await format1Folder(key)
    for (const options of [{}, { encryption: { key: randomBytes(32) } }]) {
      // Refused when the store is made (the folder's encryption marker) or when it opens.
      const err = await rejection(
        (async () => {
          store = classicLevelStore(dir, options)
          await store.open()
        })(),
      )
      assert.ok(isConvergentError(err), String(err))
      await store?.close().catch(() => undefined)
      store = undefined
      assert.equal(await versionOf(dir, key), 1)
    }
    store = classicLevelStore(dir, { encryption: { key } })
    await store.open()
    assert.deepEqual(
      (await collectFeed(store)).map((e) => e.proof),
      ['00112233445566778899aabbccddeeff'],
    )
    assert.deepEqual([...(await store.getMeta(PROOF))!], [1, 2, 3])
    await store.close()
    store = undefined
    assert.equal(await versionOf(dir, key), 1) // only read: an older release still opens it
    store = classicLevelStore(dir, { encryption: { key } })
    await store.open()
    await store.write([{ type: 'feed', collection: 'orders', entry: { seq: 2, id: 'o-2', origin: 'peer', time: 2, kind: 'remote', proof: 'ff'.repeat(16) } }])
    await store.close()
    store = undefined
    assert.equal(await versionOf(dir, key), 2)
  })

  it('probe: encrypt / rekey / decrypt of a format-1 folder keep its format and leave a folder that opens with the new key (or none)', async function () {
    const dir = await format1Folder()
    const k1 = randomBytes(32)
    const k2 = randomBytes(32)
    await recryptStore(dir, undefined, { key: k1 })
    assert.equal(await versionOf(dir, k1), 1)
    await recryptStore(dir, { key: k1 }, { key: k2 })
    assert.equal(await versionOf(dir, k2), 1)
    await recryptStore(dir, { key: k2 }, undefined)
    assert.equal(await versionOf(dir), 1)
    store = classicLevelStore(dir)
    await store.open()
    assert.equal((await collectFeed(store))[0]?.proof, '00112233445566778899aabbccddeeff')
    assert.deepEqual([...(await store.getMeta(PROOF))!], [1, 2, 3])
  })

  it('probe: a format record that fails its check beside records that open is not "upgraded" to 2 over, nor read as 1: the folder is taken as the current format (never less than it may need), the damaged record kept in quarantine', async function () {
    const dir = await format1Folder()
    const damaged = sealCopy(FORMAT, encodeJson({ version: 1 }))
    damaged[damaged.length - 1]! ^= 0xff
    await putRaw(dir, [[FORMAT, damaged]])
    store = classicLevelStore(dir)
    await store.open()
    assert.match(store.damage.join(' '), /format record \('format' in the store keyspace\) failed its check/)
    assert.deepEqual(
      (await collectFeed(store)).map((e) => e.proof),
      ['00112233445566778899aabbccddeeff'],
    )
    const quarantined = []
    for await (const r of store.quarantined()) quarantined.push(r)
    assert.deepEqual(
      quarantined.map((r) => [r.keyspace, r.key, [...r.bytes!]]),
      [['store', FORMAT_KEY, [...damaged]]],
    )
    await store.close()
    store = undefined
    assert.equal(await versionOf(dir), 3)
  })
})

async function collectFeed(store: LevelStore): Promise<{ proof?: string }[]> {
  const out: { proof?: string }[] = []
  for await (const e of store.feed('orders', 0)) out.push(e)
  return out
}
