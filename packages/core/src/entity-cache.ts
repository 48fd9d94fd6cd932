import type { EntityHead } from './store.js'

/** One entity whose document is in memory. */
export interface LoadedEntity {
  readonly collection: string
  readonly id: string
  readonly leaf: number
  /** The backend document; replaced after every change (Automerge documents are immutable). */
  doc: unknown
  /** What the store holds (or will hold once pending writes land); undefined = never stored. */
  head: EntityHead | undefined
  /** Writes of this entity not yet durable. A pinned entity is never evicted. */
  pins: number
  /** Resolves when the latest write of this entity is durable (for no-op writes to wait on). */
  lastWrite: Promise<void>
}

/**
 * A least-recently-used table of loaded entity documents, so memory stays bounded however
 * many entities are stored. Hand-written rather than lru-cache because an entity must never
 * be evicted while it has writes in flight: a reload would miss them. Pinned entries are
 * skipped by eviction and the table may exceed its capacity until they are released.
 */
export class EntityCache {
  private readonly map = new Map<string, LoadedEntity>()

  constructor(private readonly capacity: number) {}

  static key(collection: string, id: string): string {
    return `${collection}\u0000${id}`
  }

  get size(): number {
    return this.map.size
  }

  get(key: string): LoadedEntity | undefined {
    const e = this.map.get(key)
    if (e !== undefined) {
      // Move to the most-recently-used end (Map keeps insertion order).
      this.map.delete(key)
      this.map.set(key, e)
    }
    return e
  }

  set(key: string, entity: LoadedEntity): void {
    this.map.delete(key)
    this.map.set(key, entity)
    this.evict()
  }

  delete(key: string): void {
    this.map.delete(key)
  }

  /** Evicts least-recently-used unpinned entities while over capacity. */
  evict(): void {
    if (this.map.size <= this.capacity) return
    for (const [key, e] of this.map) {
      if (this.map.size <= this.capacity) break
      if (e.pins === 0) this.map.delete(key)
    }
  }

  /** Drops every entity of a collection (when its tentative backend is replaced). */
  deleteCollection(collection: string): void {
    for (const [key, e] of this.map) if (e.collection === collection) this.map.delete(key)
  }

  clear(): void {
    this.map.clear()
  }
}
