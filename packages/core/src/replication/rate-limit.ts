import type { Clock } from '../clock.js'
import type { ReplicationLimits } from './context.js'

/** One token bucket: `rate` per second sustained, bursts up to `burst`. */
class Bucket {
  private tokens: number
  private at: number

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst
    this.at = now
  }

  take(n: number, now: number): boolean {
    if (!Number.isFinite(this.rate)) return true
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.rate)
    this.at = now
    if (this.tokens < n) return false
    this.tokens -= n
    return true
  }

  /** Whether it has refilled to its burst by `now` (a new bucket would be the same). */
  full(now: number): boolean {
    return !Number.isFinite(this.rate) || this.tokens + ((now - this.at) / 1000) * this.rate >= this.burst
  }
}

interface Buckets {
  messages: Bucket
  bytes: Bucket
  entries: Bucket
}

function fullAt(b: Buckets, now: number): boolean {
  return b.messages.full(now) && b.bytes.full(now) && b.entries.full(now)
}

/** Peers that left with spent buckets, remembered at most (the oldest are let go first). */
const MAX_GONE_PEERS = 10_000

export type RateLimits = Pick<
  ReplicationLimits,
  'inboundRatePerSecond' | 'inboundBurst' | 'inboundEntriesPerSecond' | 'inboundEntriesBurst' | 'inboundBytesPerSecond' | 'inboundBytesBurst'
>

/**
 * Token buckets per peer for what it sends us: messages, bytes, and entries (deltas, ids) —
 * a message of 380,000 entries costs as much as 380,000 messages of one. Input over the bound
 * is dropped (and counted), so one noisy peer cannot flood a node.
 */
export class PeerRateLimiter {
  private readonly peers = new Map<string, Buckets>()
  /** Peers that went away with buckets not yet refilled, the earliest gone first. */
  private readonly gone = new Set<string>()

  constructor(
    private readonly clock: Clock,
    private readonly limits: RateLimits,
  ) {}

  /** Takes one message of `bytes` for the peer; false if it is over its bounds. */
  take(peer: string, bytes = 0): boolean {
    const b = this.of(peer)
    const now = this.clock.now()
    return b.messages.take(1, now) && b.bytes.take(bytes, now)
  }

  /** Takes `n` entries for the peer; false if it is over its bound. */
  takeEntries(peer: string, n: number): boolean {
    return this.of(peer).entries.take(n, this.clock.now())
  }

  /**
   * A peer went away. Its buckets stay until they have refilled — a peer that reconnects does
   * not get a fresh burst — and the peers kept after they left are bounded (oldest first).
   */
  forget(peer: string): void {
    const now = this.clock.now()
    if (this.peers.has(peer)) {
      this.gone.delete(peer)
      this.gone.add(peer) // the most recent last
    }
    for (const p of this.gone) {
      const b = this.peers.get(p)
      if (b === undefined || fullAt(b, now) || this.gone.size > MAX_GONE_PEERS) {
        this.peers.delete(p)
        this.gone.delete(p)
      }
    }
  }

  private of(peer: string): Buckets {
    this.gone.delete(peer) // back
    let b = this.peers.get(peer)
    if (b === undefined) {
      const now = this.clock.now()
      const l = this.limits
      b = {
        messages: new Bucket(l.inboundRatePerSecond, l.inboundBurst, now),
        bytes: new Bucket(l.inboundBytesPerSecond, l.inboundBytesBurst, now),
        entries: new Bucket(l.inboundEntriesPerSecond, l.inboundEntriesBurst, now),
      }
      this.peers.set(peer, b)
    }
    return b
  }
}
