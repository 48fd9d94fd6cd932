/**
 * A per-peer budget of signature checks in a time window: each check costs a public-key verify
 * (~0.15 ms for Ed25519, milliseconds for secp256k1), so a peer must not be able to make a
 * replica verify without end. At most `maxPeers` windows are kept (all forgotten when full: a
 * peer changing identities gets fresh budgets, not memory).
 */
export class VerifyBudget {
  private readonly windows = new Map<string, { start: number; count: number }>()

  constructor(
    private readonly perWindow: number,
    private readonly windowMs = 60_000,
    private readonly maxPeers = 1000,
  ) {}

  /** Whether `peer` has budget left now (counts nothing). */
  has(peer: string, now: number): boolean {
    const w = this.windows.get(peer)
    return w === undefined || now - w.start >= this.windowMs || w.count < this.perWindow
  }

  /** Counts one check against `peer`; true if it was within the budget. */
  take(peer: string, now: number): boolean {
    let w = this.windows.get(peer)
    if (w === undefined || now - w.start >= this.windowMs) {
      if (w === undefined && this.windows.size >= this.maxPeers) this.windows.clear()
      w = { start: now, count: 0 }
      this.windows.set(peer, w)
    }
    return ++w.count <= this.perWindow
  }
}
