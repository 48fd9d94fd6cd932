import type { Backend } from './backend.js'
import type { JsonObject } from './json.js'
import type { FeedEntry } from './store.js'
import type { WriteSpan } from './tracing.js'

/**
 * A change that became durable on this replica — a local write once its batch is on disk, a
 * remote delta once persisted. Entities emits one per committed change, in commit order;
 * Collection tells its subscribers, the replicator pushes local ones.
 */
export interface DurableChange {
  readonly collection: string
  readonly id: string
  /** Its change-feed entry (sequence number, origin, kind, time). */
  readonly entry: FeedEntry
  /**
   * The entity's value right after this change (undefined when deleted) — read when the change
   * was made, never later (a later change may still be in the write queue: a crash would take
   * it back). Present only when someone wanted values (see ChangeEvents.wantsValue).
   */
  readonly value?: { value: JsonObject | undefined }
  readonly delta: Uint8Array
  readonly backend: Backend
  /** The peer the change came from; undefined for a local write. */
  readonly peer: string | undefined
  /** A local write that created the collection on this replica. */
  readonly created: boolean
  /**
   * A peer's change whose push carried its commit time: ms from that commit (the origin's
   * clock) until durable here (this replica's clock). Negative when the origin's clock is ahead.
   */
  readonly lagMs?: number
  /** A local write's span, while it is traced (push holds it until the delta is published). */
  readonly span?: WriteSpan
}

export type DurableChangeListener = (change: DurableChange) => void

/**
 * Who hears of durable changes: listeners of one collection (they also want the value) and
 * listeners of all (the replicator). A listener that throws is reported, never breaks the writer.
 */
export class ChangeEvents {
  private readonly byCollection = new Map<string, Set<DurableChangeListener>>()
  private readonly all = new Set<DurableChangeListener>()

  /** @param listenerFailed reports a listener that threw */
  constructor(readonly listenerFailed: (err: unknown) => void) {}

  /** Listens to every change (no values are read for this listener). */
  onEvery(listener: DurableChangeListener): () => void {
    this.all.add(listener)
    return () => void this.all.delete(listener)
  }

  /** Listens to one collection's changes, with the value after each. */
  onCollection(collection: string, listener: DurableChangeListener): () => void {
    let set = this.byCollection.get(collection)
    if (set === undefined) this.byCollection.set(collection, (set = new Set()))
    set.add(listener)
    return () => {
      set.delete(listener)
      if (set.size === 0 && this.byCollection.get(collection) === set) this.byCollection.delete(collection)
    }
  }

  /** Whether a change of this collection must carry its value (read when it is made). */
  wantsValue(collection: string): boolean {
    return this.byCollection.has(collection)
  }

  emit(change: DurableChange): void {
    for (const listener of this.all) this.call(listener, change)
    const set = this.byCollection.get(change.collection)
    if (set !== undefined) for (const listener of set) this.call(listener, change)
  }

  private call(listener: DurableChangeListener, change: DurableChange): void {
    try {
      listener(change)
    } catch (err) {
      this.listenerFailed(err)
    }
  }
}
