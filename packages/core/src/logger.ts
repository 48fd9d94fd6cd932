/** Where Convergent reports what it drops and why. Default: warnings and errors to stderr. */
export interface Logger {
  warn(message: string, fields?: Record<string, unknown>): void
  error(message: string, fields?: Record<string, unknown>): void
  debug?(message: string, fields?: Record<string, unknown>): void
}

export const consoleLogger: Logger = {
  warn: (m, f) => console.warn(`[convergent] ${m}`, f ?? ''),
  error: (m, f) => console.error(`[convergent] ${m}`, f ?? ''),
}

export const silentLogger: Logger = { warn: () => {}, error: () => {} }
