import { ConvergentError, StoreCorruptError, type CorruptRecord } from '@convergent/core'

/** Whether the error or one down its cause chain has this abstract-level code (open errors are wrapped). */
export function hasLevelCode(err: unknown, code: string): boolean {
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 5; depth++) {
    if ((e as { code?: unknown }).code === code) return true
    e = (e as { cause?: unknown }).cause
  }
  return false
}

/**
 * Whether LevelDB reported corruption (LEVEL_CORRUPTION: a Status::Corruption, e.g. a table
 * block that does not decompress, "bad entry in block", "corrupted key for …").
 */
export function isLevelCorruption(err: unknown): boolean {
  return hasLevelCode(err, 'LEVEL_CORRUPTION')
}

/** A record LevelDB failed to read because of corruption: named, so it can be quarantined. */
export function recordCorruptError(record: CorruptRecord, err: unknown, location?: string): StoreCorruptError {
  return new StoreCorruptError(record, `LevelDB could not read it: ${err instanceof Error ? err.message : String(err)}`, location)
}

/** Corruption LevelDB met where no single record can be named (a scan, an open). */
export function corruptError(where: string, err: unknown): ConvergentError {
  return new ConvergentError(
    'ERR_STORE_CORRUPT',
    `LevelDB found ${where} corrupt (${err instanceof Error ? err.message : String(err)}); nothing damaged is served. The disk may be damaged: check it.`,
    { cause: err },
  )
}

export function closedError(): ConvergentError {
  return new ConvergentError('ERR_CLOSED', 'The store is closed. Open a new store to use the data again.')
}

export function notOpenError(): ConvergentError {
  return new ConvergentError('ERR_CLOSED', 'The store is not open yet. Call and await open() first.')
}

/** Why open() failed, in words a user can act on. */
export function openError(err: unknown, location: string | undefined): ConvergentError {
  const where = location === undefined ? 'the database' : `data dir ${location}`
  if (hasLevelCode(err, 'LEVEL_LOCKED')) return lockedError(where, err)
  if (isLevelCorruption(err)) return corruptError(`the ${where}`, err)
  return storeError(`Could not open the ${where}`, err)
}

/** The folder is in use: another process (or store in this process) has it open. */
export function lockedError(where: string, cause?: unknown): ConvergentError {
  return new ConvergentError(
    'ERR_STORE',
    `The ${where} is locked by another process (or another open store in this process). ` + 'Stop that process or close that store, or use another dir.',
    cause === undefined ? undefined : { cause },
  )
}

export function writeError(err: unknown): ConvergentError {
  return storeError('The store could not write a batch; nothing of it was applied', err)
}

export function closeError(err: unknown): ConvergentError {
  return storeError('The store could not close cleanly', err)
}

export function readError(err: unknown, closed: boolean): ConvergentError {
  if (closed) return closedError()
  if (isLevelCorruption(err)) return corruptError('what it was asked to read', err)
  return storeError('The store could not read', err)
}

/** ERR_STORE saying what failed and why, down the cause chain (level wraps hook and open errors). */
function storeError(message: string, err: unknown): ConvergentError {
  if (err instanceof ConvergentError) return err
  const reasons: string[] = []
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    reasons.push(e instanceof Error ? e.message : JSON.stringify(e))
    e = e instanceof Error ? e.cause : undefined
  }
  return new ConvergentError('ERR_STORE', `${message}: ${reasons.join(': ')}`, { cause: err })
}
