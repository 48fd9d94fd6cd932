/**
 * @packageDocumentation
 * Convergent for applications: `open()` wires a {@link Replica} with the defaults — a LevelDB
 * store in `dir`, the Yjs and Automerge backends, a libp2p node on 127.0.0.1 — and re-exports
 * what an application uses. `open({ cluster: { key } })` keeps processes without the cluster
 * key from connecting; {@link generateClusterKey} makes a key. Every replica open() returns has
 * a Prometheus registry (`replica.metrics`); {@link serve} exposes it with health checks over HTTP. The `convergent` CLI (bin)
 * inspects a data folder and makes cluster keys. {@link pseudonym} derives keyed pseudonyms for
 * natural keys (an email as an entity id) so that ids carry no personal data.
 */
export * from './open.js'
export { generateClusterKey, folderPeerId, type ClusterOptions, type NetworkClusterOptions } from './cluster.js'
export { pseudonym, PSEUDONYM_LENGTH, type PseudonymOptions } from './pseudonym.js'
export { dumpCollection, type DumpedRecord } from './dump.js'
export { serve, type ServeOptions, type Served } from './serve.js'
export { defaultLogger, type LogLevel } from './log.js'
export { createMetrics, OTHER_COLLECTIONS, type MetricsOptions } from './metrics.js'
export {
  Replica,
  Collection,
  ConvergentError,
  isConvergentError,
  AckTimeoutError,
  type AckOptions,
  type WriteOptions,
  type ChangeEvent,
  type ChangeListener,
  type ErrorCode,
  type FeedEntry,
  type JsonObject,
  type JsonValue,
  type ReplicaStats,
  type Policy,
  type PolicyDocument,
  type CollectionRule,
  type PolicyApi,
  type PeerStats,
  type RoundResult,
  type ReplicaStatus,
  type LastRoundStatus,
  type ReplicaObserver,
  type ObservedChange,
  type StoreBatchEvent,
  type RoundEvent,
  type Logger,
  type LogFields,
  type FieldsFirstLogger,
  type Clock,
  type Network,
  type Backend,
  type Store,
  Counter,
  type CounterOptions,
  type DecrementOptions,
  silentLogger,
  consoleLogger,
} from '@convergent/core'
export { yjsBackend } from '@convergent/yjs'
export { automergeBackend } from '@convergent/automerge'
export { createLibp2pNetwork, Libp2pNetwork, type Libp2pNetworkOptions } from '@convergent/libp2p'
