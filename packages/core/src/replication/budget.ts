import type { Clock, TimerHandle } from '../clock.js'
import { ConvergentError } from '../errors.js'

/** A round stopped because it went over its budget of requests, bytes or time. */
export class OverBudgetError extends ConvergentError {
  constructor(peer: string, what: string) {
    super(
      'ERR_ABORTED',
      `the anti-entropy round with ${peer} stopped: it went over its budget of ${what}. What it applied so far stays; the next round goes on from there.`,
    )
  }
}

/**
 * What one anti-entropy round may spend: requests, bytes received and time. A peer that keeps
 * a round going (a continuation that advances by one entity, endless parts) is stopped by
 * it, and the round's signal fires so that every wait in it ends at once.
 */
export class RoundBudget {
  private requests = 0
  private bytes = 0
  private readonly controller = new AbortController()
  private readonly timer: TimerHandle
  private readonly onOuterAbort: (() => void) | undefined

  constructor(
    private readonly clock: Clock,
    private readonly peer: string,
    private readonly limits: { maxRoundRequests: number; maxRoundBytes: number; roundTimeoutMs: number },
    outer?: AbortSignal,
  ) {
    this.timer = clock.setTimeout(() => this.stop(new OverBudgetError(peer, `${limits.roundTimeoutMs} ms`)), limits.roundTimeoutMs)
    if (outer !== undefined) {
      if (outer.aborted) this.stop(abortedError(peer))
      else {
        this.onOuterAbort = () => this.stop(abortedError(peer))
        outer.addEventListener('abort', this.onOuterAbort, { once: true })
      }
    }
    this.outer = outer
  }

  private readonly outer: AbortSignal | undefined

  /** Fires when the round must stop (budget spent, or the caller's signal). */
  get signal(): AbortSignal {
    return this.controller.signal
  }

  /** Throws if the round must stop. */
  check(): void {
    if (this.controller.signal.aborted) throw this.controller.signal.reason
  }

  /** Counts one request about to be sent. */
  request(): void {
    this.check()
    if (++this.requests > this.limits.maxRoundRequests) this.stop(new OverBudgetError(this.peer, `${this.limits.maxRoundRequests} requests`))
    this.check()
  }

  /** Counts bytes received. */
  received(n: number): void {
    this.bytes += n
    if (this.bytes > this.limits.maxRoundBytes) this.stop(new OverBudgetError(this.peer, `${this.limits.maxRoundBytes} bytes`))
    this.check()
  }

  /** Whether the round stopped over its budget (rather than by the caller's signal or a failure). */
  get overBudget(): boolean {
    return this.controller.signal.reason instanceof OverBudgetError
  }

  /** Releases the timer and the listener on the caller's signal. */
  done(): void {
    this.clock.clearTimeout(this.timer)
    if (this.onOuterAbort !== undefined) this.outer?.removeEventListener('abort', this.onOuterAbort)
  }

  private stop(reason: Error): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason)
  }
}

function abortedError(peer: string): ConvergentError {
  return new ConvergentError('ERR_ABORTED', `the anti-entropy round with ${peer} was aborted through its signal`)
}

/**
 * Waits for `promise` unless `signal` fires first (then rejects with the signal's reason).
 * The promise itself runs on; a rejection it ends with later is not left unhandled.
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise
  promise.catch(() => undefined)
  if (signal.aborted) return Promise.reject(reasonOf(signal))
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(reasonOf(signal))
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err instanceof Error ? err : new Error(String(err)))
      },
    )
  })
}

/** Why the signal fired, as ERR_ABORTED (a caller's AbortSignal.timeout() gives a DOMException). */
function reasonOf(signal: AbortSignal): Error {
  const reason: unknown = signal.reason
  if (reason instanceof ConvergentError) return reason
  return new ConvergentError('ERR_ABORTED', `aborted through its signal${reason instanceof Error ? `: ${reason.message}` : ''}`, { cause: reason })
}
