/** Percentile by nearest rank (p in 0…100) of an unsorted sample. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!
}

export const median = (values: readonly number[]): number => percentile(values, 50)

export const round = (value: number, digits = 1): number => {
  const f = 10 ** digits
  return Math.round(value * f) / f
}

export const perSecond = (count: number, ms: number): number => (ms > 0 ? (count * 1000) / ms : NaN)

export const mb = (bytes: number): number => round(bytes / (1024 * 1024), 1)
