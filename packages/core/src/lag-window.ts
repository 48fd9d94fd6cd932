/**
 * Replication lag as status() reports it: the last 1,000 remote changes that carried their
 * origin's commit time (pushes; anti-entropy carries none), and the last one per origin peer.
 * Negative values (the origin's clock ahead of ours) count as 0, like the metric.
 */
export interface LagStatus {
  /** Samples in the window (at most 1,000). */
  samples: number
  p50Ms: number | null
  p99Ms: number | null
  maxMs: number | null
  /** The last sample from each peer heard from (at most 100, most recent first). */
  byPeer: { peer: string; lastMs: number; at: string }[]
}

const WINDOW = 1000
const MAX_PEERS = 100

export class LagWindow {
  private readonly ring = new Float64Array(WINDOW)
  private count = 0
  private next = 0
  /** Peer → last sample; re-inserted on each sample, so the oldest comes first. */
  private readonly last = new Map<string, { ms: number; at: number }>()

  add(peer: string, lagMs: number, now: number): void {
    const ms = Math.max(0, lagMs)
    this.ring[this.next] = ms
    this.next = (this.next + 1) % WINDOW
    this.count = Math.min(WINDOW, this.count + 1)
    this.last.delete(peer)
    this.last.set(peer, { ms, at: now })
    if (this.last.size > MAX_PEERS) this.last.delete(this.last.keys().next().value!)
  }

  status(): LagStatus {
    const sorted = Array.from(this.ring.subarray(0, this.count)).sort((a, b) => a - b)
    // Nearest rank: the smallest sample with at least q of them at or below it.
    const at = (q: number): number | null => (sorted.length === 0 ? null : sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!)
    return {
      samples: sorted.length,
      p50Ms: at(0.5),
      p99Ms: at(0.99),
      maxMs: sorted.length === 0 ? null : sorted[sorted.length - 1]!,
      byPeer: [...this.last].reverse().map(([peer, s]) => ({ peer, lastMs: s.ms, at: new Date(s.at).toISOString() })),
    }
  }
}
