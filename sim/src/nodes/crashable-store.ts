import type { CollectionMeta, CorruptRecord, EntityHead, FeedEntry, Store, StoredEntity, StoreOp } from '@convergent/core'

/** What a call into a process that is gone gets: a promise that never settles. */
export const never = <T>(): Promise<T> => new Promise<T>(() => {})

/** Sees every call's promise on its way to the caller (the simulator counts them); identity by default. */
export type Track = <T>(promise: Promise<T>) => Promise<T>

const untracked: Track = (promise) => promise

/**
 * One incarnation's view of a node's durable store, which outlives crashes (the node keeps the
 * store; each incarnation gets a new view). After crash() the process is gone and nothing
 * answers: every call, every next() and return() of an iterator opened before the crash, and
 * every iterator opened after it, returns a promise that never settles. close() waits for
 * flushed() and leaves the underlying store open for the next incarnation.
 *
 * Live mode uses it as it is; the simulator's SimStore builds on it (write latency in virtual
 * time, every call tracked for the scheduler). It knows nothing of either.
 */
export class CrashableStore implements Store {
  private dead = false

  constructor(
    protected readonly inner: Store,
    protected readonly track: Track = untracked,
  ) {}

  get kind(): string {
    return this.inner.kind
  }

  get stats(): Store['stats'] {
    return this.inner.stats
  }

  get damage(): Store['damage'] {
    return this.inner.damage
  }

  /** True once crash() was called. */
  get crashed(): boolean {
    return this.dead
  }

  /** The process died: nothing answers any more. */
  crash(): void {
    this.dead = true
  }

  open(): Promise<void> {
    return this.dead ? never() : this.track(this.inner.open())
  }

  /** A graceful close of this view: waits for flushed(); the underlying store stays open. */
  close(): Promise<void> {
    return this.dead ? never() : this.flushed()
  }

  /** What close() waits for: nothing here (writes go straight through). */
  protected flushed(): Promise<void> {
    return Promise.resolve()
  }

  write(ops: StoreOp[]): Promise<void> {
    return this.dead ? never() : this.track(this.inner.write(ops))
  }

  readEntity(collection: string, id: string): Promise<StoredEntity | undefined> {
    return this.dead ? never() : this.track(this.inner.readEntity(collection, id))
  }

  getHead(collection: string, id: string): Promise<EntityHead | undefined> {
    return this.dead ? never() : this.track(this.inner.getHead(collection, id))
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
    return this.dead ? never() : this.track(this.inner.lastSeq(collection))
  }

  collections(): Promise<Map<string, CollectionMeta>> {
    return this.dead ? never() : this.track(this.inner.collections())
  }

  getMeta(key: string): Promise<Uint8Array | undefined> {
    return this.dead ? never() : this.track(this.inner.getMeta(key))
  }

  metas(prefix: string): AsyncIterable<[string, Uint8Array]> {
    const inner = this.inner
    if (inner.metas === undefined) throw new Error('the inner store lists no meta records')
    return this.iterate(() => inner.metas!(prefix))
  }

  dropCollection(collection: string): Promise<void> {
    return this.dead ? never() : this.track(this.inner.dropCollection(collection))
  }

  quarantine(record: CorruptRecord): Promise<void> {
    return this.dead ? never() : this.track(this.inner.quarantine(record))
  }

  /**
   * The inner iterator is opened lazily (on the first [Symbol.asyncIterator]()), and every
   * next()/return() is tracked like any other call and answers nothing once crashed.
   */
  private iterate<T>(open: () => AsyncIterable<T>): AsyncIterable<T> {
    return {
      [Symbol.asyncIterator]: (): AsyncIterator<T> => {
        if (this.dead) return { next: never, return: never }
        const it = open()[Symbol.asyncIterator]()
        return {
          next: () => (this.dead ? never() : this.track(it.next())),
          return: (value?: unknown) =>
            this.dead ? never() : it.return === undefined ? Promise.resolve({ done: true, value: value as T }) : this.track(it.return(value)),
        }
      },
    }
  }
}
