import type { Logger } from './logger.js'

/** An entity and the bytes of its stored state (snapshot and deltas). */
export interface EntitySize {
  collection: string
  id: string
  bytes: number
}

/** At most this many entities are remembered as logged (a warning each, once per process). */
const MAX_WARNED = 1000

/**
 * Watches how large entities grow against `maxDeltaBytes`. An entity's whole state is what a
 * replica that holds none of it (a new one, or one that dropped it) must receive in one delta,
 * and no replica sends or takes a delta over that limit: an entity that grows past it — an
 * Automerge document keeps its whole history, a signed counter row ~86 bytes per write — stops
 * reaching such replicas for good, while every replica that holds it still syncs it. Nothing
 * refuses the writes that take it there, so this is what tells an operator before it happens:
 * a warning once per entity past half the limit, an error once past the limit, the largest
 * entity met (ReplicaStats.entitySize, metrics, alerts), and each send refused for size.
 */
export class EntitySizes {
  /** Entities not sent to a peer since open because their state was over maxDeltaBytes. */
  notSent = 0
  /**
   * Entities met at or past half the limit, as last met (at most MAX_WARNED: the smallest
   * leaves for a larger one). Kept apart so that the largest stays right when it folds
   * smaller or its collection is dropped: the one an alert is about is always here.
   */
  private readonly big = new Map<string, Map<string, EntitySize>>() // by collection, then id: no key to build on a small entity's write
  private bigCount = 0
  /** The largest entity met under half the limit, as it was when last met (may be stale-small: it only shows while none is past half). */
  private small: EntitySize | undefined
  /** Entities logged already, and whether as over the limit (else as past half of it). */
  private readonly logged = new Map<string, 'half' | 'over'>()

  constructor(
    readonly maxDeltaBytes: number,
    private readonly logger: Logger,
  ) {}

  /** The largest entity met since open (loaded, written or served whole here), as it was when last met. */
  get largest(): EntitySize | undefined {
    let best: EntitySize | undefined
    for (const ids of this.big.values()) for (const e of ids.values()) if (best === undefined || e.bytes > best.bytes) best = e
    return best ?? this.small
  }

  /** An entity's stored state is `bytes` now (it was loaded or written). Cheap: called on every write. */
  met(collection: string, id: string, bytes: number): void {
    if (bytes * 2 < this.maxDeltaBytes) {
      const small = this.small
      if (small === undefined || bytes > small.bytes) this.small = { collection, id, bytes }
      else if (small.id === id && small.collection === collection) small.bytes = bytes // the same entity, folded smaller
      if (this.bigCount > 0) this.unkeep(collection, id) // folded back under half
      return
    }
    const known = this.big.get(collection)?.get(id)
    if (known !== undefined) known.bytes = bytes
    else this.keep({ collection, id, bytes })
    const k = key(collection, id)
    const level = bytes > this.maxDeltaBytes ? 'over' : 'half'
    const was = this.logged.get(k)
    if (was === level || was === 'over') return
    if (was === undefined && this.logged.size >= MAX_WARNED) return // enough said: the metric and the alert still show it
    this.logged.set(k, level)
    const size = `${mib(bytes)} of state (maxDeltaBytes ${mib(this.maxDeltaBytes)})`
    const fix =
      'raise limits.maxDeltaBytes on every replica (each must take a delta that large), or spread the writes over more entities (a counter: over more ids)'
    if (level === 'over') {
      this.logger.error(
        `entity '${id}' of '${collection}' holds ${size} as stored: unless it fits once saved whole (Automerge's stored changes are uncompressed; each refused send is counted in entitySize.notSent), a replica that holds none of it (a new one) can no longer receive it; ${fix}`,
        {
          collection,
          entity: id,
          bytes,
        },
      )
    } else {
      this.logger.warn(
        `entity '${id}' of '${collection}' holds ${size}, over half the limit: past it, a replica that holds none of it (a new one) cannot receive it; ${fix}`,
        { collection, entity: id, bytes },
      )
    }
  }

  /** An entity was not sent to a peer: its state is over maxDeltaBytes. */
  tooLargeToSend(collection: string, id: string, bytes: number): void {
    this.notSent++
    this.met(collection, id, bytes)
  }

  /** A collection was dropped: its entities are no longer measured (and are told of anew if made again). */
  forget(collection: string): void {
    this.bigCount -= this.big.get(collection)?.size ?? 0
    this.big.delete(collection)
    for (const k of this.logged.keys()) if (k.startsWith(`${collection}\u0000`)) this.logged.delete(k)
    if (this.small?.collection === collection) this.small = undefined
  }

  /** Keeps an entity past half, within MAX_WARNED: when full, in place of the smallest kept if it is larger. */
  private keep(size: EntitySize): void {
    if (this.bigCount >= MAX_WARNED) {
      let smallest: EntitySize | undefined
      for (const ids of this.big.values()) for (const e of ids.values()) if (smallest === undefined || e.bytes < smallest.bytes) smallest = e
      if (smallest!.bytes >= size.bytes) return
      this.unkeep(smallest!.collection, smallest!.id)
    }
    let ids = this.big.get(size.collection)
    if (ids === undefined) this.big.set(size.collection, (ids = new Map<string, EntitySize>()))
    ids.set(size.id, size)
    this.bigCount++
  }

  private unkeep(collection: string, id: string): void {
    const ids = this.big.get(collection)
    if (ids === undefined || !ids.delete(id)) return
    this.bigCount--
    if (ids.size === 0) this.big.delete(collection)
  }
}

function key(collection: string, id: string): string {
  return `${collection}\u0000${id}`
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`
}
