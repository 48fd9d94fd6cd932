/**
 * Inspection (LevelStoreOptions.inspect) of a classic-level folder without changing it.
 *
 * classic-level has no read-only open, and LevelDB's open writes: it renames LOG to LOG.old
 * and starts a new LOG (even when the folder turns out to be locked), replays the write-ahead
 * log into a new table, starts a new log and deletes the old one, writes a new MANIFEST and
 * rewrites CURRENT; on a damaged log it drops what fails its checks and deletes the log, the
 * only record that acknowledged writes were lost. So an inspection opens a private snapshot:
 * a new folder under os.tmpdir() holding hard links of the immutable table files (*.ldb,
 * *.sst; copies when linking fails, e.g. another file system) and COPIES of everything else
 * (CURRENT, MANIFEST-*, *.log, LOG, the store's side files): LevelDB rewrites those in the
 * snapshot and never touches the folder's. The snapshot is removed when the store closes (and
 * when its open fails), at process exit, and on SIGINT, SIGTERM or SIGHUP (a read command
 * stopped with Ctrl-C); one a killed process left (SIGKILL) goes with the next inspection.
 *
 * The folder's LOCK is linked into the snapshot too (a hard link, else a symbolic one; never
 * copied nor opened here: closing any descriptor of it would drop a lock this process holds on
 * it), so LevelDB's lock in the snapshot is the folder's own lock: a service running in another
 * process refuses the inspection and an inspection refuses a service, as when LevelDB opened
 * the folder itself. A lock is also looked for before anything is copied: in this process
 * (stores opened by classicLevelStore), and on Linux in /proc/locks (any process, and the only
 * check left when LOCK can be linked neither way: see linkLock).
 */
import {
  accessSync,
  constants as fsConstants,
  copyFileSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { ConvergentError } from '@convergent/core'
import { lockedError } from './errors.js'
import { checkIsFolder } from './folder.js'

/** Files LevelDB never changes once written: linked, not copied. */
const TABLE = /\.(?:ldb|sst)$/
/** Snapshot folders are `convergent-inspect-<pid>-…`: one left by a process that is gone is swept by the next inspection. */
const PREFIX = 'convergent-inspect-'
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

/** Whether `dir` holds a LevelDB database (its CURRENT file). */
export function holdsStore(dir: string): boolean {
  try {
    return statSync(join(dir, 'CURRENT')).isFile()
  } catch {
    return false
  }
}

export function noStoreError(dir: string): ConvergentError {
  return new ConvergentError(
    'ERR_STORE',
    `The data dir ${dir} holds no Convergent store (no LevelDB database: no CURRENT file). Nothing was written; pass the folder a service opened.`,
  )
}

/** The folder's key in the registries below: its real path when it exists. */
function keyOf(dir: string): string {
  try {
    return realpathSync(dir)
  } catch {
    return resolve(dir)
  }
}

/**
 * The folder's device and inode, when it exists: one folder reached by two real paths (a bind
 * mount) has one id. Inspections count under both, so that a service opened through the other
 * path is refused too (fcntl locks never conflict within a process, and LevelDB's own table of
 * the locks this process holds is by file name).
 */
function idOf(dir: string): string | undefined {
  try {
    const st = statSync(dir, { bigint: true })
    return `${st.dev}:${st.ino}` // never an absolute path: no clash with keyOf's
  } catch {
    return undefined
  }
}

function count(key: string | undefined, by: number): void {
  if (key === undefined) return
  const n = (inspected.get(key) ?? 0) + by
  if (n > 0) inspected.set(key, n)
  else inspected.delete(key)
}

/** Stores of this process opened on a folder by classicLevelStore (not for inspection), by folder. */
const services = new Map<string, Set<Service>>()
type Service = { status: string; once(event: 'closed', listener: () => void): unknown }
/** Folders inspected now in this process (by keyOf and by idOf): number of inspections of each. */
const inspected = new Map<string, number>()
/** Snapshots not removed yet: removed at exit, or on a signal that ends the process, if it ends first. */
const live = new Set<string>()
let exitHook = false

function removeLive(): void {
  for (const d of live) rmSync(d, { recursive: true, force: true })
  live.clear()
}

/**
 * Ctrl-C, SIGTERM or SIGHUP during a read command: the snapshots go before the process does
 * ('exit' is not emitted for a signal). Listening only while one is live, and the signal is
 * raised again once no other listener is left, so its default action (ending the process) runs.
 */
function onSignal(signal: (typeof SIGNALS)[number]): void {
  removeLive()
  disarm()
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
}
const handlers = new Map(SIGNALS.map((signal) => [signal, () => onSignal(signal)]))
function arm(): void {
  for (const [signal, handler] of handlers) process.on(signal, handler)
}
function disarm(): void {
  for (const [signal, handler] of handlers) process.off(signal, handler)
}

/** Removes snapshots whose process is gone (killed with SIGKILL, or a crash): they hold copies of a store, and links that keep its old tables' space. */
function sweepStale(): void {
  let names: string[]
  try {
    names = readdirSync(tmpdir())
  } catch {
    return
  }
  for (const name of names) {
    const pid = Number(/^convergent-inspect-(\d+)-/.exec(name)?.[1])
    if (!Number.isSafeInteger(pid) || pid === process.pid || alive(pid)) continue
    try {
      rmSync(join(tmpdir(), name), { recursive: true, force: true })
    } catch {
      // Another user's (0700): theirs to sweep.
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH' // EPERM: another user's, alive
  }
}

/**
 * Called by classicLevelStore before it makes the database of a store that may write: refuses a
 * folder an inspection in this process is reading (its LevelDB would take the lock this process
 * already holds through the snapshot's link, and the inspection's close would then release it).
 */
export function refuseIfInspected(dir: string): void {
  const id = idOf(dir)
  if (inspected.has(keyOf(dir)) || (id !== undefined && inspected.has(id))) throw lockedError(`data dir ${dir}`)
}

/** Remembers the database of a store that may write, so that an inspection refuses its folder while it is open. */
export function rememberService(dir: string, db: Service): void {
  const key = keyOf(dir)
  let dbs = services.get(key)
  if (dbs === undefined) services.set(key, (dbs = new Set()))
  dbs.add(db)
  // Forgotten once closed (one whose open failed and is never closed: at the next look, by status).
  db.once('closed', () => {
    dbs.delete(db)
    if (dbs.size === 0 && services.get(key) === dbs) services.delete(key)
  })
}

function inUseHere(key: string): boolean {
  const dbs = services.get(key)
  if (dbs === undefined) return false
  for (const db of dbs) if (db.status === 'closed') dbs.delete(db)
  if (dbs.size === 0) services.delete(key)
  return dbs.size > 0
}

/** Linux: whether a process (this one included) holds a POSIX lock on `file` (/proc/locks); false where that cannot be told. */
function lockedInProcLocks(file: string): boolean {
  let text: string
  let st: { dev: bigint; ino: bigint }
  try {
    st = statSync(file, { bigint: true })
    text = readFileSync('/proc/locks', 'utf8')
  } catch {
    return false
  }
  // st_dev as glibc encodes it; /proc/locks prints MAJOR:MINOR (hex):inode.
  const major = ((st.dev >> 8n) & 0xfffn) | ((st.dev >> 32n) & ~0xfffn)
  const minor = (st.dev & 0xffn) | ((st.dev >> 12n) & ~0xffn)
  const id = `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}:${st.ino}`
  return text.split('\n').some((line) => !line.includes('->') && line.split(/\s+/).includes(id))
}

/**
 * Puts the folder's LOCK into the snapshot, so that LevelDB's lock there is the folder's own:
 * a hard link, else (the temp folder on another file system, or a LOCK this user may not
 * link) a symbolic link, which LevelDB's open follows to the same file (fcntl locks the file,
 * whatever name opened it). The symbolic link only for a LOCK this user may write: LevelDB
 * opens it for writing, and would fail the whole inspection of a folder it could read (a
 * read-only disk, another user's folder). False when neither: LevelDB makes its own LOCK in
 * the snapshot, and /proc/locks is the only check.
 */
function linkLock(from: string, to: string): boolean {
  try {
    linkSync(from, to)
    return true
  } catch {
    // Below: a symbolic link.
  }
  try {
    accessSync(from, fsConstants.W_OK)
    symlinkSync(realpathSync(from), to) // absolute: the link lives in the snapshot
    return true
  } catch {
    return false
  }
}

/** A private copy of a LevelDB folder, for a store opened for inspection. */
export class InspectionSnapshot {
  private removed = false
  /** The folder's LOCK (real path, device:inode) when the snapshot's is a symbolic link to it (linkLock). */
  private lockTarget: { path: string; id: string } | undefined

  private constructor(
    /** The folder inspected (never written). */
    readonly source: string,
    /** The snapshot LevelDB opens. */
    readonly dir: string,
    private readonly key: string,
    private readonly id: string | undefined,
  ) {}

  /**
   * Refuses a path that is not a folder, a folder with no store (noStoreError) or one in use (lockedError), then makes the
   * snapshot. Nothing is created in `source`.
   */
  static take(source: string): InspectionSnapshot {
    checkIsFolder(source)
    if (!holdsStore(source)) throw noStoreError(source)
    const key = keyOf(source)
    const id = idOf(source)
    const lock = join(source, 'LOCK')
    if (inspected.has(key) || (id !== undefined && inspected.has(id)) || inUseHere(key) || lockedInProcLocks(lock)) throw lockedError(`data dir ${source}`)
    sweepStale()
    const dir = mkdtempSync(join(tmpdir(), `${PREFIX}${process.pid}-`))
    const snapshot = new InspectionSnapshot(source, dir, key, id)
    if (live.size === 0) arm()
    live.add(dir)
    if (!exitHook) {
      exitHook = true
      process.once('exit', removeLive)
    }
    count(key, 1)
    count(id, 1)
    let linked = false
    try {
      for (const entry of readdirSync(source, { withFileTypes: true })) {
        if (!entry.isFile()) continue // LevelDB keeps no folders in its own
        const from = join(source, entry.name)
        const to = join(dir, entry.name)
        if (entry.name === 'LOCK') {
          linked = linkLock(from, to)
          if (linked && lstatSync(to).isSymbolicLink()) {
            const path = readlinkSync(to)
            const id = idOf(path)
            if (id !== undefined) snapshot.lockTarget = { path, id }
          }
        } else if (TABLE.test(entry.name)) {
          try {
            linkSync(from, to)
          } catch {
            copyFileSync(from, to)
          }
        } else {
          copyFileSync(from, to)
        }
      }
      if (!existsSync(join(dir, 'CURRENT'))) throw noStoreError(source) // gone while copying
      // Not holding the folder's lock, a service may have started while we copied: the copy may be torn.
      if (!linked && lockedInProcLocks(lock)) throw lockedError(`data dir ${source}`)
    } catch (err) {
      snapshot.remove()
      throw err
    }
    return snapshot
  }

  /**
   * Called just before LevelDB opens the snapshot. A symbolic LOCK is followed by LevelDB's open
   * with O_CREAT: if the folder's LOCK went (or was replaced) since the snapshot was made (a
   * store made, and opened later), that open would create a LOCK in the folder inspected. The
   * link is then removed instead, and LevelDB makes a LOCK of its own in the snapshot (the
   * folder is not locked, as when LOCK could not be linked). A race remains between this check
   * and LevelDB's open.
   */
  beforeOpen(): void {
    if (this.lockTarget === undefined || idOf(this.lockTarget.path) === this.lockTarget.id) return
    rmSync(join(this.dir, 'LOCK'), { force: true })
    this.lockTarget = undefined
  }

  /** `text` with the snapshot's path replaced by the folder's (LevelDB's messages name the files it opened). */
  rename(text: string): string {
    return text.split(this.dir).join(this.source)
  }

  /** Removes the snapshot (once; the folder inspected is not touched). */
  remove(): void {
    if (this.removed) return
    this.removed = true
    rmSync(this.dir, { recursive: true, force: true })
    live.delete(this.dir)
    if (live.size === 0) disarm()
    count(this.key, -1)
    count(this.id, -1)
  }
}
