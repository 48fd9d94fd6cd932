// A classic-level store is a folder. A path that is a file, or lies under one, is refused with
// an error that says so, instead of the ENOTDIR of whichever file in it is opened first.
import { closeSync, fsyncSync, openSync, statSync } from 'node:fs'
import { ConvergentError } from '@convergent/core'

/**
 * Throws ERR_STORE naming `dir` when it is a file, or cannot be a folder because part of its
 * path is a file. A missing `dir` passes (a store creates it), and so does one that cannot be
 * looked at (what reads it reports why).
 */
export function checkIsFolder(dir: string): void {
  let isFolder: boolean
  try {
    isFolder = statSync(dir).isDirectory()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') throw notAFolderError(`${dir} cannot be a folder: part of its path is a file`)
    return
  }
  if (!isFolder) throw notAFolderError(`${dir} is a file, not a folder`)
}

function notAFolderError(what: string): ConvergentError {
  return new ConvergentError('ERR_STORE', `${what}; a Convergent store is a LevelDB folder. Move the file away, or pass another folder. Nothing was written.`)
}

/**
 * fsyncs a folder, so that the names created, renamed or removed in it (a rename is an entry of
 * its folder) survive a power loss, not only the files' bytes. A platform that cannot fsync a
 * folder (Windows) is let be.
 */
export function fsyncDir(dir: string): void {
  let fd: number
  try {
    fd = openSync(dir, 'r')
  } catch {
    return
  }
  try {
    fsyncSync(fd)
  } catch {
    // a platform or file system that cannot fsync a folder
  } finally {
    closeSync(fd)
  }
}
