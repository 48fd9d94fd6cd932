import type { Clock } from '@convergent/core'

export interface Deadline {
  readonly signal: AbortSignal
  clear(): void
}

/** An AbortSignal that fires after ms on the given clock (the seam, not a bare setTimeout). */
export function deadline(clock: Clock, ms: number): Deadline {
  const controller = new AbortController()
  const handle = clock.setTimeout(() => controller.abort(new Error(`timed out after ${ms} ms`)), ms)
  return { signal: controller.signal, clear: () => clock.clearTimeout(handle) }
}
