import type { LagStatus } from './lag-window.js'
import type { RoundEvent } from './replication/replicator.js'

export type { RoundEvent } from './replication/replicator.js'

/** A change that became durable on this replica, as observers see it (see Replica.observe). */
export interface ObservedChange {
  readonly collection: string
  readonly id: string
  /** The peer the change came from; undefined for a local write. */
  readonly peer: string | undefined
  /**
   * For a peer's change that came by push: ms from its commit at the origin (the origin's
   * clock) until durable here (this replica's clock) — replication lag. Skewed clocks shift it,
   * and it is negative when the origin's clock is ahead. Undefined for local writes and for
   * changes anti-entropy brought (they carry no commit time).
   */
  readonly lagMs?: number
}

/** One store write of the write path: the commits of one tick (see Entities.commit). */
export interface StoreBatchEvent {
  /** From handing the batch to Store.write until it settled (ms; includes the store's group-commit wait). */
  ms: number
  /** Store ops in it. */
  ops: number
  ok: boolean
}

/** A read that handed opened personal fields to the application (see Replica.observe). */
export interface PersonalReadEvent {
  readonly collection: string
  readonly id: string
  /** How: get(), entries(), update()'s draft or a subscribe() event. */
  readonly via: 'get' | 'entries' | 'update' | 'subscribe'
  /** How many personal fields were opened (≥ 1). */
  readonly fields: number
  /** Whether the collection records it in the read audit (personal.auditReads). */
  readonly audited: boolean
}

/**
 * What a replica tells observers (metrics, health checks). Every hook is optional and called
 * synchronously where the thing happens, so keep it cheap: count, do not do I/O. A hook that
 * throws is logged and changes nothing else. Hooks nobody listens to cost nothing (a store
 * batch is only timed while some observer has `storeBatch`).
 */
export interface ReplicaObserver {
  /** A change became durable: a local write, or a peer's delta persisted here. */
  change?(change: ObservedChange): void
  /** An anti-entropy round ended (see RoundEvent). */
  round?(round: RoundEvent): void
  /** A batch of the write path reached the store (or failed to). */
  storeBatch?(batch: StoreBatchEvent): void
  /**
   * A value went to the application with personal fields opened (audited or not): one call per
   * value read (a subscribe event told to several listeners counts once).
   */
  personalRead?(read: PersonalReadEvent): void
}

/** What replica.status() returns about the last round with a connected peer. */
export interface LastRoundStatus {
  /** When it began (ISO 8601, the replica's clock). */
  at: string
  /** 'us': this replica started it; 'peer': the peer's round found both sides equal at once. */
  startedBy: 'us' | 'peer'
  /** It ended without an error and without a collection failing. */
  ok: boolean
  durationMs: number
  entitiesDiffering: number
  /** Entities that differ although neither side lacks a change of the other (RoundResult.entitiesUnrepairable). */
  divergent: number
  deltasReceived: number
  deltasSent: number
  /** Collections whose part of the round failed. */
  failedCollections: number
  error?: string
}

/** replica.status(): what an operator (or GET /status) wants to know, as plain JSON. */
export interface ReplicaStatus {
  peerId: string
  namespace: string
  closed: boolean
  /**
   * Readiness (GET /readyz): true once an anti-entropy round with a peer since open found
   * nothing missing here — or at once without a network or without bootstrap peers. Once
   * true it stays true until close. `reason` says why (not) and `since` when it became ready.
   */
  ready: { ready: boolean; reason: string; since?: string }
  /** How many bootstrap peers the network was given. */
  bootstrapPeers: number
  /** Connected peers, each with its last round (null before one ended since it connected). */
  peers: { id: string; lastRound: LastRoundStatus | null }[]
  /** How many collections this replica holds; `collections` lists the first 1,000 by name. */
  collectionCount: number
  /** Each with its backend and its change-feed position (changes recorded here). */
  collections: { name: string; backend: string; changes: number }[]
  /** Entities whose latest write is not durable yet. */
  pendingWrites: number
  /** Damage the store showed (as in stats()). */
  store: { corruptRecords: number; damage: string[] }
  /**
   * Replication lag of remote changes that carried their origin's commit time (gossip; changes
   * anti-entropy brings carry none): origin commit → durable here, across two clocks.
   */
  lag: LagStatus
}

export function lastRoundStatus(event: RoundEvent): LastRoundStatus {
  const r = event.result
  return {
    at: new Date(event.at).toISOString(),
    startedBy: event.startedBy,
    ok: event.error === undefined && (r?.failed.length ?? 0) === 0,
    durationMs: Math.round(event.ms * 1000) / 1000,
    entitiesDiffering: r?.entitiesDiffering ?? 0,
    divergent: r?.entitiesUnrepairable ?? 0,
    deltasReceived: r?.deltasReceived ?? 0,
    deltasSent: r?.deltasSent ?? 0,
    failedCollections: r?.failed.length ?? 0,
    ...(event.error !== undefined ? { error: event.error.message } : {}),
  }
}

/** Whether a round shows this replica lacked nothing of the peer's: what readiness waits for. */
export function foundNothingMissing(event: RoundEvent): boolean {
  if (event.startedBy === 'peer') return true
  return event.error === undefined && event.result !== undefined && event.result.failed.length === 0 && event.result.deltasApplied === 0
}
