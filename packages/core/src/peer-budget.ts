/**
 * A per-peer budget of costly work in a time window: signature checks (each a public-key
 * verify, ~0.15 ms for Ed25519, milliseconds for secp256k1), history read to judge a delta
 * (replication/apply.ts) — so that no peer can make a replica work without end. At most
 * `maxPeers` windows are kept (all forgotten when full: a peer changing identities gets fresh
 * budgets, not memory).
 *
 * With `owing`, what a peer spent past its window (work done: one read of history cannot be cut
 * short, it may go far past what was left) is owed: paid off at `perWindow` a window before the
 * peer has any again, so that over time no peer spends more than `perWindow` a window (without
 * it, counts past the budget are attempts refused, not work, and are forgotten with the
 * window: signature checks, taken one at a time). A clock set back (before a window's start)
 * starts a new window, rather than keeping the old one until the clock catches up.
 */
export class PeerBudget {
  private readonly windows = new Map<string, { start: number; count: number }>()

  constructor(
    private readonly perWindow: number,
    private readonly windowMs = 60_000,
    private readonly maxPeers = 1000,
    private readonly owing = false,
  ) {}

  /** Whether `peer` has budget left now (counts nothing). */
  has(peer: string, now: number): boolean {
    return this.left(peer, now) > 0
  }

  /** What `peer` may still spend in this window (counts nothing). */
  left(peer: string, now: number): number {
    const w = this.windows.get(peer)
    return w === undefined ? this.perWindow : Math.max(0, this.perWindow - this.spent(w, now))
  }

  /** Counts `amount` (default one) against `peer`; true if it was within the budget. */
  take(peer: string, now: number, amount = 1): boolean {
    let w = this.windows.get(peer)
    if (w === undefined || now < w.start || now - w.start >= this.windowMs) {
      const owed = w === undefined ? 0 : this.spent(w, now)
      if (w === undefined && this.windows.size >= this.maxPeers) this.windows.clear()
      w = { start: now, count: owed }
      this.windows.set(peer, w)
    }
    w.count += amount
    return w.count <= this.perWindow
  }

  /**
   * Gives back `amount` taken from `peer` at `takenAt` (never below nothing in its window): work
   * it was charged for and is not its to pay. Not from a window begun since (a new minute, or the
   * windows cleared): that one did not count it, and giving it back there would lengthen it.
   */
  refund(peer: string, amount: number, takenAt?: number): void {
    const w = this.windows.get(peer)
    if (w === undefined || (takenAt !== undefined && takenAt < w.start)) return
    w.count = Math.max(0, w.count - amount)
  }

  /** What counts against the peer at `now`: the window's count, less `perWindow` for each whole window since it began. */
  private spent(w: { start: number; count: number }, now: number): number {
    if (now < w.start) return 0 // the clock was set back
    const windows = Math.floor((now - w.start) / this.windowMs)
    if (windows === 0) return w.count
    return this.owing ? Math.max(0, w.count - windows * this.perWindow) : 0
  }
}
