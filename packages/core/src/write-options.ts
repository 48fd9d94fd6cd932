import { ConvergentError } from './errors.js'

/** Wait, after the local write is durable, until this many peers confirm they hold it durably. */
export interface AckOptions {
  /** How many peers (an integer ≥ 1). Peers connected later count too. */
  peers: number
  /** How long to wait (ms, > 0, at most MAX_ACK_TIMEOUT_MS); then ERR_ACK_TIMEOUT. */
  timeoutMs: number
}

/** Options of put() and delete(); update() takes these and `upsert`. */
export interface WriteOptions {
  ack?: AckOptions
}

/** The longest an acknowledgement may be waited for: ten minutes. */
export const MAX_ACK_TIMEOUT_MS = 10 * 60_000

/** The write options, checked before anything is written (ERR_INVALID_ARGUMENT otherwise). */
export function checkWriteOptions(options: unknown, what: string): WriteOptions {
  if (options === undefined) return {}
  if (typeof options !== 'object' || options === null) throw bad(`${what}: options must be an object, got ${describe(options)}.`)
  const ack = (options as { ack?: unknown }).ack
  return ack === undefined ? {} : { ack: checkAck(ack, what) }
}

function checkAck(ack: unknown, what: string): AckOptions {
  if (typeof ack !== 'object' || ack === null) throw bad(`${what}: ack must be { peers, timeoutMs }, got ${describe(ack)}.`)
  const { peers, timeoutMs } = ack as Record<string, unknown>
  if (typeof peers !== 'number' || !Number.isSafeInteger(peers) || peers < 1) {
    throw bad(`${what}: ack.peers must be an integer ≥ 1 (how many peers must confirm), got ${describe(peers)}.`)
  }
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_ACK_TIMEOUT_MS) {
    throw bad(`${what}: ack.timeoutMs must be a number of milliseconds in (0, ${MAX_ACK_TIMEOUT_MS}], got ${describe(timeoutMs)}.`)
  }
  return { peers, timeoutMs }
}

function bad(message: string): ConvergentError {
  return new ConvergentError('ERR_INVALID_ARGUMENT', message)
}

function describe(v: unknown): string {
  return typeof v === 'number' || typeof v === 'boolean' ? String(v) : v === null ? 'null' : typeof v
}
