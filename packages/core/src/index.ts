/**
 * @packageDocumentation
 * Convergent's core: {@link Replica}, {@link Collection} and {@link Counter} over the three
 * narrow interfaces every implementation plugs into — {@link Backend} (a CRDT: @convergent/yjs,
 * @convergent/automerge), {@link Store} (durability: @convergent/level) and {@link Network}
 * (transport: @convergent/libp2p, {@link LoopbackHub}) — plus replication (push and
 * anti-entropy). No I/O of its own. Applications usually start from the `convergent` package's
 * `open()`; implementers of a Backend, Store or Network run the compliance suites in
 * `@convergent/core/testing`. Internals used by the simulator and benchmarks are in
 * `@convergent/core/internal` and may change without notice.
 */

// The replica and what applications hold.
export { Replica, type ReplicaOptions, type ReplicaStats, type AuthorStats, type PolicyApi } from './replica.js'
export type { EntitySize } from './entity-size.js'
export type { Policy, PolicyDocument, CollectionRule } from './trust/policy.js'
export type { TrustOptions } from './trust/access.js'
export { Collection, type ChangeEvent, type ChangeListener, type ChangeEntry } from './collection.js'
export type { PersonalCipher, PersonalOptions } from './personal/subject-keys.js'
export { DEFAULT_READ_AUDIT, type ReadAuditEntry, type ReadAuditOptions, type ReadOptions, type ReadVia } from './personal/read-audit.js'
export { MAX_ACK_TIMEOUT_MS, type AckOptions, type WriteOptions } from './write-options.js'
export { AckTimeoutError } from './replication/acks.js'
export { Counter, type CounterOptions, type CounterState, type DecrementOptions } from './counter.js'
export { DEFAULT_REPLICATION_LIMITS, type ReplicationLimits } from './replication/context.js'
export type { PeerStats, DropReason } from './replication/peer-stats.js'
export type { RoundResult } from './replication/sync-client.js'
export type { RefusalCode } from './replication/messages/reply.js'
export type { ReplicaObserver, ObservedChange, StoreBatchEvent, PersonalReadEvent, RoundEvent, ReplicaStatus, LastRoundStatus } from './observe.js'
export type { LagStatus } from './lag-window.js'

// Errors, values, time, logs.
export {
  ConvergentError,
  corruptRecordOwner,
  ForkedActorError,
  RefusedChangeError,
  isConvergentError,
  wrapError,
  StoreCorruptError,
  type ErrorCode,
  type CorruptRecord,
} from './errors.js'
export { DEFAULT_VALUE_LIMITS, commonEnds, type JsonObject, type JsonPrimitive, type JsonValue, type ValueLimits } from './json.js'
export { systemClock, jittered, type Clock, type TimerHandle } from './clock.js'
export { consoleLogger, silentLogger, type Logger, type LogFields } from './logger.js'
export { toLogger, type FieldsFirstLogger } from './log-adapter.js'

// The interfaces implementations plug into, and what implementing them needs.
export type { Backend, BackendHistory, Change, ChangeMeta, DeltaLimits, DeltaWork } from './backend.js'
export { beforeTouching, documentUntouched } from './backend.js'
export type { Store, StoreOp, StoredEntity, EntityHead, FeedEntry, CollectionMeta } from './store.js'
export type { Network, NetworkEvents } from './network.js'
export { LoopbackHub, type LoopbackHubOptions } from './loopback.js'
export { leafOf, LEAF_COUNT } from './digest.js'
export { sha256, toHex, fromHex, bytesEqual, concatBytes } from './hash.js'
/** XChaCha20-Poly1305 (libsodium) as Convergent seals records at rest: for Store implementations. */
export { aeadSeal, aeadOpen, deriveAeadKey, NoncePool, AEAD_KEY_BYTES, AEAD_NONCE_BYTES, AEAD_TAG_BYTES } from './aead.js'
