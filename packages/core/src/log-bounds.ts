import type { LogFields, Logger } from './logger.js'

/** Longest string field kept whole: collection names and ids from peers can be far longer. */
export const MAX_FIELD_CHARS = 200
/** Longest message kept whole (messages quote names and error messages). */
export const MAX_MESSAGE_CHARS = 1000

/** Cuts a string to `max` characters, saying how many were left out, and escapes control characters (no forged lines). */
export function clip(text: string, max = MAX_FIELD_CHARS): string {
  const kept = text.length <= max ? text : `${text.slice(0, max)}…(${text.length - max} more chars)`
  // eslint-disable-next-line no-control-regex
  return kept.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
}

/** The fields with every string clipped and bytes replaced by their length; other values as given (they are ours). */
export function boundFields(fields: LogFields): LogFields {
  const out: LogFields = {}
  for (const [key, value] of Object.entries(fields)) {
    out[key] = typeof value === 'string' ? clip(value) : value instanceof Uint8Array ? `${value.byteLength} bytes` : value
  }
  return out
}

type Level = 'warn' | 'error' | 'debug'

/** One level of the logger, bounded; called without a fields argument when there are none, as before. */
function bounded(logger: Logger, level: Level): (message: string, fields?: LogFields) => void {
  return (message, fields) => {
    const m = clip(message, MAX_MESSAGE_CHARS)
    if (fields === undefined) logger[level]!(m)
    else logger[level]!(m, boundFields(fields))
  }
}

/** A logger whose every line is bounded, whatever the replica passes it. */
export function boundedLogger(logger: Logger): Logger {
  return {
    warn: bounded(logger, 'warn'),
    error: bounded(logger, 'error'),
    ...(typeof logger.debug === 'function' ? { debug: bounded(logger, 'debug') } : {}),
  }
}
