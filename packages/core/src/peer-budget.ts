/**
 * A per-peer budget of costly work in a time window: signature checks (each a public-key
 * verify, ~0.15 ms for Ed25519, milliseconds for secp256k1), history read to judge a delta
 * (replication/apply.ts) — so that no peer can make a replica work without end. At most
 * `maxPeers` windows are kept (all forgotten when full: a peer changing identities gets fresh
 * budgets, not memory).
 */
export class PeerBudget {
  private readonly windows = new Map<string, { start: number; count: number }>()

  constructor(
    private readonly perWindow: number,
    private readonly windowMs = 60_000,
    private readonly maxPeers = 1000,
  ) {}

  /** Whether `peer` has budget left now (counts nothing). */
  has(peer: string, now: number): boolean {
    return this.left(peer, now) > 0
  }

  /** What `peer` may still spend in this window (counts nothing). */
  left(peer: string, now: number): number {
    const w = this.windows.get(peer)
    return w === undefined || now - w.start >= this.windowMs ? this.perWindow : Math.max(0, this.perWindow - w.count)
  }

  /** Counts `amount` (default one) against `peer`; true if it was within the budget. */
  take(peer: string, now: number, amount = 1): boolean {
    let w = this.windows.get(peer)
    if (w === undefined || now - w.start >= this.windowMs) {
      if (w === undefined && this.windows.size >= this.maxPeers) this.windows.clear()
      w = { start: now, count: 0 }
      this.windows.set(peer, w)
    }
    w.count += amount
    return w.count <= this.perWindow
  }
}
