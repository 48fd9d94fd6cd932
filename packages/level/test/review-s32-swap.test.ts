// Review s32: the folder swap of encrypt/rekey/decrypt (recrypt.ts, swap.ts) attacked at the
// states its marks must tell apart. Real LevelDB folders in temp folders.
import assert from 'node:assert/strict'
import fs, { existsSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { isConvergentError } from '@convergent/core'
import { ClassicLevel } from 'classic-level'
import { classicLevelStore, recryptStore, SWAP_MARK_FILE } from '../src/index.js'
import { refusal, rejection, removeDir, tempDir } from './helpers.js'
import { crashingFs, expectEntities as expectEntitiesOf, writeEntities as writeEntitiesOf } from './swap-helpers.js'

const KEY = '5e'.repeat(32)
const ENTITIES = 4

const writeEntities = (db: string): Promise<void> => writeEntitiesOf(db, ENTITIES)
const expectEntities = (db: string, key: string | undefined): Promise<void> => expectEntitiesOf(db, key, ENTITIES)
/** crashingFs with the first path of each call. */
const crashing = (hook: (call: 'rm' | 'rename', path: string) => void, run: () => Promise<unknown>): Promise<boolean> =>
  crashingFs((call, paths) => hook(call, paths[0] ?? ''), run)

describe('review s32: encrypt/rekey/decrypt folder swap', function () {
  this.timeout(60_000)
  let parent = ''
  let db = ''

  beforeEach(async function () {
    parent = await tempDir('convergent-s32-swap-')
    db = join(parent, 'db')
  })

  afterEach(async function () {
    await removeDir(parent)
  })

  // An earlier release (no swap marks) cut short between its renames leaves no db, -old and a
  // complete -new. Lose -old, and that release's open() created an empty db (the data loss
  // 9729c3d closes for its own folders): -new, unmarked, is the only copy. finishSwap took any
  // unmarked -new beside db for a copy cut short while being built, and deleted it.
  it('HOLE 1: an unmarked -new beside db (an earlier release’s complete copy, db created empty after) is refused, not deleted', async function () {
    const built = join(parent, 'built')
    await writeEntities(built)
    await recryptStore(built, undefined, { key: KEY }) // the complete, encrypted copy
    rmSync(join(built, SWAP_MARK_FILE), { force: true }) // as an earlier release left it: no mark
    renameSync(built, db + '.convergent-new')
    const empty = new ClassicLevel(db)
    await empty.open()
    await empty.close()

    const err = await rejection(recryptStore(db, undefined, { key: KEY }))
    assert.equal(err.code, 'ERR_STORE', String(err))
    assert.ok(err.message.includes(`nothing proves ${db}.convergent-new is`), err.message)
    await expectEntities(db + '.convergent-new', KEY)
  })

  it('HOLE 1 (the other side): a run cut short while building -new, at any rename or removal, is still finished by running it again', async function () {
    // The marks the run writes are renames too: a crash at each of the first few.
    for (let n = 1; n <= 4; n++) {
      await removeDir(parent)
      mkdirSync(parent)
      await writeEntities(db)
      let calls = 0
      const crashed = await crashing(
        () => {
          if (++calls === n) throw new Error('crash injected')
        },
        () => recryptStore(db, undefined, { key: KEY }),
      )
      assert.ok(crashed)
      await recryptStore(db, undefined, { key: KEY }).catch((err: unknown) => {
        if (!isConvergentError(err, 'ERR_ENCRYPTED')) throw err
      })
      await expectEntities(db, KEY)
      assert.deepEqual(readdirSync(parent), ['db'], `crash at call ${n}`)
    }
  })

  // Step 3 deletes -old with one recursive rm, which removes entries in readdir order: on ext4
  // the mark (the newest file) is commonly listed first. A crash partway leaves -old with
  // LevelDB's files but no mark, and the next run refused it ("nothing proves …"), asking the
  // user to check db and delete -old by hand, instead of finishing.
  it('HOLE 2: a crash partway through deleting -old (its mark already gone) is finished by running the command again', async function () {
    const old = db + '.convergent-old'
    for (let k = 1; ; k++) {
      await removeDir(parent)
      mkdirSync(parent)
      await writeEntities(db)
      let inOld = 0
      const crashed = await crashing(
        (call, path) => {
          if (call !== 'rm' || (path !== old && !path.startsWith(old + '/'))) return
          if (++inOld < k) return
          // A recursive rm of the folder: its first entry (the mark, say) goes, then the crash.
          if (path === old && existsSync(join(old, SWAP_MARK_FILE))) fs.unlinkSync(join(old, SWAP_MARK_FILE))
          throw new Error('crash injected')
        },
        () => recryptStore(db, undefined, { key: KEY }),
      )
      if (!crashed) break
      assert.ok(existsSync(db), 'the crash came after the renames')
      await recryptStore(db, undefined, { key: KEY }).catch((err: unknown) => {
        if (!isConvergentError(err, 'ERR_ENCRYPTED')) throw err
      })
      assert.deepEqual(readdirSync(parent), ['db'], `crash at the ${k}. removal in -old`)
      await expectEntities(db, KEY)
    }
  })

  // swapBase followed a dangling link by hand with path.resolve, which removes `..` by text: a
  // relative link `../shared/store` in a data folder reached through a symbolic link points,
  // for the kernel, beside the real folder, but swapBase looked beside the link. Cut short
  // between the renames, the store gave LevelDB's raw IO error instead of "run it again", and
  // running the command again said the folder holds no store.
  it('HOLE 3: a relative db link in a data folder reached through a link: cut short between the renames, open() says so and running it again finishes it', async function () {
    const real = join(parent, 'real')
    mkdirSync(join(real, 'app'), { recursive: true })
    await writeEntities(join(real, 'shared', 'store'))
    symlinkSync('../shared/store', join(real, 'app', 'db'))
    symlinkSync(join(real, 'app'), join(parent, 'app')) // the data folder, as given
    const given = join(parent, 'app', 'db')
    const target = join(real, 'shared', 'store')

    const crashed = await crashing(
      (call, path) => {
        if (call === 'rename' && path === target + '.convergent-new') throw new Error('crash injected')
      },
      () => recryptStore(given, undefined, { key: KEY }),
    )
    assert.ok(crashed && existsSync(target + '.convergent-old'), 'cut short between the renames, beside the target')

    const refused = await refusal(() => classicLevelStore(given))
    assert.equal(refused.code, 'ERR_STORE', String(refused))
    assert.match(refused.message, /interrupted between its two renames/)
    const result = await recryptStore(given, undefined, { key: KEY })
    assert.equal(result.resumed, true)
    await expectEntities(given, KEY)
    assert.deepEqual(readdirSync(join(real, 'shared')), ['store'])
  })

  // The mark is read from disk: a file in its place that is huge, endless (a link to /dev/zero) or
  // garbage must be refused — never read whole, never taken for a match — and nothing deleted.
  it('a swap mark that is huge, endless or garbage is refused without reading it whole, and nothing is deleted', async function () {
    await writeEntities(db)
    const old = db + '.convergent-old'
    mkdirSync(old)
    writeFileSync(join(old, SWAP_MARK_FILE), 'a'.repeat(32))
    const mark = join(db, SWAP_MARK_FILE)
    for (const make of [
      () => {
        writeFileSync(mark, '')
        truncateSync(mark, 1500 * 1024 * 1024) // sparse: no disk used
      },
      () => symlinkSync('/dev/zero', mark),
      () => writeFileSync(mark, 'x'.repeat(65)),
    ]) {
      rmSync(mark, { force: true })
      make()
      const err = await rejection(recryptStore(db, undefined, { key: KEY }))
      assert.equal(err.code, 'ERR_STORE', String(err))
      assert.match(err.message, /as a swap mark \(over 64 bytes\); nothing was deleted/)
      assert.ok(existsSync(old), '-old kept')
    }
    // A mark of the right size that matches nothing (a flipped byte, say): refused, nothing deleted.
    rmSync(mark)
    writeFileSync(mark, 'b'.repeat(32))
    const err = await rejection(recryptStore(db, undefined, { key: KEY }))
    assert.match(err.message, /nothing proves .* is the folder a finished encrypt/)
    assert.ok(existsSync(old), '-old kept')
    rmSync(mark)
    await expectEntities(db, undefined)
  })

  // Two runs on one folder at once (two shells, or a script started twice): the second's
  // finishSwap ran before any lock, and deleted a -new that has no mark or db's: the first run's
  // copy, while it is being built or renamed into place. Seen when the first has written its
  // marks and is about to swap: the second deleted -new under it, and the first's rename then
  // failed — or, with the second's recursive rm partway through as the first renamed -new to db,
  // db lost files and the first deleted -old, the only whole copy. Fixed: each run holds the
  // LevelDB LOCK of <db>.convergent-lock from before finishSwap to the end (withSwapLock; the
  // system releases it if the process dies); a second run meanwhile is refused, touching nothing.
  it('HOLE 4 (fixed): a second encrypt started while the first is copying is refused, touching nothing, and the first finishes', async function () {
    await writeEntities(db)
    let done = false
    const first = recryptStore(db, undefined, { key: KEY }).finally(() => (done = true))
    // The second run starts while the first's new folder is being built (between its awaits).
    while (!done && !existsSync(db + '.convergent-new')) await new Promise((resolve) => setImmediate(resolve))
    assert.equal(done, false, 'the first run was caught while copying')
    const second = await recryptStore(db, undefined, { key: KEY }).then(
      () => 'ran',
      (err: unknown) => err,
    )
    assert.ok(
      isConvergentError(second, 'ERR_STORE') && /Another encrypt\/rekey\/decrypt .* is running/.test(second.message),
      `the second run is refused: ${String(second)}`,
    )
    assert.equal((await first).records > 0, true)
    assert.deepEqual(readdirSync(dirname(db)).sort(), ['db'], 'no leftover, no lock folder')
    await expectEntities(db, KEY)
    // The lock is the first run's only while it runs: the next run takes it (here: a rekey).
    await recryptStore(db, { key: KEY }, { key: '6f'.repeat(32) })
    await expectEntities(db, '6f'.repeat(32))
  })
})
