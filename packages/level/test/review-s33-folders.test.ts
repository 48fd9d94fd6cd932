/**
 * Review s33: attacks on the folders an inspection links and a recrypt swaps. An inspection with
 * the temp folder on another file system now links the folder's LOCK into its snapshot with a
 * symbolic link (inspect.ts linkLock); encrypt/rekey/decrypt refuse a db that is a mount point
 * (swap.ts isMountPoint). Mounts need root: those tests skip where mounting is refused.
 */
import assert from 'node:assert/strict'
import { execFileSync, fork } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ClassicLevel } from 'classic-level'
import { classicLevelStore, recryptStore, SWAP_MARK_FILE, type LevelStore } from '../src/index.js'
import { InspectionSnapshot } from '../src/inspect.js'
import { isMountPoint } from '../src/swap.js'
import { entityWrite } from './entity-ops.js'
import { forkStoreChild } from './fork-child.js'
import { rejection } from './helpers.js'
import { privateTmpdir } from '@convergent/core/testing'

const CHILD = fileURLToPath(new URL('./review-s30-inspect-child.js', import.meta.url))
const KEY = 'd4'.repeat(32)
const SHM = '/dev/shm'

/** Runs `fn` with os.tmpdir() pointing at `dir` (the snapshot folder is chosen when the store is made). */
function withTmpdir<T>(dir: string, fn: () => T): T {
  const saved = process.env.TMPDIR
  process.env.TMPDIR = dir
  try {
    return fn()
  } finally {
    if (saved === undefined) delete process.env.TMPDIR
    else process.env.TMPDIR = saved
  }
}

/** mount(8), or undefined where it is not permitted. */
function mount(args: string[]): true | undefined {
  try {
    execFileSync('mount', args, { stdio: 'ignore' })
    return true
  } catch {
    return undefined
  }
}

/** What is in `dir`, with each entry's inode, size and mtime: to tell it was not touched. */
function fingerprint(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .map((name) => {
      const st = lstatSync(join(dir, name))
      return `${name} ${st.ino} ${st.size} ${st.mtimeMs}`
    })
}

describe('review s33: the inspection LOCK link and the recrypt mount-point check under attack', function () {
  privateTmpdir('cv-s33-tests-')
  this.timeout(30_000)
  let base = '' // on the temp folder's file system
  let shm = '' // on another file system (tmpfs), or '' where there is none
  let dir = '' // a store folder
  const mounts: string[] = []
  const immutable: string[] = []

  beforeEach(function () {
    base = mkdtempSync(join(tmpdir(), 'data-'))
    dir = join(base, 'db')
    try {
      shm = statSync(SHM).dev !== statSync(base).dev ? mkdtempSync(join(SHM, 'cv-s33-')) : ''
    } catch {
      shm = ''
    }
  })

  afterEach(function () {
    for (const m of mounts.splice(0).reverse()) {
      try {
        execFileSync('umount', ['-l', m], { stdio: 'ignore' })
      } catch {
        // already gone
      }
    }
    for (const f of immutable.splice(0)) execFileSync('chattr', ['-i', f], { stdio: 'ignore' })
    rmSync(base, { recursive: true, force: true })
    if (shm !== '') rmSync(shm, { recursive: true, force: true })
  })

  async function written(n: number, folder = dir): Promise<void> {
    const store = classicLevelStore(folder)
    await store.open()
    for (let i = 1; i <= n; i++) await store.write(entityWrite('c', i))
    await store.close()
  }

  function inspectOnShm(folder = dir): LevelStore {
    return withTmpdir(shm, () => classicLevelStore(folder, { inspect: true }))
  }

  /** Inspects `folder` with `tmp` as the temp folder: it reads the 10 entities written, and the inspected folder is left as it was. */
  async function inspectUnchanged(folder: string, tmp: string): Promise<void> {
    const before = fingerprint(dir)
    const store = withTmpdir(tmp, () => classicLevelStore(folder, { inspect: true }))
    await store.open()
    try {
      assert.equal(await store.lastSeq('c'), 10)
    } finally {
      await store.close()
    }
    assert.deepEqual(fingerprint(dir), before)
  }

  // --- inspect.ts linkLock: the symbolic link ---

  it('holds: with the temp folder on another file system, the snapshot LOCK is an absolute link to the real LOCK, and open/close leave the folder as it was', async function () {
    if (shm === '') this.skip()
    await written(20)
    const before = fingerprint(dir)
    const store = inspectOnShm()
    await store.open()
    const snap = readdirSync(shm).find((n) => n.startsWith('convergent-inspect-'))!
    const link = join(shm, snap, 'LOCK')
    assert.ok(lstatSync(link).isSymbolicLink(), 'LOCK is a symbolic link')
    assert.equal(readlinkSync(link), join(dir, 'LOCK'))
    assert.equal(await store.lastSeq('c'), 20)
    await store.close()
    assert.deepEqual(fingerprint(dir), before, 'the folder was touched')
    assert.ok(!existsSync(join(shm, snap)), 'the snapshot is gone')
  })

  it('holds: a killed inspection (symbolic LOCK) is swept by the next one without touching the real LOCK; a service then opens the folder', async function () {
    if (shm === '') this.skip()
    await written(5)
    const lockIno = statSync(join(dir, 'LOCK')).ino
    const child = fork(CHILD, [dir], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, TMPDIR: shm } })
    const gone = once(child, 'exit')
    const [ready] = (await once(child, 'message')) as [{ snapshot?: string }]
    assert.ok(ready.snapshot !== undefined)
    // While the child inspects, a service in another process is refused (the lock is the folder's).
    const refused = await forkStoreChild('hold', dir).then(
      async (c) => (await c.kill(), false),
      () => true,
    )
    assert.ok(refused, 'a service opened the folder during the inspection')
    child.kill('SIGKILL')
    await gone
    assert.ok(lstatSync(join(shm, ready.snapshot, 'LOCK')).isSymbolicLink(), 'SIGKILL leaves the snapshot')
    const next = inspectOnShm()
    await next.open()
    await next.close()
    assert.ok(!existsSync(join(shm, ready.snapshot)), 'the stale snapshot was swept')
    assert.equal(statSync(join(dir, 'LOCK')).ino, lockIno, 'the real LOCK was replaced or removed')
    const service = classicLevelStore(dir)
    await service.open()
    await service.close()
  })

  // HOLE 1 (low; narrowed, not closed): the symbolic link names the folder's LOCK, so when
  // LevelDB opens the snapshot (O_RDWR|O_CREAT) after the folder's LOCK went (classicLevelStore
  // takes the snapshot when the store is made; open() may come any time later), it CREATED a
  // LOCK in the inspected folder. E.g. `rm -rf db` beside a read command then fails (directory
  // not empty), and a LOCK created by root (`sudo npx convergent ls`) is one the service's user
  // cannot open for writing. A hard link never did this. Now open() checks the link's target is
  // still the LOCK it linked and otherwise removes the link (LevelDB makes its own LOCK in the
  // snapshot). Left: a LOCK removed between that check and LevelDB's open (microseconds), which
  // nothing here can stop (LevelDB's O_CREAT follows the link); the probe of that race is below.
  it('HOLE 1 (narrowed): a LOCK removed between making an inspection store and opening it is not created again in the folder', async function () {
    if (shm === '') this.skip()
    await written(5)
    const store = inspectOnShm()
    rmSync(join(dir, 'LOCK'))
    await store.open()
    try {
      assert.equal(await store.lastSeq('c'), 5)
    } finally {
      await store.close()
    }
    assert.ok(!existsSync(join(dir, 'LOCK')), 'the inspection created LOCK in the folder it inspected')
  })

  // HOLE 1b (low; not fixed): the same, removed after the check and before LevelDB's open (here:
  // LevelDB opened on the snapshot directly). No fix short of not linking by name.
  it.skip('HOLE 1b: a LOCK removed just before LevelDB opens the snapshot is not created again in the folder', async function () {
    if (shm === '') this.skip()
    await written(5)
    const snapshot = withTmpdir(shm, () => InspectionSnapshot.take(dir))
    try {
      snapshot.beforeOpen()
      rmSync(join(dir, 'LOCK'))
      const db = new ClassicLevel(snapshot.dir, { createIfMissing: false })
      await db.open().catch(() => undefined)
      await db.close()
      assert.ok(!existsSync(join(dir, 'LOCK')), 'the inspection created LOCK in the folder it inspected')
    } finally {
      snapshot.remove()
    }
  })

  // HOLE 2 (medium; fixed): the in-process registries were keyed by real path, so the same folder
  // reached through a bind mount was another folder to them. An inspection through one path then
  // a service of the same process through the other: LevelDB's own in-process lock table is by
  // file name and fcntl locks never conflict within a process, so the service opened; when the
  // inspection closed, closing its descriptor of the LOCK inode dropped the service's lock too,
  // and a service in another process opened the folder beside it (two writers). With the hard
  // link this was so already; the symbolic link brought it to a temp folder on another file
  // system (before, that snapshot had a LOCK of its own). Now keyed by the folder's device and inode too.
  it('HOLE 2 (fixed): an inspection through a bind mount refuses a service of the same process on the folder itself', async function () {
    await written(5)
    const other = join(base, 'other')
    mkdirSync(other)
    if (mount(['--bind', dir, other]) === undefined) this.skip()
    mounts.push(other)
    for (const tmp of shm === '' ? [tmpdir()] : [tmpdir(), shm]) {
      const inspection = withTmpdir(tmp, () => classicLevelStore(other, { inspect: true }))
      await inspection.open()
      let service: LevelStore | undefined
      const opened = await (async () => {
        service = classicLevelStore(dir) // refused here, or by open()
        await service.open()
      })().then(
        () => true,
        (err: Error & { code?: string }) => (assert.equal(err.code, 'ERR_STORE', String(err)), false),
      )
      await inspection.close()
      if (opened) {
        // Its lock went with the inspection's close: a service in another process opens beside it.
        const child = await forkStoreChild('hold', dir).catch(() => undefined)
        await child?.kill()
        await service!.close()
        assert.fail(
          `temp folder ${tmp}: a service of this process opened the inspected folder${child === undefined ? '' : ', and after the inspection closed, a service in another process opened it too (two writers)'}`,
        )
      }
    }
  })

  it('holds: a folder on a read-only mount is inspected with the temp folder on another file system (no link; nothing written)', async function () {
    if (shm === '') this.skip()
    await written(10)
    const ro = join(base, 'ro')
    mkdirSync(ro)
    if (mount(['--bind', dir, ro]) === undefined) this.skip()
    mounts.push(ro)
    if (mount(['-o', 'remount,bind,ro', ro]) === undefined) this.skip()
    await inspectUnchanged(ro, shm)
  })

  it('holds: a LOCK that may not be written (immutable) is linked neither way; the folder is still inspected, nothing written', async function () {
    await written(10)
    try {
      execFileSync('chattr', ['+i', join(dir, 'LOCK')], { stdio: 'ignore' })
    } catch {
      this.skip()
    }
    immutable.push(join(dir, 'LOCK'))
    for (const tmp of shm === '' ? [tmpdir()] : [tmpdir(), shm]) await inspectUnchanged(dir, tmp)
  })

  // --- swap.ts isMountPoint, recrypt.ts ---

  it('holds: mount points named with a space, a tab, a newline and a backslash are found; their parent and a plain folder are not', async function () {
    const names = ['with space', 'tab\there', 'new\nline', 'back\\040slash']
    let mounted = 0
    for (const name of names) {
      const point = join(base, name)
      mkdirSync(point)
      if (mount(['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', point]) === undefined) continue
      mounts.push(point)
      mounted++
      assert.equal(isMountPoint(point), true, JSON.stringify(point))
      mkdirSync(join(point, 'inner'))
      assert.equal(isMountPoint(join(point, 'inner')), false, 'a folder in a mount point')
    }
    if (mounted === 0) this.skip()
    assert.equal(isMountPoint(base), false)
    assert.equal(isMountPoint('/'), true)
  })

  it('holds: a bind mount of a folder of the same device is a mount point; recrypt refuses it (rekey and decrypt too) and leaves it as it was', async function () {
    const real = join(base, 'real')
    await written(5, real)
    mkdirSync(dir)
    if (mount(['--bind', real, dir]) === undefined) this.skip()
    mounts.push(dir)
    assert.equal(statSync(dir).dev, statSync(base).dev, 'same device as its parent')
    const before = fingerprint(real)
    for (const [from, to] of [
      [undefined, { key: KEY }],
      [{ key: KEY }, { key: 'e5'.repeat(32) }],
      [{ key: KEY }, undefined],
    ] as const) {
      const err = await rejection(recryptStore(dir, from, to))
      assert.equal(err.code, 'ERR_STORE', String(err))
      assert.match(err.message, /is a mount point/)
    }
    assert.deepEqual(readdirSync(base).sort(), ['db', 'real'])
    assert.deepEqual(fingerprint(real), before)
  })

  it('holds: a db whose parent folder is a mount point is encrypted (not refused)', async function () {
    const volume = join(base, 'volume')
    mkdirSync(volume)
    if (mount(['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', volume]) === undefined) this.skip()
    mounts.push(volume)
    const db = join(volume, 'db')
    await written(5, db)
    const result = await recryptStore(db, undefined, { key: KEY })
    assert.equal(result.resumed, false)
    assert.deepEqual(readdirSync(volume), ['db'])
  })

  it('holds: a mount point reached through a symbolic link is refused, naming the mount point', async function () {
    const point = join(base, 'point')
    mkdirSync(point)
    if (mount(['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', point]) === undefined) this.skip()
    mounts.push(point)
    await written(5, point)
    execFileSync('ln', ['-s', point, dir])
    const err = await rejection(recryptStore(dir, undefined, { key: KEY }))
    assert.equal(err.code, 'ERR_STORE', String(err))
    assert.ok(err.message.startsWith(`${point} is a mount point`), err.message)
    assert.deepEqual(readdirSync(base).sort(), ['db', 'point'])
  })

  it('holds: what an earlier release left beside a mount-point db (a full copy after its swap failed with EBUSY) is cleaned, then the db is refused', async function () {
    mkdirSync(dir)
    if (mount(['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', dir]) === undefined) this.skip()
    mounts.push(dir)
    await written(5)
    // The earlier release: db and its complete copy marked with the same id, then rename(db) → EBUSY.
    await written(5, dir + '.convergent-new')
    writeFileSync(join(dir, SWAP_MARK_FILE), 'ab'.repeat(16))
    writeFileSync(join(dir + '.convergent-new', SWAP_MARK_FILE), 'ab'.repeat(16))
    const err = await rejection(recryptStore(dir, undefined, { key: KEY }))
    assert.match(err.message, /is a mount point/)
    assert.deepEqual(readdirSync(base), ['db'], 'the leftover copy is removed')
    const store = classicLevelStore(dir)
    await store.open()
    try {
      assert.equal(await store.lastSeq('c'), 5)
    } finally {
      await store.close()
    }
  })
})
