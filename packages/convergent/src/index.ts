export * from './open.js'
export {
  Replica,
  Collection,
  ConvergentError,
  isConvergentError,
  type ChangeEvent,
  type ChangeListener,
  type ErrorCode,
  type FeedEntry,
  type JsonObject,
  type JsonValue,
  type ReplicaStats,
  type PeerStats,
  type RoundResult,
  type Logger,
  type Clock,
  silentLogger,
  consoleLogger,
} from '@convergent/core'
export { yjsBackend } from '@convergent/yjs'
export { automergeBackend } from '@convergent/automerge'
