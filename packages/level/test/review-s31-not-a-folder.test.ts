// Review s31: attacks on checkIsFolder (a store path that is a file is refused with ERR_STORE):
// symlinks, a first-time open, and whether anything is written or deleted before the refusal.
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import assert from 'node:assert/strict'
import { classicLevelStore, recryptStore, type LevelStore } from '../src/index.js'
import { rejection, removeDir, tempDir } from './helpers.js'

const KEY = 'b2'.repeat(32)

async function openClose(store: LevelStore): Promise<void> {
  await store.open()
  await store.close()
}

describe('review s31: store paths that are not plain folders', function () {
  this.timeout(30_000)
  let dir = ''

  beforeEach(async function () {
    dir = await tempDir('convergent-s31-')
  })

  afterEach(async function () {
    await removeDir(dir)
  })

  it('holds: a first-time open (db missing, its parent missing too) creates the store, plain and encrypted', async function () {
    await openClose(classicLevelStore(join(dir, 'db')))
    assert.ok(existsSync(join(dir, 'db', 'CURRENT')))
    await openClose(classicLevelStore(join(dir, 'a', 'b', 'db'), { encryption: { key: KEY } }))
    assert.ok(existsSync(join(dir, 'a', 'b', 'db', 'CURRENT')))
    // And opened again (the checks see a folder now).
    await openClose(classicLevelStore(join(dir, 'a', 'b', 'db'), { encryption: { key: KEY } }))
  })

  it('holds: db a symlink to a folder holding a store opens, plain and encrypted, to write and to inspect', async function () {
    const real = join(dir, 'real')
    const realEnc = join(dir, 'real-enc')
    await openClose(classicLevelStore(real))
    await openClose(classicLevelStore(realEnc, { encryption: { key: KEY } }))
    symlinkSync(real, join(dir, 'db'))
    symlinkSync(realEnc, join(dir, 'db-enc'))
    await openClose(classicLevelStore(join(dir, 'db')))
    await openClose(classicLevelStore(join(dir, 'db'), { inspect: true }))
    await openClose(classicLevelStore(join(dir, 'db-enc'), { encryption: { key: KEY } }))
    await openClose(classicLevelStore(join(dir, 'db-enc'), { encryption: { key: KEY }, inspect: true }))
  })

  it('holds: db a symlink to a file is refused as a file, and the file is left as it was', async function () {
    const file = join(dir, 'target.txt')
    writeFileSync(file, 'keep me')
    symlinkSync(file, join(dir, 'db'))
    for (const options of [{}, { encryption: { key: KEY } }, { inspect: true }]) {
      const err = await rejection(Promise.resolve().then(() => classicLevelStore(join(dir, 'db'), options)))
      assert.equal(err.code, 'ERR_STORE', String(err))
      assert.match(err.message, /is a file, not a folder/)
    }
    assert.equal(readFileSync(file, 'utf8'), 'keep me')
    assert.deepEqual(readdirSync(dir).sort(), ['db', 'target.txt'])
  })

  // HOLE 3: recryptStore finished an "interrupted swap" before checking that db is a folder:
  // with db a file and a db.convergent-old folder beside it, it took db for the new folder in
  // place and deleted db.convergent-old — then refused db with "Nothing was written".
  it('HOLE 3 (fixed): encrypt of a db that is a file deletes nothing beside it (db.convergent-old, db.convergent-new)', async function () {
    const db = join(dir, 'db')
    writeFileSync(db, 'not a database')
    for (const suffix of ['.convergent-old', '.convergent-new']) {
      mkdirSync(db + suffix)
      writeFileSync(join(db + suffix, 'precious'), 'data')
      const err = await rejection(recryptStore(db, undefined, { key: KEY }))
      assert.equal(err.code, 'ERR_STORE', String(err))
      assert.match(err.message, /is a file, not a folder/)
      assert.equal(readFileSync(join(db + suffix, 'precious'), 'utf8'), 'data', `${suffix} was deleted`)
      await removeDir(db + suffix)
    }
  })
})
