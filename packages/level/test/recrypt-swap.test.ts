// The folder swap of encrypt/rekey/decrypt (recrypt.ts) and what is left after it is cut short:
// a leftover folder is deleted only when the swap marks prove it belongs to a swap of db, a
// store is never created where db is missing beside a swap folder, and a db that is a symbolic
// link is swapped beside the folder it points to.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import fs, { existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, symlinkSync } from 'node:fs'
import { cp } from 'node:fs/promises'
import { join } from 'node:path'
import { isConvergentError } from '@convergent/core'
import { ClassicLevel } from 'classic-level'
import { classicLevelStore, recryptStore, SWAP_MARK_FILE } from '../src/index.js'
import { refusal, rejection, removeDir, tempDir } from './helpers.js'
import { crashingFs, expectEntities as expectEntitiesOf, writeEntities as writeEntitiesOf } from './swap-helpers.js'

const KEY = 'c3'.repeat(32)
const ENTITIES = 5

const writeEntities = (db: string): Promise<void> => writeEntitiesOf(db, ENTITIES)
const expectEntities = (db: string, key: string | undefined): Promise<void> => expectEntitiesOf(db, key, ENTITIES)

/** An empty LevelDB folder at `db`, as an earlier release's open() (or anything else) would create. */
async function createEmptyDb(db: string): Promise<void> {
  const level = new ClassicLevel(db)
  await level.open()
  await level.close()
}

/** A crash (crashingFs) at the first rename or removal `isCrashPoint` picks: its name and paths, as one string. true if that call was reached. */
function crashWhen(isCrashPoint: (call: string) => boolean, run: () => Promise<unknown>): Promise<boolean> {
  return crashingFs((call, paths) => {
    if (isCrashPoint(`${call} ${paths.join(' ')}`)) throw new Error('crash injected')
  }, run)
}

describe('recryptStore: the folder swap and its leftovers', function () {
  this.timeout(60_000)
  let parent = ''
  let db = ''
  const extra: string[] = []

  beforeEach(async function () {
    parent = await tempDir('convergent-swap-')
    db = join(parent, 'db')
  })

  afterEach(async function () {
    await Promise.all([parent, ...extra.splice(0)].map(removeDir))
  })

  /** A copy of the parent folder (db and its swap folders) in a new temp folder; its db. */
  async function copyOfParent(): Promise<string> {
    const copy = await tempDir('convergent-swap-copy-')
    extra.push(copy)
    await cp(parent, copy, { recursive: true })
    return join(copy, 'db')
  }

  /**
   * Between the two renames (no db): were either folder lost, the other holds the only copy.
   * The store refuses to create an empty db there, naming that folder; and with an empty db
   * created anyway (by an earlier release), encrypt refuses to delete it.
   */
  async function losingEitherFolderLosesNothing(): Promise<void> {
    for (const [kept, lost, key] of [
      ['.convergent-old', '.convergent-new', undefined],
      ['.convergent-new', '.convergent-old', KEY],
    ] as const) {
      const copy = await copyOfParent()
      await removeDir(copy + lost)
      const refused = await refusal(() => classicLevelStore(copy))
      assert.equal(refused.code, 'ERR_STORE', String(refused))
      assert.ok(refused.message.includes(`${copy} is missing, and ${copy}${kept} is there`), refused.message)
      assert.match(refused.message, /Rename it to .*Nothing was created or deleted\./)
      assert.equal(existsSync(copy), false, 'no store was created')

      await createEmptyDb(copy)
      const err = await rejection(recryptStore(copy, undefined, { key: KEY }))
      assert.equal(err.code, 'ERR_STORE', String(err))
      assert.ok(err.message.includes(`nothing proves ${copy}${kept} is`), err.message)
      await expectEntities(copy + kept, key)
    }
  }

  it('a swap cut short at any step: running it again finishes it with every entity and nothing left beside db; between the renames, losing either folder loses nothing', async function () {
    let between = 0
    for (let n = 1; ; n++) {
      await removeDir(parent)
      mkdirSync(parent)
      await writeEntities(db)
      let calls = 0
      // Step n: the n-th rename or removal of the run.
      if (
        !(await crashWhen(
          () => ++calls === n,
          () => recryptStore(db, undefined, { key: KEY }),
        ))
      )
        break
      if (!existsSync(db)) {
        between++
        await losingEitherFolderLosesNothing()
      }
      // A crash after the second rename leaves db encrypted: encrypt then cleans up and says so.
      await recryptStore(db, undefined, { key: KEY }).catch((err: unknown) => {
        if (!isConvergentError(err, 'ERR_ENCRYPTED')) throw err
      })
      await expectEntities(db, KEY)
      assert.deepEqual(readdirSync(parent), ['db'], `after a crash at step ${n} and a second run`)
    }
    assert.equal(between, 1, 'one step of the run crashed between the two renames')
  })

  it('folders without swap marks (as an earlier release leaves them) are refused, saying so, and nothing is deleted or moved', async function () {
    await writeEntities(db)
    await cp(db, db + '.convergent-old', { recursive: true })
    const old = await rejection(recryptStore(db, undefined, { key: KEY }))
    assert.equal(old.code, 'ERR_STORE', String(old))
    assert.ok(old.message.includes(`${db} and ${db}.convergent-old both exist, and nothing proves`), old.message)
    assert.match(old.message, new RegExp(`earlier release of Convergent \\(which wrote no ${SWAP_MARK_FILE} file\\) is refused this way too`))
    await expectEntities(db + '.convergent-old', undefined)

    // No db, and -old beside an encrypted -new (as an earlier release's encrypt cut short between
    // its renames leaves them): the two are not known to be halves of one swap.
    const copy = join(parent, 'copy')
    await cp(db, copy, { recursive: true })
    await recryptStore(copy, undefined, { key: KEY })
    fs.renameSync(copy, db + '.convergent-new')
    await removeDir(db)
    const halves = await rejection(recryptStore(db, undefined, { key: KEY }))
    assert.equal(halves.code, 'ERR_STORE', String(halves))
    assert.ok(halves.message.includes(`${db} is missing, and ${db}.convergent-old and ${db}.convergent-new do not hold the same`), halves.message)
    assert.match(halves.message, /earlier release/)
    assert.deepEqual(readdirSync(parent).sort(), ['db.convergent-new', 'db.convergent-old'])
  })

  it('a db that is a symbolic link: the swap happens beside the folder it points to, the link stays and points at it, encrypted', async function () {
    const volume = await tempDir('convergent-swap-volume-')
    extra.push(volume)
    const target = join(volume, 'store')
    await writeEntities(target)
    symlinkSync(target, db)
    await recryptStore(db, undefined, { key: KEY })
    assert.ok(lstatSync(db).isSymbolicLink(), 'db is still a link')
    assert.equal(readlinkSync(db), target)
    assert.deepEqual(readdirSync(parent), ['db'], 'nothing left beside the link')
    assert.deepEqual(readdirSync(volume), ['store'], 'nothing left beside the target')
    await expectEntities(target, KEY)
    assert.equal((await refusal(() => classicLevelStore(target))).code, 'ERR_ENCRYPTED')

    // Cut short between the renames, the link points at nothing: the store refuses it (the
    // swap folders are beside the target), and running the command again finishes it.
    const crashed = await crashWhen(
      (call) => call === `rename ${target}.convergent-new ${target}`,
      () => recryptStore(db, { key: KEY }, undefined), // decrypt
    )
    assert.ok(crashed && existsSync(target + '.convergent-old'), 'crashed between the renames, beside the target')
    const refused = await refusal(() => classicLevelStore(db))
    assert.equal(refused.code, 'ERR_STORE', String(refused))
    assert.match(refused.message, /interrupted between its two renames/)
    await recryptStore(db, { key: KEY }, undefined)
    assert.equal(readlinkSync(db), target)
    assert.deepEqual([readdirSync(parent), readdirSync(volume)], [['db'], ['store']])
    await expectEntities(db, undefined)
  })

  // A tmpfs mounted at db (root only: skipped where mounting is not allowed). Before, the whole
  // store was copied into db.convergent-new and the swap's rename failed with EBUSY, every run.
  it('a db that is a mount point is refused before anything is copied, naming the mount point; the store is unchanged', async function () {
    mkdirSync(db)
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', db], { stdio: 'ignore' })
    } catch {
      this.skip()
    }
    try {
      await writeEntities(db)
      const err = await rejection(recryptStore(db, undefined, { key: KEY }))
      assert.equal(err.code, 'ERR_STORE', String(err))
      assert.match(err.message, /is a mount point: .*Nothing was changed\./)
      assert.deepEqual(readdirSync(parent), ['db'], 'no copy, mark or lock folder left beside it')
      await expectEntities(db, undefined)
    } finally {
      execFileSync('umount', [db], { stdio: 'ignore' })
    }
  })
})
