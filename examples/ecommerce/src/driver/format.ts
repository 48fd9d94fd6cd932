import type { OrderAttempt } from './workload.js'

/** Short human-readable renderings shared by the narration, the summary and the report. */

export function describeOutcomes(attempts: OrderAttempt[]): string {
  const parts: string[] = []
  for (const channel of ['web', 'store'] as const) {
    const mine = attempts.filter((a) => a.channel === channel)
    if (mine.length === 0) continue
    const acc = mine.filter((a) => a.outcome === 'accepted').length
    const unreachable = mine.filter((a) => a.reason === 'rights-unreachable').length
    const soldOut = mine.filter((a) => a.reason === 'sold-out').length
    const errors = mine.filter((a) => a.outcome === 'error').length
    const rej = [unreachable ? `${unreachable} rights out of reach` : '', soldOut ? `${soldOut} sold out` : '', errors ? `${errors} errors` : ''].filter(
      Boolean,
    )
    parts.push(`${channel}: ${mine.length} sent, ${acc} accepted${rej.length ? `, rejected: ${rej.join(', ')}` : ''}`)
  }
  return parts.join(' · ')
}

export function formatSkus(values: Record<string, number>): string {
  return Object.entries(values)
    .map(([sku, v]) => `${sku} ${v}`)
    .join(', ')
}

export function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}

export function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`
}
