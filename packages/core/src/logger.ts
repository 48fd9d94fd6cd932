/**
 * The fields Convergent's log lines carry, each where it applies, so a log pipeline can filter
 * on them. Strings are cut to 200 characters before a logger sees them (see log-bounds.ts):
 * collection names, entity ids and error messages can come from a peer.
 */
export interface LogFields {
  /** The remote peer (libp2p peer id) the line is about. */
  peer?: string
  /** This replica's own peer id, where a line is about the replica itself. */
  self?: string
  collection?: string
  /** An entity id. */
  entity?: string
  /** Why a peer's input was dropped: the DropReason stats() and the metrics count it under. */
  reason?: string
  /** A ConvergentError code. */
  code?: string
  /** The error thrown (pino serialises it with its stack). */
  err?: unknown
  [field: string]: unknown
}

/**
 * Where Convergent reports what it drops and why: any object with these methods (message first,
 * fields second). A pino logger (fields first) is accepted too, see toLogger().
 */
export interface Logger {
  warn(message: string, fields?: LogFields): void
  error(message: string, fields?: LogFields): void
  debug?(message: string, fields?: LogFields): void
}

/**
 * Human-readable lines on stderr: the fallback of core's Replica.open when no logger is given
 * (`open()` from the `convergent` package logs JSON lines through pino instead).
 */
export const consoleLogger: Logger = {
  warn: (m, f) => console.warn(`[convergent] ${m}`, f ?? ''),
  error: (m, f) => console.error(`[convergent] ${m}`, f ?? ''),
}

export const silentLogger: Logger = { warn: () => {}, error: () => {} }

/** `{ code }` of an error that carries one (a ConvergentError, a Node system error), else `{}`. */
export function codeOf(err: unknown): { code?: string } {
  const code = (err as { code?: unknown } | null | undefined)?.code
  return typeof code === 'string' ? { code } : {}
}
