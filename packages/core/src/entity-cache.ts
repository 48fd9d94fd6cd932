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
  /** Users of this entity plus its writes not yet durable (EntityCache.pin). A pinned entity is never evicted. */
  pins: number
  /**
   * Settles when the latest write of this entity has: true once durable, false if it failed
   * (never rejects; no-op writes wait on it, and so does anything that sends the entity).
   */
  lastWrite: Promise<boolean>
  /**
   * The same, of the latest write that stored signed heads for the entity (a remote change
   * vouched for by heads); undefined if none since it was loaded. Whoever reads the stored heads
   * of changes waiting in `doc` waits for it (apply.ts): local writes, which store none, do not
   * make it read again.
   */
  headsWrite?: Promise<boolean>
  /**
   * Dropped from the cache after a write of it failed: memory was ahead of disk. Commits on
   * it are refused; it is disposed of once unpinned. The next acquire loads it anew.
   */
  stale: boolean
  /**
   * Dropped from the cache because its document can no longer be trusted: a remote delta
   * threw half-way through applying (a backend that mutates in place may keep part of it).
   * Unlike `stale`, the writes it already queued are valid and still land (their version
   * hash was taken before the delta). Nothing reads or sends its document any more; the next
   * acquire loads it anew from the store.
   */
  discarded: boolean
}

/** Whether nothing may read, send or build on the entity's document any more. */
export function isDead(entity: LoadedEntity): boolean {
  return entity.stale || entity.discarded
}

/** The entities of one backend: the unpinned ones least recently used first, the pinned apart. */
interface Group {
  /** Unpinned entries, least recently used first (Map keeps insertion order): all evictable. */
  readonly lru: Map<string, Slot>
  /** Pinned entries (in use, or with writes in flight): never evicted, so kept out of the order. */
  readonly held: Map<string, Slot>
  /** At most this many of them stay (within the cache's capacity). */
  readonly limit: number
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
 * kept apart from the eviction order, and the table may exceed its capacity until they are
 * released. (A late joiner applies a whole chunk of new entities at once, all pinned until
 * durable: with pinned entries in the order, every insert scanned past them — quadratic.)
 *
 * Besides the overall capacity, each backend may cap how many of its documents stay
 * (Backend.maxResident): Automerge documents live in a WASM heap whose allocator slows every
 * new document down as live ones pile up, so they get a much smaller budget than Yjs ones.
 * Every entity that leaves the table goes to `onEvict` (which disposes of its document).
 * Pins go through pin()/unpin(), which move an entry between the two parts.
 */
export class EntityCache {
  private readonly groups = new Map<Backend, Group>()
  private count = 0
  private clock = 0
  /** Entities evicted to keep within the capacity or a backend's budget (since creation). */
  evictions = 0

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
      const held = group.held.get(key)
      if (held !== undefined) {
        held.used = ++this.clock
        return held.entity
      }
      const slot = group.lru.get(key)
      if (slot !== undefined) {
        // Move to the most-recently-used end (unless it is there already: a hot entity).
        if (slot.used !== this.clock) {
          group.lru.delete(key)
          group.lru.set(key, slot)
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
    ;(entity.pins > 0 ? group.held : group.lru).set(key, { entity, used: ++this.clock })
    this.count++
    this.evict()
  }

  /** One more user or write in flight of `entity`: it is not evicted until unpinned. */
  pin(entity: LoadedEntity): void {
    if (entity.pins++ > 0) return
    this.move(entity, 'lru', 'held')
  }

  /** One user or write fewer; the caller evicts (or disposes of a dropped entity) at zero. */
  unpin(entity: LoadedEntity): void {
    if (--entity.pins > 0) return
    this.move(entity, 'held', 'lru')
  }

  /** Removes the entity under `key` without evicting it (the caller decides about its document). */
  delete(key: string): LoadedEntity | undefined {
    return this.remove(key)
  }

  /** Evicts least-recently-used unpinned entities while a group or the whole is over budget. */
  evict(): void {
    for (const group of this.groups.values()) {
      while (group.lru.size + group.held.size > group.limit) {
        const oldest = first(group.lru)
        if (oldest === undefined) break
        this.evictSlot(group, ...oldest)
      }
    }
    while (this.count > this.capacity) {
      // The globally least recently used unpinned entity, whichever group holds it.
      let victim: [Group, string, Slot] | undefined
      for (const group of this.groups.values()) {
        const oldest = first(group.lru)
        if (oldest !== undefined && (victim === undefined || oldest[1].used < victim[2].used)) victim = [group, ...oldest]
      }
      if (victim === undefined) break
      this.evictSlot(...victim)
    }
  }

  /** Drops every entity of a collection (when its tentative backend is replaced). */
  deleteCollection(collection: string): void {
    for (const group of this.groups.values()) {
      for (const [key, slot] of group.lru) {
        if (slot.entity.collection !== collection) continue
        group.lru.delete(key)
        this.count--
        this.onEvict(slot.entity)
      }
      // Pinned ones are still in use by their writers: they are only forgotten here.
      for (const [key, slot] of group.held) {
        if (slot.entity.collection !== collection) continue
        group.held.delete(key)
        this.count--
      }
    }
  }

  /** How many entities of each collection are in the table now (walks it: for occasional reads such as metrics). */
  countByCollection(): Map<string, number> {
    const counts = new Map<string, number>()
    for (const group of this.groups.values()) {
      for (const part of [group.lru, group.held]) {
        for (const slot of part.values()) counts.set(slot.entity.collection, (counts.get(slot.entity.collection) ?? 0) + 1)
      }
    }
    return counts
  }

  /** Evicts everything (at close). */
  clear(): void {
    for (const group of this.groups.values()) {
      for (const part of [group.lru, group.held]) {
        for (const slot of part.values()) this.onEvict(slot.entity)
        part.clear()
      }
    }
    this.count = 0
  }

  private groupOf(backend: Backend): Group {
    let group = this.groups.get(backend)
    if (group === undefined) {
      group = { lru: new Map(), held: new Map(), limit: Math.min(this.capacity, backend.maxResident ?? Infinity) }
      this.groups.set(backend, group)
    }
    return group
  }

  private remove(key: string): LoadedEntity | undefined {
    for (const group of this.groups.values()) {
      for (const part of [group.lru, group.held]) {
        const slot = part.get(key)
        if (slot === undefined) continue
        part.delete(key)
        this.count--
        return slot.entity
      }
    }
    return undefined
  }

  /**
   * Moves this very entity (not a dropped copy under the same key) between the parts of its
   * group; an unpinned one goes to the most-recently-used end.
   */
  private move(entity: LoadedEntity, from: 'lru' | 'held', to: 'lru' | 'held'): void {
    const group = this.groups.get(entity.backend)
    const key = EntityCache.key(entity.collection, entity.id)
    const slot = group?.[from].get(key)
    if (group === undefined || slot?.entity !== entity) return
    group[from].delete(key)
    slot.used = ++this.clock
    group[to].set(key, slot)
  }

  private evictSlot(group: Group, key: string, slot: Slot): void {
    group.lru.delete(key)
    this.count--
    this.evictions++
    this.onEvict(slot.entity)
  }
}

/** The first entry of a map (its least recently used, for an LRU order), if any. */
function first(map: Map<string, Slot>): [string, Slot] | undefined {
  for (const entry of map) return entry
  return undefined
}
