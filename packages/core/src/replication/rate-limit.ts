import type { Clock } from '../clock.js'

/**
 * A token bucket per peer: `ratePerSecond` inbound messages sustained, bursts up to `burst`.
 * Messages over the bound are dropped (and counted), so one noisy peer cannot flood a node.
 */
export class PeerRateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>()

  constructor(
    private readonly clock: Clock,
    private readonly ratePerSecond: number,
    private readonly burst: number,
  ) {}

  /** Takes one token for the peer; false if it has none left. */
  take(peer: string): boolean {
    if (!Number.isFinite(this.ratePerSecond)) return true
    const now = this.clock.now()
    let b = this.buckets.get(peer)
    if (b === undefined) {
      b = { tokens: this.burst, at: now }
      this.buckets.set(peer, b)
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.ratePerSecond)
    b.at = now
    if (b.tokens < 1) return false
    b.tokens -= 1
    return true
  }

  forget(peer: string): void {
    this.buckets.delete(peer)
  }
}
