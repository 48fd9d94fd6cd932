/** Summary of a sample of numbers (nearest-rank percentiles). */
export interface Summary {
  count: number
  mean: number | null
  median: number | null
  p90: number | null
  p99: number | null
  max: number | null
}

export function summarize(values: number[]): Summary {
  if (values.length === 0) return { count: 0, mean: null, median: null, p90: null, p99: null, max: null }
  const sorted = Float64Array.from(values).sort()
  const rank = (q: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
  let sum = 0
  for (const v of sorted) sum += v
  return {
    count: sorted.length,
    mean: round(sum / sorted.length),
    median: round(rank(0.5)),
    p90: round(rank(0.9)),
    p99: round(rank(0.99)),
    max: round(sorted[sorted.length - 1]!),
  }
}

export function round(v: number, digits = 2): number {
  const f = 10 ** digits
  return Math.round(v * f) / f
}
