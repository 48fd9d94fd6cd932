import { REFUSAL_CODES, type RefusalCode } from './messages/reply.js'

/** Why an inbound message or delta was dropped. */
export type DropReason =
  | 'malformed' // garbage, truncated, wrong shape
  | 'unsupportedVersion' // wire format version we do not speak
  | 'tooLarge' // over maxMessageBytes / maxDeltaBytes
  | 'unknownBackend' // names a backend this replica does not have
  | 'backendMismatch' // a delta for a collection that uses another backend
  | 'invalidDelta' // well-formed envelope, delta the backend cannot apply
  | 'invalidId' // bad entity id or collection name
  | 'rateLimited' // over the per-peer inbound rate
  | 'storeFailed' // applying succeeded but persisting failed
  | 'collectionLimit' // a new collection while the replica holds maxCollections
  | 'collectionDropped' // a collection this replica dropped (dropCollection) and does not take back
  | 'overBudget' // a sync round over its budget of requests, bytes or time
  | 'forbidden' // the cluster policy does not let that peer write it (or this replica read it), or the peer is no member
  | 'badSignature' // a signed push whose signature or delta hashes do not verify, or an unsigned push where writes must be signed
  | 'forked' // a change of an actor at a seq where this replica holds another change of it: its writer forked the actor (equivocation)

/** Counters per remote peer, readable through replica.stats(). */
export interface PeerStats {
  messagesIn: number
  bytesIn: number
  messagesOut: number
  bytesOut: number
  deltasApplied: number
  /** Deltas that changed nothing (already had them). */
  deltasDuplicate: number
  syncRounds: number
  syncFailures: number
  /**
   * Entities that differed from this peer at the last round although neither side lacked a
   * change of the other (see RoundResult.entitiesUnrepairable).
   */
  divergentEntities: number
  dropped: Record<DropReason, number>
  /** This peer's Error replies to this replica's anti-entropy requests, by the code it gave ('unknown': none, or one not known here). */
  refusals: Record<RefusalCode, number>
  /** The last drop, for logs and debugging. */
  lastDrop?: { reason: DropReason; message: string }
}

export function emptyPeerStats(): PeerStats {
  return {
    messagesIn: 0,
    bytesIn: 0,
    messagesOut: 0,
    bytesOut: 0,
    deltasApplied: 0,
    deltasDuplicate: 0,
    syncRounds: 0,
    syncFailures: 0,
    divergentEntities: 0,
    dropped: {
      malformed: 0,
      unsupportedVersion: 0,
      tooLarge: 0,
      unknownBackend: 0,
      backendMismatch: 0,
      invalidDelta: 0,
      invalidId: 0,
      rateLimited: 0,
      storeFailed: 0,
      collectionLimit: 0,
      collectionDropped: 0,
      overBudget: 0,
      forbidden: 0,
      badSignature: 0,
      forked: 0,
    },
    refusals: Object.fromEntries(REFUSAL_CODES.map((code) => [code, 0])) as Record<RefusalCode, number>,
  }
}

/**
 * Per-peer counters for the peers heard from most recently: at most `maxPeers` (a peer that
 * keeps changing its identity cannot grow it without bound); the least recently heard from goes
 * first, and its drops still count in totalDropped().
 */
export class PeerStatsTable {
  /** In order of last use: the least recently heard from first. */
  private readonly peers = new Map<string, PeerStats>()
  /** Drops of the peers let go, by reason: totals never go down. */
  private readonly retiredDropped: Record<DropReason, number> = emptyPeerStats().dropped

  constructor(private readonly maxPeers = 1000) {}

  of(peer: string): PeerStats {
    let s = this.peers.get(peer)
    if (s !== undefined) {
      this.peers.delete(peer) // moved to the end: most recently used
    } else {
      s = emptyPeerStats()
      if (this.peers.size >= this.maxPeers) this.retireOldest()
    }
    this.peers.set(peer, s)
    return s
  }

  private retireOldest(): void {
    const oldest = this.peers.entries().next()
    if (oldest.done === true) return
    const [peer, stats] = oldest.value
    this.peers.delete(peer)
    for (const [reason, n] of Object.entries(stats.dropped) as [DropReason, number][]) this.retiredDropped[reason] += n
  }

  /** A deep copy, safe to hand to users. */
  snapshot(): Record<string, PeerStats> {
    return structuredClone(Object.fromEntries(this.peers))
  }

  /** Counts and remembers one dropped message or delta from a peer. */
  drop(peer: string, reason: DropReason, message: string): void {
    const stats = this.of(peer)
    stats.dropped[reason]++
    stats.lastDrop = { reason, message }
  }

  /** Everything dropped from every peer, by reason (the peers let go included). */
  droppedByReason(): Record<DropReason, number> {
    const totals = { ...this.retiredDropped }
    for (const s of this.peers.values()) for (const [reason, n] of Object.entries(s.dropped) as [DropReason, number][]) totals[reason] += n
    return totals
  }

  totalDropped(): number {
    let n = 0
    for (const v of Object.values(this.droppedByReason())) n += v
    return n
  }
}
