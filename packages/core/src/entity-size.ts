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
  /** The largest entity met since open (loaded or written here), as it was when last met. */
  largest: EntitySize | undefined
  /** Entities not sent to a peer since open because their state was over maxDeltaBytes. */
  notSent = 0
  /** Entities logged already, and whether as over the limit (else as past half of it). */
  private readonly logged = new Map<string, 'half' | 'over'>()

  constructor(
    readonly maxDeltaBytes: number,
    private readonly logger: Logger,
  ) {}

  /** An entity's stored state is `bytes` now (it was loaded or written). Cheap: called on every write. */
  met(collection: string, id: string, bytes: number): void {
    const largest = this.largest
    if (largest === undefined || bytes > largest.bytes) this.largest = { collection, id, bytes }
    else if (largest.id === id && largest.collection === collection) largest.bytes = bytes // the same entity, folded smaller
    if (bytes * 2 < this.maxDeltaBytes) return
    const level = bytes > this.maxDeltaBytes ? 'over' : 'half'
    const key = `${collection}\u0000${id}`
    const was = this.logged.get(key)
    if (was === level || was === 'over') return
    if (this.logged.size >= MAX_WARNED) return // enough said: the metric and the alert still show it
    this.logged.set(key, level)
    const size = `${mib(bytes)} of state (maxDeltaBytes ${mib(this.maxDeltaBytes)})`
    const fix =
      'raise limits.maxDeltaBytes on every replica (each must take a delta that large), or spread the writes over more entities (a counter: over more ids)'
    if (level === 'over') {
      this.logger.error(`entity '${id}' of '${collection}' holds ${size}: a replica that holds none of it (a new one) can no longer receive it; ${fix}`, {
        collection,
        entity: id,
        bytes,
      })
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
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`
}
