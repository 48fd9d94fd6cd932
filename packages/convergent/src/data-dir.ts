// The folder open({ dir }) keeps a replica in. A path that cannot be a folder (a file, or a path
// under one) is the caller's mistake, refused naming it before anything is written.
import { mkdir, stat } from 'node:fs/promises'
import { ConvergentError } from '@convergent/core'

/** Creates the data folder (and its parents) if missing. */
export async function makeDataDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST' || code === 'ENOTDIR') throw notAFolderError(dir, code, err)
    throw err
  }
}

/** To inspect, nothing is created: only a path that cannot be a folder is refused here (a missing one holds no store, which the store says). */
export async function checkDataDir(dir: string): Promise<void> {
  const code = await stat(dir).then(
    (s) => (s.isDirectory() ? undefined : 'EEXIST'),
    (err: NodeJS.ErrnoException) => err.code,
  )
  if (code === 'EEXIST' || code === 'ENOTDIR') throw notAFolderError(dir, code)
}

function notAFolderError(dir: string, code: 'EEXIST' | 'ENOTDIR', cause?: unknown): ConvergentError {
  const what = code === 'EEXIST' ? `${dir} is a file, not a folder` : `${dir} cannot be a folder: part of its path is a file`
  return new ConvergentError(
    'ERR_INVALID_ARGUMENT',
    `open({ dir }): ${what}. Pass the path of a folder for this replica's data (it is created if missing), or omit dir to keep everything in memory.`,
    cause === undefined ? undefined : { cause },
  )
}
