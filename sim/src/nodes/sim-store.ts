import type { Store, StoreOp } from '@convergent/core'
import type { Activity } from '../engine/activity.js'
import type { Scheduler } from '../engine/scheduler.js'
import type { Task } from '../engine/timer-queue.js'
import { CrashableStore } from './crashable-store.js'

interface QueuedWrite {
  ops: StoreOp[]
  resolve: () => void
  reject: (err: unknown) => void
}

/**
 * One simulated incarnation's view of a node's durable store (a memory-level LevelStore or a
 * MapStore kept across crashes). On top of CrashableStore (after crash() nothing answers;
 * close() leaves the underlying store open for a restart), it
 *  - tracks every call with Activity, so the scheduler waits for the real async work;
 *  - holds writes for `writeLatencyMs` of virtual time before they reach the store, so a
 *    crash can land between a write and its acknowledgement (the write is then lost, as an
 *    un-fsynced write would be, and was never acknowledged);
 *  - close() waits for queued writes.
 */
export class SimStore extends CrashableStore {
  private queue: QueuedWrite[] = []
  private flushTask: Task | undefined

  constructor(
    inner: Store,
    activity: Activity,
    private readonly scheduler: Scheduler,
    private readonly writeLatencyMs: number,
  ) {
    super(inner, (promise) => activity.track(promise))
  }

  override get kind(): string {
    return `sim(${this.inner.kind})`
  }

  /** Writes queued but not yet durable. */
  get unflushed(): number {
    return this.queue.length
  }

  /** Queued writes still go out (a graceful shutdown), on their virtual schedule. */
  protected override async flushed(): Promise<void> {
    while (this.queue.length > 0 || this.flushTask !== undefined) await new Promise<void>((r) => this.scheduler.after(this.writeLatencyMs, r))
  }

  /** The process died: queued writes are lost and nothing answers any more. */
  override crash(): void {
    super.crash()
    if (this.flushTask !== undefined) this.scheduler.cancel(this.flushTask)
    this.flushTask = undefined
    this.queue = []
  }

  override write(ops: StoreOp[]): Promise<void> {
    if (this.crashed || this.writeLatencyMs <= 0) return super.write(ops)
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ops, resolve, reject })
      this.flushTask ??= this.scheduler.after(this.writeLatencyMs, () => this.flush())
    })
  }

  private flush(): void {
    this.flushTask = undefined
    if (this.crashed) return
    const batch = this.queue
    this.queue = []
    // In call order, in one tick: they share one group commit, as they would have.
    for (const w of batch) {
      this.track(this.inner.write(w.ops)).then(w.resolve, (err: unknown) => {
        w.reject(err)
        this.failQueued(err)
      })
    }
  }

  /** Writes queued behind a failed one fail too, unwritten (the Store.write contract). */
  private failQueued(err: unknown): void {
    const behind = this.queue
    this.queue = []
    if (this.flushTask !== undefined) this.scheduler.cancel(this.flushTask)
    this.flushTask = undefined
    for (const w of behind) w.reject(err)
  }
}
