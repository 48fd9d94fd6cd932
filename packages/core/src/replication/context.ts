import type { SignedRows } from '../counter-rows.js'
import type { PeerBudget } from '../peer-budget.js'
import type { Backend } from '../backend.js'
import type { Clock } from '../clock.js'
import type { Entities, CollectionState } from '../entities.js'
import type { Logger } from '../logger.js'
import type { Network } from '../network.js'
import type { ValueLimits } from '../json.js'
import { ConvergentError } from '../errors.js'
import type { ChangeEvents } from '../changes.js'
import type { ApplyPacer } from './apply-all.js'
import type { DropLog } from './drop-log.js'
import type { PeerStatsTable } from './peer-stats.js'
import type { PerPeerQueue } from './per-peer-queue.js'
import type { Access } from '../trust/access.js'
import type { SubjectKeys } from '../personal/subject-keys.js'
import type { Tracer } from '@opentelemetry/api'
import type { SignedHeads } from './heads.js'
import type { CollectionHold } from './provisional.js'

/** Limits on what replication sends and accepts. Every one can be changed in the replica options. */
export interface ReplicationLimits {
  /** Largest message sent or accepted (gossip or one sync request/response). */
  maxMessageBytes: number
  /**
   * Largest gossip push sent or accepted: a push that would be larger goes in several, a delta
   * that alone would is left to anti-entropy. Kept well under maxMessageBytes: every push a
   * peer sends costs its receivers (and the relays) decoding it before it can be refused.
   */
  maxPushBytes: number
  /** Soft cap on the delta bytes in one sync chunk (also the largest delta sent inline). */
  maxChunkBytes: number
  /**
   * Largest delta (or whole entity state) sent or accepted, in bytes, once reassembled: one
   * over the inline size travels in parts (see Outbox), one over this is not sent at all.
   */
  maxDeltaBytes: number
  /**
   * Bytes a replica keeps for parts, each way: large deltas handed out as tickets (Outbox) and
   * uploads being received (Uploads), over all peers. At least maxDeltaBytes.
   */
  maxPartsBytes: number
  /** Largest size a remote delta may decode to (Automerge chunks are compressed), checked before inflating. */
  maxDecodedBytes: number
  /**
   * Largest value (JSON bytes) a peer's delta may build once merged here. Larger than
   * maxValueBytes on purpose: concurrent writes that each keep maxValueBytes can merge into a
   * larger value, and every replica must take them all to converge (refusing at maxValueBytes
   * split two honest replicas for good, each refusing the other's write). Only a value over this
   * is refused; never less than maxValueBytes.
   */
  maxMergedValueBytes: number
  /** Per-peer inbound messages per second (token bucket) … */
  inboundRatePerSecond: number
  /** … and the burst allowed above it. */
  inboundBurst: number
  /** Per-peer inbound entries (deltas, ids) per second, and the burst above it. */
  inboundEntriesPerSecond: number
  inboundEntriesBurst: number
  /** Per-peer inbound bytes per second, and the burst above it. */
  inboundBytesPerSecond: number
  inboundBytesBurst: number
  /** Largest entity id / collection name accepted, bytes. */
  maxIdBytes: number
  /**
   * Most collections this replica holds before it refuses new ones from peers (collections the
   * application opens itself are not refused).
   */
  maxCollections: number
  /** Collections per roots page this replica serves. */
  rootsPerPage: number
  /** Budget of one anti-entropy round with one peer: requests, bytes received, time (ms). */
  maxRoundRequests: number
  maxRoundBytes: number
  roundTimeoutMs: number
}

export const DEFAULT_REPLICATION_LIMITS: ReplicationLimits = {
  maxMessageBytes: 4 * 1024 * 1024,
  maxPushBytes: 1024 * 1024,
  maxChunkBytes: 512 * 1024,
  maxDeltaBytes: 32 * 1024 * 1024,
  maxPartsBytes: 64 * 1024 * 1024,
  maxDecodedBytes: 32 * 1024 * 1024,
  maxMergedValueBytes: 16 * 1024 * 1024,
  inboundRatePerSecond: 5000,
  inboundBurst: 20000,
  inboundEntriesPerSecond: 20_000,
  inboundEntriesBurst: 50_000,
  inboundBytesPerSecond: 32 * 1024 * 1024,
  inboundBytesBurst: 128 * 1024 * 1024,
  maxIdBytes: 256,
  maxCollections: 10_000,
  rootsPerPage: 1000,
  maxRoundRequests: 20_000,
  maxRoundBytes: 2 * 1024 * 1024 * 1024,
  roundTimeoutMs: 10 * 60_000,
}

/**
 * Checks `open({ limits })`: every key one of the limits, every value a positive finite number
 * (ERR_INVALID_ARGUMENT otherwise). A typo in a name, or a 0 or -1 meant as "no limit", would
 * otherwise be taken without a word — and a limit of -1 refuses every write.
 */
export function checkLimits(limits: unknown, known: readonly string[]): void {
  if (limits === undefined) return
  if (typeof limits !== 'object' || limits === null || Array.isArray(limits))
    throw new ConvergentError('ERR_INVALID_ARGUMENT', 'limits is an object of named limits.')
  for (const [name, value] of Object.entries(limits)) {
    if (!known.includes(name)) throw new ConvergentError('ERR_INVALID_ARGUMENT', `limits has no limit ${JSON.stringify(name)} (known: ${known.join(', ')}).`)
    if (value === undefined) continue
    // Rates may be fractional (0.5 a second); every limit is finite: none means "unbounded".
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new ConvergentError('ERR_INVALID_ARGUMENT', `limits.${name} must be a positive number, got ${JSON.stringify(value)}.`)
    }
  }
}

/** What the replication parts share: the replica's internals they may touch. */
export interface ReplicationContext {
  readonly namespace: string
  readonly network: Network
  readonly clock: Clock
  readonly logger: Logger
  readonly limits: ReplicationLimits & ValueLimits
  readonly entities: Entities
  readonly backends: Map<string, Backend>
  readonly stats: PeerStatsTable
  /** Per author of signed pushes (ReplicaStats.authors). */
  readonly authorStats: PeerStatsTable
  /** Signature checks of signed pushes, one at a time per sending peer (receiver.ts). */
  readonly pushChecks: PerPeerQueue
  /** Where drops are logged, a few lines per peer at most (see receiver.ts's drop()). */
  readonly dropLog: DropLog
  /** Paces remote applies over the whole replica (see apply-all.ts). */
  readonly pacer: ApplyPacer
  /** Forked actors logged already, by collection, entity and actor (apply.ts): told once each (cleared past 1,000). */
  readonly forksTold: Set<string>
  /** History each peer may have read to judge its deltas, per minute (see apply.ts, HISTORY_READS_PER_MINUTE). */
  readonly historyReads: PeerBudget
  /** Where apply spans go (see tracing.ts). */
  readonly tracer: Tracer
  /** Durable changes: remote applies are emitted here; push listens for local ones. */
  readonly events: ChangeEvents
  /**
   * Creates (or fixes the backend of) a collection for a delta that applied cleanly to a fresh
   * document, and subscribes to it: provisional, held by that delta, undone if it is not taken
   * (see provisional.ts). Only the receive path calls it (see apply.ts).
   */
  createCollection(name: string, backend: Backend): { col: CollectionState; hold: CollectionHold }
  /** Holds a collection for a delta while it is applied, if the collection is still provisional. */
  holdCollection(name: string): CollectionHold
  isOpen(): boolean
  /** Collections this replica dropped and does not take from peers (see Replica.dropCollection). */
  readonly refused: ReadonlySet<string>
  /** Serves a peer's request for bounded-counter rights; resolves with the amount granted. */
  grantRights(collection: string, id: string, to: string, want: number): Promise<number>
  /** In a cluster: the guard of counters' signed rows for a collection (see row-guard.ts); undefined in development mode. */
  counterGuard(collection: string): SignedRows | undefined
  /** The cluster policy: who is a member, who may read and write what (everything while none is adopted). */
  readonly access: Access
  /** Subject keys and forget tombstones of personal fields (exchanged in every round). */
  readonly personal: SubjectKeys
  /** In a cluster (admins configured): signed heads, made, checked and relayed (heads.ts); undefined otherwise. */
  readonly heads: SignedHeads | undefined
}

/** The gossip topic of a collection within a namespace. */
export function topicOf(namespace: string, collection: string): string {
  return `/convergent/${namespace}/c/${collection}`
}
