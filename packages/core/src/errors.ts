/**
 * Every error Convergent throws on purpose is a ConvergentError with a stable `code`.
 * Codes never change meaning; messages say what happened and what to do.
 */
export type ErrorCode =
  | 'ERR_CLOSED' // the replica or store is closed
  | 'ERR_INVALID_ID' // empty, too long or malformed entity id / collection name
  | 'ERR_INVALID_VALUE' // not JSON data (function, symbol, BigInt, cycle, undefined…)
  | 'ERR_TOO_LARGE' // value, delta or message over the configured limit
  | 'ERR_BACKEND_MISMATCH' // collection opened with another backend than it was created with
  | 'ERR_UNKNOWN_BACKEND' // no backend registered under that name
  | 'ERR_NOT_FOUND' // update() of an entity that does not exist
  | 'ERR_INVALID_DELTA' // delta bytes that a backend cannot decode or apply
  | 'ERR_INVALID_VERSION' // version bytes that a backend cannot decode
  | 'ERR_INVALID_MESSAGE' // malformed, truncated or wrong-version wire message
  | 'ERR_STORE' // the store failed to read or write
  | 'ERR_NETWORK' // the network failed
  | 'ERR_INSUFFICIENT_RIGHTS' // bounded counter: not enough local rights to decrement
  | 'ERR_INVALID_ARGUMENT' // a bad option or argument
  | 'ERR_ABORTED' // the operation was aborted through its AbortSignal
  | 'ERR_TIMEOUT'

export class ConvergentError extends Error {
  readonly code: ErrorCode
  override readonly name = 'ConvergentError'

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

export function isConvergentError(err: unknown, code?: ErrorCode): err is ConvergentError {
  return err instanceof ConvergentError && (code === undefined || err.code === code)
}

/** Wraps an unknown thrown value into a ConvergentError with the given code (keeps the cause). */
export function wrapError(code: ErrorCode, message: string, cause: unknown): ConvergentError {
  if (cause instanceof ConvergentError) return cause
  const detail = cause instanceof Error ? cause.message : String(cause)
  return new ConvergentError(code, `${message}: ${detail}`, { cause })
}
