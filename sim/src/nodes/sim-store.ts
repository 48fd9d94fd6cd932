import type { CorruptRecord, CollectionMeta, EntityHead, FeedEntry, Store, StoredEntity, StoreOp } from '@convergent/core'
import type { Activity } from '../engine/activity.js'
import type { Scheduler } from '../engine/scheduler.js'
import type { Task } from '../engine/timer-queue.js'

interface QueuedWrite {
  ops: StoreOp[]
  resolve: () => void
  reject: (err: unknown) => void
}

const never = <T>(): Promise<T> => new Promise<T>(() => {})

/**
 * One incarnation's view of a node's durable store (a memory-level LevelStore kept across
 * crashes). It
 *  - tracks every call with Activity, so the scheduler waits for the real async work;
 *  - holds writes for `writeLatencyMs` of virtual time before they reach the store, so a
 *    crash can land between a write and its acknowledgement (the write is then lost, as an
 *    un-fsynced write would be, and was never acknowledged);
 *  - after crash(), answers nothing: the process is gone, its promises never settle;
 *  - close() waits for queued writes but leaves the underlying store open for a restart.
 */
export class SimStore implements Store {
  private queue: QueuedWrite[] = []
  private flushTask: Task | undefined
  private dead = false

  constructor(
    private readonly inner: Store,
    private readonly activity: Activity,
    private readonly scheduler: Scheduler,
    private readonly writeLatencyMs: number,
  ) {}

  get kind(): string {
    return `sim(${this.inner.kind})`
  }

  get stats(): { readonly batches: number; readonly ops: number } | undefined {
    return this.inner.stats
  }

  get damage(): Store['damage'] {
    return this.inner.damage
  }

  /** Writes queued but not yet durable. */
  get unflushed(): number {
    return this.queue.length
  }

  open(): Promise<void> {
    if (this.dead) return never()
    return this.activity.track(this.inner.open())
  }

  async close(): Promise<void> {
    if (this.dead) return never()
    // Queued writes still go out (a graceful shutdown), on their virtual schedule.
    while (this.queue.length > 0 || this.flushTask !== undefined) await new Promise<void>((r) => this.scheduler.after(this.writeLatencyMs, r))
  }

  /** The process died: queued writes are lost and nothing answers any more. */
  crash(): void {
    this.dead = true
    if (this.flushTask !== undefined) this.scheduler.cancel(this.flushTask)
    this.flushTask = undefined
    this.queue = []
  }

  write(ops: StoreOp[]): Promise<void> {
    if (this.dead) return never()
    if (this.writeLatencyMs <= 0) return this.activity.track(this.inner.write(ops))
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ops, resolve, reject })
      this.flushTask ??= this.scheduler.after(this.writeLatencyMs, () => this.flush())
    })
  }

  private flush(): void {
    this.flushTask = undefined
    if (this.dead) return
    const batch = this.queue
    this.queue = []
    // In call order, in one tick: they share one group commit, as they would have.
    for (const w of batch) {
      this.activity.track(this.inner.write(w.ops)).then(w.resolve, (err: unknown) => {
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

  readEntity(collection: string, id: string): Promise<StoredEntity | undefined> {
    return this.dead ? never() : this.activity.track(this.inner.readEntity(collection, id))
  }

  getHead(collection: string, id: string): Promise<EntityHead | undefined> {
    return this.dead ? never() : this.activity.track(this.inner.getHead(collection, id))
  }

  heads(collection: string, range?: { fromLeaf: number; toLeaf: number }): AsyncIterable<[string, EntityHead]> {
    return this.iterate(() => this.inner.heads(collection, range))
  }

  leaves(collection: string): AsyncIterable<[number, Uint8Array]> {
    return this.iterate(() => this.inner.leaves(collection))
  }

  feed(collection: string, since: number): AsyncIterable<FeedEntry> {
    return this.iterate(() => this.inner.feed(collection, since))
  }

  lastSeq(collection: string): Promise<number> {
    return this.dead ? never() : this.activity.track(this.inner.lastSeq(collection))
  }

  collections(): Promise<Map<string, CollectionMeta>> {
    return this.dead ? never() : this.activity.track(this.inner.collections())
  }

  getMeta(key: string): Promise<Uint8Array | undefined> {
    return this.dead ? never() : this.activity.track(this.inner.getMeta(key))
  }

  dropCollection(collection: string): Promise<void> {
    return this.dead ? never() : this.activity.track(this.inner.dropCollection(collection))
  }

  quarantine(record: CorruptRecord): Promise<void> {
    return this.dead ? never() : this.activity.track(this.inner.quarantine(record))
  }

  /** Every next()/return() of the iterator is tracked like any other call. */
  private iterate<T>(open: () => AsyncIterable<T>): AsyncIterable<T> {
    return {
      [Symbol.asyncIterator]: (): AsyncIterator<T> => {
        if (this.dead) return { next: never }
        const it = open()[Symbol.asyncIterator]()
        return {
          next: () => (this.dead ? never() : this.activity.track(it.next())),
          return: (value?: unknown) =>
            it.return === undefined ? Promise.resolve({ done: true, value: value as T }) : this.activity.track(it.return(value)),
        }
      },
    }
  }
}
