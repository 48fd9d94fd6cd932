import type { Clock, TimerHandle } from '@convergent/core'

/**
 * A wall-clock Clock for one incarnation of a live node: real timers (unref'd), an offset for
 * clock skew, and kill() for a crash — every pending timer is dropped and later ones ignored,
 * so an abandoned replica stops doing anything.
 */
export class RealClock implements Clock {
  private readonly timers = new Map<number, NodeJS.Timeout>()
  private nextId = 1
  private dead = false

  constructor(
    private readonly skewMs: () => number,
    private readonly rng: () => number = Math.random,
  ) {}

  now(): number {
    return Date.now() + this.skewMs()
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++
    if (this.dead) return { id }
    const t = setTimeout(() => {
      this.timers.delete(id)
      if (!this.dead) fn()
    }, ms)
    t.unref?.()
    this.timers.set(id, t)
    return { id }
  }

  clearTimeout(handle: TimerHandle): void {
    const t = this.timers.get(handle.id)
    if (t !== undefined) {
      clearTimeout(t)
      this.timers.delete(handle.id)
    }
  }

  random(): number {
    return this.rng()
  }

  kill(): void {
    this.dead = true
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
  }

  /** Resolves after ms (unless killed: then never). */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimeout(resolve, ms))
  }
}
