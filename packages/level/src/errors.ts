import { ConvergentError } from '@convergent/core'

/** The abstract-level error code, on the error or on its cause (open errors are wrapped). */
function levelCode(err: unknown, depth = 0): string | undefined {
  if (typeof err !== 'object' || err === null || depth > 3) return undefined
  const { code, cause } = err as { code?: unknown; cause?: unknown }
  if (code === 'LEVEL_LOCKED') return code
  return levelCode(cause, depth + 1) ?? (typeof code === 'string' ? code : undefined)
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
  if (levelCode(err) === 'LEVEL_LOCKED') {
    return new ConvergentError(
      'ERR_STORE',
      `The ${where} is locked by another process (or another open store in this process). ` +
        'Stop that process or close that store, or use another dir.',
      { cause: err },
    )
  }
  return storeError(`Could not open the ${where}`, err)
}

export function writeError(err: unknown): ConvergentError {
  return storeError('The store could not write a batch; nothing of it was applied', err)
}

export function closeError(err: unknown): ConvergentError {
  return storeError('The store could not close cleanly', err)
}

export function readError(err: unknown, closed: boolean): ConvergentError {
  if (closed) return closedError()
  return storeError('The store could not read', err)
}

/** ERR_STORE saying what failed and why, down the cause chain (level wraps hook and open errors). */
function storeError(message: string, err: unknown): ConvergentError {
  if (err instanceof ConvergentError) return err
  const reasons: string[] = []
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    reasons.push(e instanceof Error ? e.message : String(e))
    e = e instanceof Error ? e.cause : undefined
  }
  return new ConvergentError('ERR_STORE', `${message}: ${reasons.join(': ')}`, { cause: err })
}
