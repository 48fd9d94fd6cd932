/**
 * A store path that is a file, or lies under one, is refused with ERR_STORE naming it and
 * saying it is not a folder — for a store that writes, one opened for inspection (the CLI's read
 * commands) and an encrypt/rekey. It was the raw ENOTDIR of the first file opened in it (found by
 * a new-user review: a data folder whose `db` was a file).
 */
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import assert from 'node:assert/strict'
import { classicLevelStore, recryptStore } from '../src/index.js'
import { refusal, rejection, removeDir, tempDir } from './helpers.js'

const KEY = 'a1'.repeat(32)

describe('classic-level store at a path that is not a folder', function () {
  let dir = ''
  let file = ''

  beforeEach(async function () {
    dir = await tempDir('convergent-not-a-folder-')
    file = join(dir, 'db')
    await writeFile(file, 'not a database')
  })

  afterEach(async function () {
    await removeDir(dir)
  })

  /** The refusal names the path and says what is wrong; the file and its folder are left as they were. */
  async function expectRefused(err: Error & { code?: string }, path: string, what: string): Promise<void> {
    assert.equal(err.code, 'ERR_STORE', String(err))
    assert.ok(err.message.startsWith(`${path} ${what}`), err.message)
    assert.equal(await readFile(file, 'utf8'), 'not a database')
    assert.deepEqual(await readdir(dir), ['db'])
  }

  it('a file: ERR_STORE naming it, for a store that writes, with or without a key, and one opened for inspection', async function () {
    await expectRefused(await refusal(() => classicLevelStore(file)), file, 'is a file, not a folder')
    await expectRefused(await refusal(() => classicLevelStore(file, { encryption: { key: KEY } })), file, 'is a file, not a folder')
    await expectRefused(await refusal(() => classicLevelStore(file, { inspect: true })), file, 'is a file, not a folder')
  })

  it('a path under a file: ERR_STORE saying part of its path is a file', async function () {
    const under = join(file, 'db')
    await expectRefused(await refusal(() => classicLevelStore(under)), under, 'cannot be a folder: part of its path is a file')
    await expectRefused(await refusal(() => classicLevelStore(under, { inspect: true })), under, 'cannot be a folder: part of its path is a file')
  })

  it('encrypt (recryptStore) of a file: ERR_STORE naming it', async function () {
    await expectRefused(await rejection(recryptStore(file, undefined, { key: KEY })), file, 'is a file, not a folder')
  })
})
