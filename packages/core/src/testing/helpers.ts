import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Logger } from '../logger.js'
import type { Replica } from '../replica.js'

/** A fresh temp folder; remove it with the returned cleanup. */
export async function tempDir(prefix = 'convergent-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) }
}

/** Polls until cond() is true or the timeout passes (then throws with the label). */
export async function waitFor(cond: () => boolean | Promise<boolean>, label: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${label}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** Every live entity of a collection as a plain object, for equality checks. */
export async function dump(replica: Replica, collection: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {}
  for await (const [id, value] of replica.collection(collection).entries()) out[id] = value
  return out
}

/** A logger that records what it was told (to assert drops are logged with the peer id). */
export function recordingLogger(): Logger & { lines: { message: string; fields?: Record<string, unknown> }[] } {
  const lines: { message: string; fields?: Record<string, unknown> }[] = []
  return {
    lines,
    warn: (message, fields) => lines.push({ message, ...(fields ? { fields } : {}) }),
    error: (message, fields) => lines.push({ message, ...(fields ? { fields } : {}) }),
  }
}

/**
 * Every file and folder under `dir`, by relative name: the SHA-256 of its bytes ('dir' for a
 * folder). A LevelDB LOCK file by its size only, never opened: closing any descriptor of a file
 * drops every POSIX lock this process holds on it, so reading it would unlock a store open here.
 * Two trees equal: nothing in the folder was created, removed or changed.
 */
export async function folderTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name)
    out[path.slice(dir.length + 1)] = entry.isDirectory()
      ? 'dir'
      : entry.name === 'LOCK'
        ? `LOCK of ${(await stat(path)).size} bytes`
        : createHash('sha256')
            .update(await readFile(path))
            .digest('hex')
  }
  return out
}

/**
 * Runs a test file's tests with a temp folder of their own (TMPDIR, inherited by the processes
 * they start): what they leave in it is theirs alone, whatever test files run beside them
 * (mocha --parallel). Registers mocha before/after hooks; removed with everything in it after.
 */
export function privateTmpdir(prefix: string): void {
  let saved: string | undefined
  let dir: string | undefined
  before(async function () {
    saved = process.env.TMPDIR
    dir = await mkdtemp(join(tmpdir(), prefix))
    process.env.TMPDIR = dir
  })
  after(async function () {
    if (saved === undefined) delete process.env.TMPDIR
    else process.env.TMPDIR = saved
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })
}
