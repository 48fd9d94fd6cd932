import type { Backend } from '../backend.js'
import type { Clock } from '../clock.js'
import type { Entities, CollectionState } from '../entities.js'
import type { Logger } from '../logger.js'
import type { Network } from '../network.js'
import type { JsonObject } from '../json.js'
import type { FeedEntry } from '../store.js'
import type { PeerStatsTable } from './peer-stats.js'

/** Limits on what replication sends and accepts. Every one can be changed in the replica options. */
export interface ReplicationLimits {
  /** Largest message sent or accepted (gossip or one sync request/response). */
  maxMessageBytes: number
  /** Soft cap on the delta bytes in one sync chunk. */
  maxChunkBytes: number
  /** Largest single delta accepted from a peer. */
  maxDeltaBytes: number
  /** Per-peer inbound messages per second (token bucket) … */
  inboundRatePerSecond: number
  /** … and the burst allowed above it. */
  inboundBurst: number
  /** Largest entity id / collection name accepted, bytes. */
  maxIdBytes: number
}

export const DEFAULT_REPLICATION_LIMITS: ReplicationLimits = {
  maxMessageBytes: 4 * 1024 * 1024,
  maxChunkBytes: 512 * 1024,
  maxDeltaBytes: 2 * 1024 * 1024,
  inboundRatePerSecond: 5000,
  inboundBurst: 20000,
  maxIdBytes: 256,
}

/** What the replication parts share: the replica's internals they may touch. */
export interface ReplicationContext {
  readonly namespace: string
  readonly network: Network
  readonly clock: Clock
  readonly logger: Logger
  readonly limits: ReplicationLimits
  readonly entities: Entities
  readonly backends: Map<string, Backend>
  readonly stats: PeerStatsTable
  /** The collection's state, creating it (with this backend) if this replica has not seen it. */
  collectionFor(name: string, backend: Backend): CollectionState
  /**
   * Tells subscribers of the collection about an applied remote change: `value` is the value
   * the change left (backend.read of the committed document), so it is not read again.
   */
  emitRemote(collection: string, entry: FeedEntry, value: JsonObject | undefined, peer: string): void
  isOpen(): boolean
  /** Serves a peer's request for bounded-counter rights; resolves with the amount granted. */
  grantRights(collection: string, id: string, to: string, want: number): Promise<number>
}

/** The gossip topic of a collection within a namespace. */
export function topicOf(namespace: string, collection: string): string {
  return `/convergent/${namespace}/c/${collection}`
}
