import type { Scheduler } from './scheduler.js'

/**
 * Drives a virtual-time scheduler from the wall clock (virtual ms = real ms since start), for
 * code that waits in real time — e.g. core's network compliance suite run against SimNetwork.
 * Returns a function that stops the pump and resolves once it has.
 */
export function startRealtimePump(scheduler: Scheduler, tickMs = 2): () => Promise<void> {
  const t0 = performance.now() - scheduler.now
  let stopped = false
  const loop = (async () => {
    while (!stopped) {
      await scheduler.runUntil(Math.floor(performance.now() - t0))
      await new Promise((r) => setTimeout(r, tickMs))
    }
  })()
  return async () => {
    stopped = true
    await loop
  }
}
