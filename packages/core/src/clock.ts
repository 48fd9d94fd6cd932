/**
 * The Clock/Scheduler seam. Core never calls Date.now, setTimeout or Math.random itself:
 * everything time- or chance-dependent goes through a Clock, so the simulator can run the
 * real core in virtual time, deterministically from a seed.
 */
import { pooledRandom } from './secure-random.js'

export interface TimerHandle {
  readonly id: number
}

export interface Clock {
  /** Milliseconds since the epoch (virtual in the simulator). */
  now(): number
  /** Runs fn once after ms milliseconds. */
  setTimeout(fn: () => void, ms: number): TimerHandle
  clearTimeout(handle: TimerHandle): void
  /** A uniformly distributed number in [0, 1). */
  random(): number
  /**
   * Optional: n bytes from a cryptographically secure source (the system clock: node:crypto),
   * for what must not be guessed — actor ids. Without it (the simulator's seeded clock),
   * randomBytes() draws them from random(), deterministically.
   */
  randomBytes?(n: number): Uint8Array
  /**
   * Optional: resolves on the next turn of the event loop, after pending I/O and timers get
   * their chance (long loops yield through it). Without it, a 0 ms timer does the same.
   */
  nextTurn?(): Promise<void>
  /**
   * Optional: a high-resolution monotonic time in milliseconds from an arbitrary origin, used
   * only to measure durations for metrics (never to decide anything). Without it, now().
   */
  monotonic?(): number
}

/** The real clock: wall time, Node timers, Math.random. Timers are unref'd so they never keep a process alive. */
export function systemClock(): Clock {
  const timers = new Map<number, NodeJS.Timeout>()
  let next = 1
  return {
    now: () => Date.now(),
    setTimeout(fn, ms) {
      const id = next++
      const t = setTimeout(() => {
        timers.delete(id)
        fn()
      }, ms)
      t.unref?.()
      timers.set(id, t)
      return { id }
    },
    clearTimeout(handle) {
      const t = timers.get(handle.id)
      if (t !== undefined) {
        clearTimeout(t)
        timers.delete(handle.id)
      }
    },
    random: () => Math.random(),
    randomBytes: (n) => new Uint8Array(pooledRandom(n)), // a copy: the pool moves on
    nextTurn: () => new Promise<void>((resolve) => setImmediate(resolve)),
    monotonic: () => performance.now(),
  }
}

/** Lets other work run: the clock's next turn (a 0 ms timer on clocks without nextTurn). */
export function nextTurn(clock: Clock): Promise<void> {
  return clock.nextTurn?.() ?? new Promise<void>((resolve) => clock.setTimeout(resolve, 0))
}

/** The clock's monotonic time (ms), or its wall time without one: for measuring durations only. */
export function monotonicNow(clock: Clock): number {
  return clock.monotonic?.() ?? clock.now()
}

/** n random bytes from the clock's secure source, or else its random() (used for actor ids). */
export function randomBytes(clock: Clock, n: number): Uint8Array {
  if (clock.randomBytes !== undefined) return clock.randomBytes(n)
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = Math.floor(clock.random() * 256)
  return out
}

/** A delay within [ms·(1-jitter), ms·(1+jitter)], so periodic rounds of many nodes do not align. */
export function jittered(clock: Clock, ms: number, jitter = 0.2): number {
  return Math.max(0, Math.round(ms * (1 - jitter + 2 * jitter * clock.random())))
}
