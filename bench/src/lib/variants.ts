import { median, round } from './stats.js'

/** The variants in round `r`: rotated, so none always runs first (or last) in the process. */
export function rotation<V>(variants: readonly V[], r: number): V[] {
  return variants.map((_, i) => variants[(i + r) % variants.length]!)
}

/**
 * The round loop of the overhead workloads (OBS, ENC, TRUST): every variant measured `rounds`
 * times in one process, in rotating order (two variants: alternating which goes first), each
 * time by `measure(variant, round)`, which returns one sample (ops/s or ms) and runs on fresh nodes. Logs a
 * line per round with each variant's sample. `warmUp`: first one untimed run of each variant,
 * so the process's first run (JIT, WASM, first sockets) is not always the first variant's
 * (their round is −1).
 */
export async function alternate<V extends string>(
  variants: readonly V[],
  rounds: number,
  measure: (variant: V, round: number) => Promise<number>,
  log: (message: string) => void,
  { warmUp = false }: { warmUp?: boolean } = {},
): Promise<Record<V, number[]>> {
  if (warmUp) {
    const untimed: string[] = []
    for (const variant of variants) untimed.push(`${variant} ${Math.round(await measure(variant, -1))}`)
    log(`warm-up (not counted): ${untimed.join(', ')}`)
  }
  const samples = Object.fromEntries(variants.map((v) => [v, [] as number[]])) as Record<V, number[]>
  for (let r = 0; r < rounds; r++) {
    for (const variant of rotation(variants, r)) samples[variant].push(await measure(variant, r))
    log(`round ${r + 1}/${rounds}: ${variants.map((v) => `${v} ${Math.round(samples[v].at(-1)!)}`).join(', ')}`)
  }
  return samples
}

/**
 * What `variant` costs over `base`, in percent of `base`: throughput lost (better 'higher':
 * ops/s) or time or CPU added (better 'lower'), from the medians — and from each side's best
 * run (the one other processes on a shared machine disturbed least).
 */
export function overhead(base: readonly number[], variant: readonly number[], better: 'higher' | 'lower'): { median: number; best: number } {
  const cost = (b: number, v: number): number => round(better === 'higher' ? (b / v - 1) * 100 : (v / b - 1) * 100, 1)
  const best = (s: readonly number[]): number => (better === 'higher' ? Math.max(...s) : Math.min(...s))
  return { median: cost(median(base), median(variant)), best: cost(best(base), best(variant)) }
}

/** max − min over the median, in percent: read it before reading an overhead of a few percent. */
export function spread(samples: readonly number[]): number {
  return round(((Math.max(...samples) - Math.min(...samples)) / median(samples)) * 100, 1)
}
