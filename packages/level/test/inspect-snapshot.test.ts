/**
 * A store opened for inspection (LevelStoreOptions.inspect, what every read command of the CLI
 * uses) leaves its folder exactly as it was: LevelDB's open replays its write-ahead log into a
 * table, starts a new log, rotates its info log and rewrites CURRENT and the MANIFEST, and
 * classic-level has no read-only open, so inspection opens a private snapshot of the folder.
 * Found by a review: one inspection rewrote CURRENT, LOG, LOG.old, the MANIFEST and the log,
 * and on a damaged log it let LevelDB delete the damaged log: the next inspection succeeded and
 * the service's next open reported no damage, with acknowledged writes silently gone.
 */
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import assert from 'node:assert/strict'
import { classicLevelStore } from '../src/index.js'
import { entityId, entityWrite } from './entity-ops.js'
import { forkStoreChild, type StoreChild } from './fork-child.js'
import { refusal, removeDir, tempDir } from './helpers.js'
import { folderTree, privateTmpdir } from '@convergent/core/testing'

/** The inspection snapshots in the temp folder (none is left behind). */
async function snapshots(): Promise<string[]> {
  return (await readdir(tmpdir())).filter((n) => n.startsWith('convergent-inspect-'))
}

const KEY = 'a1'.repeat(32)

describe('classic-level store opened for inspection: the folder is left exactly as it was', function () {
  // Inspections of other test files running beside these (mocha --parallel) make and sweep snapshots too.
  privateTmpdir('cv-inspect-tests-')
  this.timeout(60_000)
  let dir = ''
  let child: StoreChild | undefined
  let before: string[] = []

  beforeEach(async function () {
    dir = await tempDir('convergent-looked-at-')
    before = await snapshots()
  })

  afterEach(async function () {
    await child?.kill()
    child = undefined
    await removeDir(dir)
    assert.deepEqual(await snapshots(), before, 'an inspection snapshot was left in the temp folder')
  })

  /** `n` entities, each written by its own awaited batch, into a new store in `dir`; closed. */
  async function written(n: number, options = {}): Promise<void> {
    const store = classicLevelStore(dir, options)
    await store.open()
    for (let i = 1; i <= n; i++) await store.write(entityWrite('c', i))
    await store.close()
  }

  it('reading changes no byte and no name in the folder (the log, CURRENT, MANIFEST, LOG stay)', async function () {
    await written(50)
    const was = await folderTree(dir)
    assert.ok(
      Object.keys(was).some((n) => n.endsWith('.log')),
      'the writes are in the log',
    )
    for (let round = 0; round < 2; round++) {
      const store = classicLevelStore(dir, { inspect: true })
      await store.open()
      assert.equal(await store.lastSeq('c'), 50)
      assert.equal((await store.readEntity('c', entityId(50)))?.deltas.length, 1)
      assert.deepEqual(store.damage, [])
      await store.close()
      assert.deepEqual(await folderTree(dir), was, `after inspection ${round + 1}`)
    }
  })

  it('an encrypted folder: read with its key, nothing written', async function () {
    await written(5, { encryption: { key: KEY } })
    const was = await folderTree(dir)
    const store = classicLevelStore(dir, { inspect: true, encryption: { key: KEY } })
    await store.open()
    assert.equal(await store.lastSeq('c'), 5)
    await store.close()
    assert.deepEqual(await folderTree(dir), was)
  })

  it('a damaged log: every inspection fails with ERR_STORE_CORRUPT, and the service still reports the damage', async function () {
    await written(300)
    const logs = (await readdir(dir)).filter((n) => n.endsWith('.log'))
    assert.equal(logs.length, 1)
    const log = join(dir, logs[0]!)
    const bytes = await readFile(log)
    assert.ok(bytes.length > 20_000, `${bytes.length} bytes in the log`)
    bytes[10_000]! ^= 0xff
    await writeFile(log, bytes)
    const was = await folderTree(dir)

    for (let round = 1; round <= 3; round++) {
      const err = await refusal(() => classicLevelStore(dir, { inspect: true }))
      assert.equal(err.code, 'ERR_STORE_CORRUPT', `inspection ${round}: ${err.message}`)
      assert.match(err.message, /left as it is: opened for inspection/)
      assert.match(err.message, /LevelDB dropped \d+ bytes of its write-ahead log/)
      // It names the folder's own log, not the snapshot's copy of it.
      assert.ok(err.message.includes(log), err.message)
      assert.ok(!err.message.includes(tmpdir() + '/convergent-inspect-'), err.message)
      assert.deepEqual(await folderTree(dir), was, `after inspection ${round}`)
    }

    const service = classicLevelStore(dir)
    await service.open()
    try {
      assert.ok(service.damage.length > 0, 'the service no longer sees the damage')
      assert.match(service.damage[0]!, /LevelDB dropped \d+ bytes of its write-ahead log/)
      let lost = 0
      for (let n = 1; n <= 300; n++) if ((await service.readEntity('c', entityId(n))) === undefined) lost++
      assert.ok(lost > 0, 'acknowledged writes are lost: what the damage says')
    } finally {
      await service.close()
    }
  })

  it('a folder with no store (missing, empty, junk): ERR_STORE "holds no Convergent store", nothing created', async function () {
    const missing = join(dir, 'missing')
    const empty = join(dir, 'empty')
    const junk = join(dir, 'junk')
    await mkdir(empty)
    await mkdir(junk)
    await writeFile(join(junk, 'notes.txt'), 'not a database\n')
    await writeFile(join(junk, '000001.log'), 'garbage')
    const was = await folderTree(dir)
    for (const folder of [missing, empty, junk]) {
      for (const options of [{ inspect: true }, { inspect: true, encryption: { key: KEY } }]) {
        const err = await refusal(() => classicLevelStore(folder, options))
        assert.equal(err.code, 'ERR_STORE', `${folder}: ${err.message}`)
        assert.match(err.message, /holds no Convergent store/)
        assert.ok(err.message.includes(folder), err.message)
        assert.deepEqual(await folderTree(dir), was, `${folder} ${JSON.stringify(options)}`)
      }
    }
    await assert.rejects(stat(missing), /ENOENT/)
  })

  it('a folder in use (a store open here, or in another process): the same "locked" ERR_STORE as before, nothing written', async function () {
    await written(3)
    const locked = /is locked by another process \(or another open store in this process\)/
    const service = classicLevelStore(dir)
    await service.open()
    try {
      const was = await folderTree(dir)
      const err = await refusal(() => classicLevelStore(dir, { inspect: true }))
      assert.equal(err.code, 'ERR_STORE', err.message)
      assert.match(err.message, locked)
      assert.deepEqual(await folderTree(dir), was)
    } finally {
      await service.close()
    }

    child = await forkStoreChild('hold', dir)
    const err = await refusal(() => classicLevelStore(dir, { inspect: true }))
    assert.equal(err.code, 'ERR_STORE', err.message)
    assert.match(err.message, locked)
    await child.kill()
    child = undefined

    // And while a folder is inspected, a service cannot open it (as when the inspection held it itself).
    const inspection = classicLevelStore(dir, { inspect: true })
    await inspection.open()
    try {
      const busy = await refusal(() => classicLevelStore(dir))
      assert.match(busy.message, locked)
      await assert.rejects(forkStoreChild('hold', dir), /exited before it was ready/)
    } finally {
      await inspection.close()
    }
  })
})
