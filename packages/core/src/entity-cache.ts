import type { Backend } from './backend.js'
import type { EntityHead } from './store.js'

/** One entity whose document is in memory. */
export interface LoadedEntity {
  readonly collection: string
  readonly id: string
  readonly leaf: number
  /** The backend `doc` belongs to (its resident budget and dispose() apply). */
  readonly backend: Backend
  /** The backend document; replaced after every change (Automerge documents are immutable). */
  doc: unknown
  /** What the store holds (or will hold once pending writes land); undefined = never stored. */
  head: EntityHead | undefined
  /**
   * True while head.versionHash lags `doc`: a local commit leaves it to the tick's flush, so
   * a hot entity's version is hashed once per tick, not once per write (Entities.versionHashOf).
   */
  versionStale: boolean
  /** The version hash the digest tree holds for it (head's, once the tick's commits are flushed). */
  treeHash: Uint8Array | undefined
  /** Size of its stored snapshot, and of the deltas stored since (for the compaction policy). */
  snapshotBytes: number
  deltaBytes: number
  /** Writes of this entity not yet durable. A pinned entity is never evicted. */
  pins: number
  /**
   * Settles when the latest write of this entity has: true once durable, false if it failed
   * (never rejects; no-op writes wait on it, and so does anything that sends the entity).
   */
  lastWrite: Promise<boolean>
  /**
   * Dropped from the cache after a write of it failed: memory was ahead of disk. Commits on
   * it are refused; it is disposed of once unpinned. The next acquire loads it anew.
   */
  stale: boolean
}

/** The entities of one backend, least recently used first (Map keeps insertion order). */
interface Group {
  readonly map: Map<string, Slot>
  /** At most this many of them stay (within the cache's capacity). */
  readonly limit: number
  /** How many of them are pinned: eviction stops at once when nothing else is left. */
  pinned: number
}

interface Slot {
  entity: LoadedEntity
  /** When it was last used (a counter), to pick the globally oldest across groups. */
  used: number
}

/**
 * A least-recently-used table of loaded entity documents, so memory stays bounded however
 * many entities are stored. Hand-written rather than lru-cache because an entity must never
 * be evicted while it has writes in flight: a reload would miss them. Pinned entries are
 * skipped by eviction and the table may exceed its capacity until they are released.
 *
 * Besides the overall capacity, each backend may cap how many of its documents stay
 * (Backend.maxResident): Automerge documents live in a WASM heap whose allocator slows every
 * new document down as live ones pile up, so they get a much smaller budget than Yjs ones.
 * Every entity that leaves the table goes to `onEvict` (which disposes of its document).
 *
 * Pins go through pin()/unpin(), so the table knows how many of its entries are pinned: a
 * late joiner applies a whole chunk of new entities at once, all pinned until durable, and a
 * scan past them on every insert made eviction quadratic in the chunk size. (A scan still
 * walks past pinned entries when unpinned ones sit behind them; keeping pinned entries out of
 * the LRU order altogether would make every eviction O(1).)
 */
export class EntityCache {
  private readonly groups = new Map<Backend, Group>()
  private count = 0
  private clock = 0

  constructor(
    private readonly capacity: number,
    private readonly onEvict: (entity: LoadedEntity) => void = () => undefined,
  ) {}

  static key(collection: string, id: string): string {
    return `${collection}\u0000${id}`
  }

  get size(): number {
    return this.count
  }

  get(key: string): LoadedEntity | undefined {
    for (const group of this.groups.values()) {
      const slot = group.map.get(key)
      if (slot !== undefined) {
        // Move to the most-recently-used end (unless it is there already: a hot entity).
        if (slot.used !== this.clock) {
          group.map.delete(key)
          group.map.set(key, slot)
          slot.used = ++this.clock
        }
        return slot.entity
      }
    }
    return undefined
  }

  set(key: string, entity: LoadedEntity): void {
    this.remove(key)
    const group = this.groupOf(entity.backend)
    group.map.set(key, { entity, used: ++this.clock })
    if (entity.pins > 0) group.pinned++
    this.count++
    this.evict()
  }

  /** One more user or write in flight of `entity`: it is not evicted until unpinned. */
  pin(entity: LoadedEntity): void {
    if (entity.pins++ === 0) {
      const group = this.holdingGroup(entity)
      if (group !== undefined) group.pinned++
    }
  }

  /** One user or write fewer; the caller evicts (or disposes of a dropped entity) at zero. */
  unpin(entity: LoadedEntity): void {
    if (--entity.pins === 0) {
      const group = this.holdingGroup(entity)
      if (group !== undefined) group.pinned--
    }
  }

  /** Removes the entity under `key` without evicting it (the caller decides about its document). */
  delete(key: string): LoadedEntity | undefined {
    return this.remove(key)
  }

  /** Evicts least-recently-used unpinned entities while a group or the whole is over budget. */
  evict(): void {
    for (const group of this.groups.values()) {
      while (group.map.size > group.limit && group.map.size > group.pinned) {
        const oldest = this.oldestUnpinned(group)
        if (oldest === undefined) break
        this.evictSlot(group, oldest[0], oldest[1])
      }
    }
    while (this.count > this.capacity) {
      // The globally least recently used unpinned entity, whichever group holds it.
      let victim: [Group, string, Slot] | undefined
      for (const group of this.groups.values()) {
        const oldest = group.map.size > group.pinned ? this.oldestUnpinned(group) : undefined
        if (oldest !== undefined && (victim === undefined || oldest[1].used < victim[2].used)) victim = [group, ...oldest]
      }
      if (victim === undefined) break
      this.evictSlot(...victim)
    }
  }

  /**
   * The least recently used unpinned entry of a group. Looks at each entry once at most;
   * finding none, it takes the pinned count as all of them. (Pinned entries stay where they
   * are: moving each one met to the recent end cost more than it saved when unpinned entries
   * keep arriving behind a large pinned set — measured by review.)
   */
  private oldestUnpinned(group: Group): [string, Slot] | undefined {
    for (const entry of group.map) if (entry[1].entity.pins === 0) return entry
    group.pinned = group.map.size
    return undefined
  }

  /** Drops every entity of a collection (when its tentative backend is replaced). */
  deleteCollection(collection: string): void {
    for (const group of this.groups.values()) {
      for (const [key, slot] of group.map) {
        if (slot.entity.collection !== collection) continue
        group.map.delete(key)
        this.count--
        // Pinned ones are still in use by their writers: they are only forgotten here.
        if (slot.entity.pins === 0) this.onEvict(slot.entity)
        else group.pinned--
      }
    }
  }

  /** Evicts everything (at close). */
  clear(): void {
    for (const group of this.groups.values()) {
      for (const slot of group.map.values()) this.onEvict(slot.entity)
      group.map.clear()
      group.pinned = 0
    }
    this.count = 0
  }

  private groupOf(backend: Backend): Group {
    let group = this.groups.get(backend)
    if (group === undefined) {
      group = { map: new Map(), limit: Math.min(this.capacity, backend.maxResident ?? Infinity), pinned: 0 }
      this.groups.set(backend, group)
    }
    return group
  }

  private remove(key: string): LoadedEntity | undefined {
    for (const group of this.groups.values()) {
      const slot = group.map.get(key)
      if (slot !== undefined) {
        group.map.delete(key)
        if (slot.entity.pins > 0) group.pinned--
        this.count--
        return slot.entity
      }
    }
    return undefined
  }

  /** The group whose table holds this very entity (not a dropped copy under the same key). */
  private holdingGroup(entity: LoadedEntity): Group | undefined {
    const group = this.groups.get(entity.backend)
    return group?.map.get(EntityCache.key(entity.collection, entity.id))?.entity === entity ? group : undefined
  }

  private evictSlot(group: Group, key: string, slot: Slot): void {
    group.map.delete(key)
    this.count--
    this.onEvict(slot.entity)
  }
}

