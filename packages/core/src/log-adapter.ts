import { boundedLogger } from './log-bounds.js'
import type { LogFields, Logger } from './logger.js'

/**
 * A logger that takes its fields first, like pino: `logger.warn({ peer }, 'message')`. Told
 * apart from a Logger by pino's shape (`child()` and `levels.values`), without importing pino.
 */
export interface FieldsFirstLogger {
  warn(fields: object, message: string): void
  error(fields: object, message: string): void
  debug(fields: object, message: string): void
  child(bindings: object): unknown
  levels: { values: Record<string, number> }
}

export function isFieldsFirst(logger: unknown): logger is FieldsFirstLogger {
  const l = logger as Partial<FieldsFirstLogger> | null | undefined
  return typeof l?.child === 'function' && typeof l.levels === 'object' && l.levels !== null && typeof l.levels.values === 'object'
}

/** Marks loggers toLogger made, so passing one on (open() → Replica.open) does not wrap it twice. */
const made = new WeakSet<Logger>()

/**
 * The Logger a replica uses: a pino logger is called fields first, any other Logger as it is;
 * both bounded (long strings cut, control characters escaped).
 */
export function toLogger(logger: Logger | FieldsFirstLogger): Logger {
  if (made.has(logger as Logger)) return logger as Logger
  const plain: Logger = isFieldsFirst(logger) ? fieldsFirst(logger) : logger
  const out = boundedLogger(plain)
  made.add(out)
  return out
}

function fieldsFirst(pino: FieldsFirstLogger): Logger {
  return {
    warn: (m: string, f?: LogFields) => pino.warn(f ?? {}, m),
    error: (m: string, f?: LogFields) => pino.error(f ?? {}, m),
    debug: (m: string, f?: LogFields) => pino.debug(f ?? {}, m),
  }
}
