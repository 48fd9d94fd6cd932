import type { LatencySpec, LinkParams } from '../run/scenario.js'
import type { Prng } from '../engine/random.js'

/** Per direction of a link: the time its "wire" is busy until, and the last in-order arrival. */
interface LinkState {
  busyUntil: number
  lastArrival: number
}

/**
 * The per-link model: latency from a distribution, serialisation delay under a bandwidth cap
 * (frames queue behind each other), loss, duplication and reordering. Without reordering a
 * direction of a link is FIFO, as a TCP connection is.
 */
export class LinkModel {
  private readonly links = new Map<number, LinkState>()

  constructor(
    public params: LinkParams,
    private readonly rng: Prng,
  ) {}

  /** A second arrival of the last planned frame (a duplicate), or NaN. */
  duplicateAt = NaN
  /** Transmissions the last planned reliable frame lost and resent. */
  retransmits = 0

  /**
   * When a frame sent now arrives (virtual ms), or NaN if it is lost. Gossip frames may be
   * lost, duplicated (see duplicateAt) or reordered. Reliable frames (requests, responses):
   * a loss costs a retransmission timeout instead (doubling from retransmitMs), unless
   * dropReliable is set. Returns numbers, not objects: this runs for every frame.
   */
  plan(now: number, dirKey: number, bytes: number, reliable: boolean, retransmitMs: number, dropReliable: boolean): number {
    const p = this.params
    const link = this.link(dirKey)
    const start = Math.max(now, link.busyUntil)
    const wire = p.bandwidthBytesPerSec === null ? 0 : (bytes / p.bandwidthBytesPerSec) * 1000
    link.busyUntil = start + wire
    let departure = link.busyUntil
    this.duplicateAt = NaN
    this.retransmits = 0
    if (reliable) {
      if (dropReliable && this.rng.chance(p.loss)) return NaN
      let rto = retransmitMs
      while (!dropReliable && this.rng.chance(p.loss) && this.retransmits < 12) {
        departure += rto
        rto *= 2
        this.retransmits++
      }
      const arrival = Math.max(departure + this.latency(p.latency), link.lastArrival)
      link.lastArrival = arrival
      return arrival
    }
    if (this.rng.chance(p.loss)) return NaN
    let arrival = departure + this.latency(p.latency)
    if (this.rng.chance(p.reorder)) {
      arrival += this.rng.uniform(0, p.reorderDelayMs) // held back: later frames may overtake it
    } else {
      arrival = Math.max(arrival, link.lastArrival)
      link.lastArrival = arrival
    }
    if (this.rng.chance(p.duplicate)) this.duplicateAt = arrival + this.rng.uniform(0, p.reorderDelayMs)
    return arrival
  }

  /** Forgets a direction's queue (its connection closed). */
  reset(dirKey: number): void {
    this.links.delete(dirKey)
  }

  latency(spec: LatencySpec): number {
    switch (spec.kind) {
      case 'constant':
        return spec.ms
      case 'uniform':
        return this.rng.uniform(spec.minMs, spec.maxMs)
      case 'normal':
        return Math.max(spec.minMs ?? 0, spec.meanMs + spec.stddevMs * this.rng.normal())
      case 'lognormal':
        return Math.max(spec.minMs ?? 0, spec.medianMs * Math.exp(spec.sigma * this.rng.normal()))
    }
  }

  private link(key: number): LinkState {
    let l = this.links.get(key)
    if (l === undefined) {
      l = { busyUntil: 0, lastArrival: 0 }
      this.links.set(key, l)
    }
    return l
  }
}
