// The folders of an encrypt/rekey/decrypt swap beside a store folder `<db>` (see recrypt.ts):
// `<db>.convergent-new` (the re-sealed copy) and `<db>.convergent-old` (the folder swapped out),
// and the swap mark that proves two of them belong to one swap.
import {
  closeSync,
  constants,
  existsSync,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs'
import { basename, dirname, isAbsolute, join, resolve, sep } from 'node:path'
import { ConvergentError } from '@convergent/core'
import { ClassicLevel } from 'classic-level'
import { hasLevelCode } from './errors.js'
import { fsyncDir } from './folder.js'

export const NEW_SUFFIX = '.convergent-new'
export const OLD_SUFFIX = '.convergent-old'
/** The folder whose LevelDB LOCK one encrypt/rekey/decrypt of `<db>` holds for its whole run (withSwapLock). */
export const LOCK_SUFFIX = '.convergent-lock'

/**
 * The file a swap writes, with the same random id, into `<db>` and into the complete new folder
 * before its first rename. A leftover folder is deleted only when its mark proves it belongs to
 * the swap `<db>` came out of (finishSwap in recrypt.ts).
 */
export const SWAP_MARK_FILE = 'convergent-swap'

/**
 * The mark a new folder gets as soon as it is created, before anything is copied into it: a
 * copy being built, which finishSwap deletes. A new folder with no mark at all is not taken for
 * one: an earlier release (which wrote no marks) left its complete copy so.
 */
export const BUILDING_MARK = 'building'

/**
 * Where the swap of `db` happens: `db` itself, or, when `db` is a symbolic link, the folder it
 * points to, so that the link keeps pointing at the data. A link whose target is missing is
 * followed too: an interrupted swap renamed the target aside.
 */
export function swapBase(db: string): string {
  try {
    return realpathSync.native(db)
  } catch {
    // missing, or a link to something missing: follow the links by hand
  }
  let path = db
  for (let hops = 0; hops < 40; hops++) {
    let target: string
    try {
      target = readlinkSync(path)
    } catch {
      return path // not a link (missing, or unreadable: what opens it says why)
    }
    path = physical(isAbsolute(target) ? target : dirname(path) + sep + target)
  }
  return path
}

/**
 * Whether the folder `db` (real path: swapBase) is a mount point, which rename() cannot move
 * (EBUSY): an encrypt/rekey/decrypt would copy the whole store and then fail at the swap, every
 * run. On Linux, a line of /proc/self/mountinfo names it (bind mounts of the same device too);
 * elsewhere, it is on another device than its parent folder.
 */
export function isMountPoint(db: string): boolean {
  try {
    const info = readFileSync('/proc/self/mountinfo', 'utf8')
    // Field 5 is the mount point, with space, tab, newline and backslash as octal escapes.
    const unescape = (field: string): string => field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)))
    return info.split('\n').some((line) => {
      const point = line.split(' ')[4]
      return point !== undefined && unescape(point) === db
    })
  } catch {
    // not Linux: compare devices
  }
  try {
    return statSync(db).dev !== statSync(dirname(db)).dev
  } catch {
    return false
  }
}

/**
 * `raw` with its folder part resolved as the kernel resolves a link's target: `..` after a
 * folder that is a symbolic link is the parent of the folder it points to, not the text before
 * it (path.resolve, and realpathSync, which starts from path.resolve). Lexically when that folder is
 * missing too.
 */
function physical(raw: string): string {
  try {
    return join(realpathSync.native(dirname(raw)), basename(raw)) // the system's realpath: path by path, as the kernel
  } catch {
    return resolve(raw)
  }
}

/** An encrypt/rekey interrupted between its two renames: no `db`, but its old and new folders. */
export function interruptedSwap(db: string): boolean {
  const base = swapBase(db)
  return !existsSync(base) && existsSync(base + OLD_SUFFIX) && existsSync(base + NEW_SUFFIX)
}

/**
 * The one folder of a swap left where `db` is missing (the other was lost: deleted by hand, say),
 * or undefined. The data is in it: a store created at `db` would hide it, and a later encrypt
 * would take it for a leftover of its own.
 */
export function strandedSwapFolder(db: string): string | undefined {
  const base = swapBase(db)
  if (existsSync(base)) return undefined
  const left = [base + OLD_SUFFIX, base + NEW_SUFFIX].filter((folder) => existsSync(folder))
  return left.length === 1 ? left[0] : undefined
}

/** ERR_STORE for strandedSwapFolder: which folder holds the data, and what to do. */
export function strandedSwapError(db: string, folder: string): ConvergentError {
  const base = swapBase(db)
  const mark = folder.endsWith(OLD_SUFFIX) ? undefined : readSwapMark(folder)
  const holds = folder.endsWith(OLD_SUFFIX)
    ? 'the data as it was before the command (under the old key, or plain)'
    : mark === undefined || mark === BUILDING_MARK
      ? `a copy of the data that may be incomplete (its ${SWAP_MARK_FILE} file is missing or says it was being built: a run cut short before its swap, or an earlier release's); check it opens with all your data before relying on it`
      : 'the data re-sealed by the command (under its new key, or plain after decrypt)'
  return new ConvergentError(
    'ERR_STORE',
    `${base} is missing, and ${folder} is there: an encrypt/rekey/decrypt was interrupted while swapping folders, and its other folder is gone. ${folder} holds ${holds}. Rename it to ${base} (then run the command again if you still want it). Nothing was created or deleted.`,
  )
}

/** A mark is 32 hex characters (or BUILDING_MARK) and a newline: a longer file is none of ours. */
const MAX_MARK_BYTES = 64

/**
 * The swap mark in `folder`, or undefined if it has none. A file that cannot be read, or is longer
 * than a mark, is refused (ERR_STORE), so that nothing is deleted on a guess: it is read up to
 * MAX_MARK_BYTES + 1 bytes, never whole, and opened without blocking (a FIFO in its place fails
 * to read rather than waiting for a writer forever).
 */
export function readSwapMark(folder: string): string | undefined {
  const file = join(folder, SWAP_MARK_FILE)
  const refused = (why: string): ConvergentError =>
    new ConvergentError(
      'ERR_STORE',
      `Could not read ${file} as a swap mark (${why}); nothing was deleted. Look at it, remove it if it is not a mark of Convergent's, then run the command again.`,
    )
  let fd: number
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw refused((err as Error).message)
  }
  try {
    const bytes = Buffer.alloc(MAX_MARK_BYTES + 1)
    const read = readSync(fd, bytes, 0, bytes.length, null)
    if (read > MAX_MARK_BYTES) throw refused(`over ${MAX_MARK_BYTES} bytes`)
    return bytes.subarray(0, read).toString('utf8').trim()
  } catch (err) {
    throw err instanceof ConvergentError ? err : refused((err as Error).message)
  } finally {
    closeSync(fd)
  }
}

/** Writes the swap mark into `folder`: a temporary file, fsynced, renamed into place, the folder fsynced. */
export function writeSwapMark(folder: string, mark: string): void {
  const file = join(folder, SWAP_MARK_FILE)
  const tmp = `${file}.tmp`
  const fd = openSync(tmp, 'w', 0o644)
  try {
    writeSync(fd, mark + '\n')
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, file)
  fsyncDir(folder)
}

/**
 * Whether `folder` holds nothing (but perhaps the temporary file of a mark being written): a
 * swap folder created, or deleted, up to its last entry by a run a crash cut short.
 */
export function holdsNothing(folder: string): boolean {
  try {
    return readdirSync(folder).every((name) => name === `${SWAP_MARK_FILE}.tmp`)
  } catch {
    return false
  }
}

/**
 * Deletes a swap folder its mark proved a leftover, the mark last (a recursive rm removes entries
 * in the order the folder lists them, often the newest, the mark, first): cut short, the folder
 * keeps its mark, or holds nothing.
 */
export function removeSwapFolder(folder: string): void {
  for (const name of readdirSync(folder)) if (name !== SWAP_MARK_FILE) rmSync(join(folder, name), { recursive: true, force: true })
  fsyncDir(folder)
  rmSync(folder, { recursive: true, force: true })
}

/**
 * Removes the mark of a finished swap from `db`, best effort: a mark left behind (or brought
 * back by a power loss) proves only that `db` came out of that swap, which stays true.
 */
export function removeSwapMark(db: string): void {
  try {
    rmSync(join(db, SWAP_MARK_FILE), { force: true })
  } catch {
    // see above
  }
}

/**
 * Runs `run` holding the swap lock of `db` (swapBase'd): the LOCK of a small LevelDB folder
 * `<db>.convergent-lock` beside it, taken before finishSwap and held until the swap is done. A
 * second run on the same folder meanwhile — another process, or this one — is refused before
 * it touches anything (its finishSwap would take the first run's new folder for a leftover and
 * delete it while it is swapped in: review-s32 HOLE 4). The system releases the LOCK when a
 * process dies, so a crash never leaves the command locked out (its lock folder, left, is taken
 * and removed by the next run).
 */
export async function withSwapLock<R>(db: string, run: () => Promise<R>): Promise<R> {
  const path = db + LOCK_SUFFIX
  const lock = new ClassicLevel(path)
  try {
    await lock.open()
  } catch (err) {
    if (hasLevelCode(err, 'LEVEL_LOCKED')) {
      throw new ConvergentError(
        'ERR_STORE',
        `Another encrypt/rekey/decrypt of ${db} is running (${path} is locked). Nothing was changed: wait for it to finish, then run this one again if it is still needed.`,
        { cause: err },
      )
    }
    throw new ConvergentError('ERR_STORE', `Could not take the lock ${path} of ${db} (${(err as Error).message}). Nothing was changed.`, { cause: err })
  }
  try {
    return await run()
  } finally {
    // Removed while still held: a run that takes the lock after this does so only once this
    // run's swap is done (removed after closing, a run that opened it in between would hold a
    // LOCK that the next one, making the folder again, could not see).
    try {
      rmSync(path, { recursive: true, force: true })
    } finally {
      await lock.close().catch(() => undefined)
    }
  }
}
