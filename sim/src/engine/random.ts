/**
 * Seeded randomness. Everything random in a run (network, workload, faults, each node's
 * Clock.random) draws from its own sfc32 stream derived from the run seed and a label, so a
 * change in one part of the simulation does not shift the numbers another part sees.
 */
export class Prng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: number, label = '') {
    // splitmix32 spreads the 32-bit seed (mixed with the label's hash) over sfc32's state.
    let s = (seed ^ hashString(label)) >>> 0
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0
      let z = s
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      return (z ^ (z >>> 16)) >>> 0
    }
    this.a = next()
    this.b = next()
    this.c = next()
    this.d = next()
    for (let i = 0; i < 12; i++) this.nextUint32() // discard the warm-up outputs
  }

  /** A new independent stream for `label` (e.g. 'node-7'), from this stream's next output. */
  fork(label: string): Prng {
    return new Prng(this.nextUint32(), label)
  }

  /** sfc32: small, fast, passes PractRand to 2^42 — plenty for a simulator. */
  nextUint32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0
    this.d = (this.d + 1) >>> 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) >>> 0
    this.c = (this.c << 21) | (this.c >>> 11)
    this.c = (this.c + t) >>> 0
    return t
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n)
  }

  uniform(min: number, max: number): number {
    return min + (max - min) * this.next()
  }

  chance(p: number): boolean {
    return p > 0 && this.next() < p
  }

  /** Standard normal (Box–Muller; one draw per call keeps the stream position simple). */
  normal(): number {
    const u = 1 - this.next() // (0, 1]
    const v = this.next()
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
  }

  /** Exponential with the given mean (Poisson inter-arrival times). */
  exponential(mean: number): number {
    return -Math.log(1 - this.next()) * mean
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list')
    return items[this.int(items.length)]!
  }

  /** k distinct items chosen uniformly (all of them if k ≥ length), in random order. */
  sample<T>(items: readonly T[], k: number): T[] {
    const copy = items.slice()
    const n = Math.min(k, copy.length)
    for (let i = 0; i < n; i++) {
      const j = i + this.int(copy.length - i)
      const t = copy[i]!
      copy[i] = copy[j]!
      copy[j] = t
    }
    return copy.slice(0, n)
  }

  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1)
      const t = items[i]!
      items[i] = items[j]!
      items[j] = t
    }
    return items
  }
}

/** FNV-1a, 32 bits. */
export function hashString(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** Samples indices 0…n-1 with P(i) ∝ 1/(i+1)^s (s = 0 is uniform). */
export class ZipfSampler {
  private readonly cdf: Float64Array

  constructor(
    readonly n: number,
    readonly s: number,
  ) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`zipf needs n ≥ 1, got ${n}`)
    this.cdf = new Float64Array(n)
    let total = 0
    for (let i = 0; i < n; i++) {
      total += 1 / Math.pow(i + 1, s)
      this.cdf[i] = total
    }
    for (let i = 0; i < n; i++) this.cdf[i]! /= total
  }

  sample(rng: Prng): number {
    const u = rng.next()
    let lo = 0
    let hi = this.n - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.cdf[mid]! > u) hi = mid
      else lo = mid + 1
    }
    return lo
  }
}
