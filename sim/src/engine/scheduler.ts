import type { Clock, TimerHandle } from '@convergent/core'
import type { Activity } from './activity.js'
import type { Prng } from './random.js'
import { TimerQueue, type Task } from './timer-queue.js'

/** Virtual time starts at this wall-clock instant, so timestamps written by replicas look real. */
export const DEFAULT_EPOCH_MS = Date.UTC(2025, 0, 1)

export interface RunOptions {
  /** Called after each virtual instant has run and drained. */
  onInstant?: (now: number) => void
  /** Stop early (checked between instants). */
  shouldStop?: () => boolean
}

/**
 * Virtual time: a queue of timers in integer milliseconds since the start of the run. runUntil
 * pops every task due at the earliest instant, runs them in order, then drains real async work
 * (see Activity) before moving on — work started by an event completes "at" that instant.
 */
export class Scheduler {
  private readonly queue = new TimerQueue()
  private seq = 0
  private current = 0
  /** Exceptions thrown by tasks: a simulator bug, reported and failed by the checkers. */
  readonly errors: { at: number; error: string }[] = []
  instants = 0
  tasksRun = 0

  constructor(
    private readonly activity: Activity,
    readonly epochMs = DEFAULT_EPOCH_MS,
  ) {}

  /** Milliseconds since the start of the run. */
  get now(): number {
    return this.current
  }

  /** Runs fn `ms` from now (fractions round up: nothing runs before it is due). */
  after(ms: number, fn: () => void): Task {
    const delay = ms > 0 ? Math.ceil(ms) : 0
    return this.at(this.current + delay, fn)
  }

  at(time: number, fn: () => void): Task {
    const task: Task = { time: Math.max(this.current, Math.ceil(time)), seq: this.seq++, fn, cancelled: false }
    this.queue.push(task)
    return task
  }

  cancel(task: Task): void {
    task.cancelled = true
  }

  /** Tasks not yet run (including cancelled ones not yet popped). */
  get queued(): number {
    return this.queue.size
  }

  /** Runs every task due up to and including `until`, then sets the time to `until`. */
  async runUntil(until: number, options: RunOptions = {}): Promise<void> {
    for (;;) {
      const head = this.queue.peek()
      if (head === undefined || head.time > until || options.shouldStop?.() === true) break
      const instant = head.time
      this.current = instant
      this.instants++
      while (this.queue.peek()?.time === instant) {
        const task = this.queue.pop()!
        if (task.cancelled) continue
        this.tasksRun++
        try {
          task.fn()
        } catch (err) {
          this.errors.push({ at: instant, error: err instanceof Error ? (err.stack ?? err.message) : String(err) })
        }
      }
      await this.activity.drain()
      options.onInstant?.(instant)
    }
    if (options.shouldStop?.() !== true) this.current = Math.max(this.current, until)
  }

  /**
   * A Clock for one incarnation of one node: virtual time plus the node's skew, timers on this
   * scheduler, randomness from the node's own stream. kill() models a crash: every pending
   * timer is dropped and later ones are ignored.
   */
  clockFor(random: Prng, skewMs: () => number): NodeClock {
    return new NodeClock(this, random, skewMs)
  }
}

export class NodeClock implements Clock {
  private readonly timers = new Map<number, Task>()
  private nextId = 1
  private dead = false

  constructor(
    private readonly scheduler: Scheduler,
    private readonly rng: Prng,
    private readonly skewMs: () => number,
  ) {}

  now(): number {
    return this.scheduler.epochMs + this.scheduler.now + this.skewMs()
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++
    if (this.dead) return { id }
    const task = this.scheduler.after(Number.isFinite(ms) ? ms : 0, () => {
      this.timers.delete(id)
      if (!this.dead) fn()
    })
    this.timers.set(id, task)
    return { id }
  }

  clearTimeout(handle: TimerHandle): void {
    const task = this.timers.get(handle.id)
    if (task !== undefined) {
      this.scheduler.cancel(task)
      this.timers.delete(handle.id)
    }
  }

  random(): number {
    return this.rng.next()
  }

  /** Pending timers (for tests and leak checks). */
  get pendingTimers(): number {
    return this.timers.size
  }

  kill(): void {
    this.dead = true
    for (const task of this.timers.values()) this.scheduler.cancel(task)
    this.timers.clear()
  }
}
