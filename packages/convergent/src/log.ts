import { pino, type Logger as PinoLogger } from 'pino'
import { ConvergentError, toLogger, type FieldsFirstLogger, type Logger } from '@convergent/core'

/** The levels open({ logLevel }) takes (pino's names). */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent'

const LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent']

/** One stderr destination for every replica of the process (each open() makes a logger). */
let stderr: ReturnType<typeof pino.destination> | undefined

/**
 * The logger open() makes when none is given: pino, JSON lines on stderr (stdout may be the
 * application's), written synchronously so the lines before a crash are not lost — the replica
 * logs little (drops are a few lines per peer per 10 s), so blocking writes cost nothing.
 * Level 'warn': every line Convergent writes today is a warning or an error; 'debug' is for
 * chasing a problem.
 */
export function defaultLogger(level: LogLevel = 'warn'): PinoLogger {
  stderr ??= pino.destination({ dest: 2, sync: true })
  return pino({ name: 'convergent', level }, stderr)
}

/** The replica's Logger from open()'s options: the user's (a Logger or a pino logger), else the default at `logLevel`. */
export function loggerOf(options: { logger?: Logger | FieldsFirstLogger; logLevel?: LogLevel }): Logger {
  const { logger, logLevel } = options
  if (logLevel !== undefined && !LEVELS.includes(logLevel)) {
    throw new ConvergentError(
      'ERR_INVALID_ARGUMENT',
      `open({ logLevel }) is one of ${LEVELS.map((l) => `'${l}'`).join(', ')}, got ${JSON.stringify(logLevel)}.`,
    )
  }
  if (logger !== undefined && logLevel !== undefined) {
    // Silently ignoring one of the two would hide lines someone asked for.
    throw new ConvergentError(
      'ERR_INVALID_ARGUMENT',
      'open({ logLevel }) sets the level of the default logger; with open({ logger }), set the level on that logger.',
    )
  }
  return toLogger(logger ?? defaultLogger(logLevel))
}
