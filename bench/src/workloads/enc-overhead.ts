import { openNode, openPair } from '../lib/node-pair.js'
import { median, perSecond, round } from '../lib/stats.js'
import { alternate, overhead, spread } from '../lib/variants.js'
import { spec, type Workload } from './types.js'
import { timeLocalWrites } from './w1-local-writes.js'
import { timeLiveReplication } from './w2-live-replication.js'

const OURS = ['convergent-yjs', 'convergent-automerge']
type Variant = 'plain' | 'encrypted'
const VARIANTS: readonly Variant[] = ['plain', 'encrypted']

/**
 * ENC — what encryption at rest costs: W1 (distinct, hot) and W2 (live, 1k) with
 * open({ encryption: { key } }) off and on (a random key; W2: at both nodes), in one process,
 * `rounds` times each, alternating which goes first, every time on fresh nodes in fresh folders.
 * The primary value is the overhead of 'encrypted' against 'plain' from the medians (issue #14:
 * ≤ 10 %). Each case also reports the process's CPU time per write (all its threads; for W2 both
 * nodes, which run in this process), which other processes on a shared machine disturb less
 * than wall time. Read the spread (max − min over the
 * median) before reading a few percent.
 */
export const enc: Workload = {
  id: 'ENC',
  title: 'ENC encryption-at-rest overhead (plain / encrypted)',
  plan({ mode, window }) {
    const rounds = mode === 'quick' ? 2 : 5
    const w1n = mode === 'quick' ? 200 : 10_000
    // A hot write costs ~25 µs of CPU: 10k of them last a quarter of a second, too short to tell
    // 10 % apart on a shared machine. 50k last over a second.
    const hotN = mode === 'quick' ? 200 : 50_000
    // W2 likewise: 1k writes replicate in ~150 ms, and its rounds spread by 100–200 %.
    const w2n = mode === 'quick' ? 200 : 5_000
    const warmUp = mode === 'quick' ? 50 : 200
    return [
      ...(
        [
          ['W1-distinct', w1n],
          ['W1-hot', hotN],
        ] as const
      ).flatMap(([c, n]) => OURS.map((s) => spec('ENC', c, s, n, { window, warmUp, rounds }, 120_000 + rounds * 2 * n * 20))),
      ...OURS.map((s) => spec('ENC', 'W2-live', s, w2n, { window, rounds }, 120_000 + rounds * 2 * (10_000 + w2n * 60))),
    ]
  },
  async run(s, log) {
    const window = s.params.window ?? 64
    const rounds = s.params.rounds ?? 5
    const w1 = s.case.startsWith('W1-')
    const cpu: Record<Variant, number[]> = { plain: [], encrypted: [] }
    const samples = await alternate(
      VARIANTS,
      rounds,
      async (variant) => {
        const encryption = variant === 'encrypted'
        if (w1) {
          const { node, close } = await openNode(s.system, { tuning: { network: false, durability: 'process', encryption } })
          try {
            const before = process.cpuUsage()
            const { ms } = await timeLocalWrites(node, s.case === 'W1-distinct' ? 'distinct' : 'hot', s.n, window, s.params.warmUp ?? 200)
            const used = process.cpuUsage(before)
            // Warm-up writes included: 2 × warmUp more writes than timed, under the same CPU clock.
            cpu[variant].push((used.user + used.system) / (s.n + 2 * (s.params.warmUp ?? 200)))
            return perSecond(s.n, ms)
          } finally {
            await close()
          }
        }
        const pair = await openPair(s.system, { encryption })
        const b = await pair.openB()
        try {
          // Both nodes run in this process: its CPU time covers the write and the replica's apply.
          const before = process.cpuUsage()
          const { ms } = await timeLiveReplication(pair, b, s.n, window, 120_000)
          const used = process.cpuUsage(before)
          cpu[variant].push((used.user + used.system) / s.n)
          return ms
        } finally {
          await pair.close(b)
        }
      },
      log,
    )
    const m = { plain: median(samples.plain), encrypted: median(samples.encrypted) }
    // Overhead as extra cost: throughput lost (W1) or time added (W2), in percent of 'plain'.
    const cost = overhead(samples.plain, samples.encrypted, w1 ? 'higher' : 'lower')
    const unit = w1 ? 'ops/s' : 'ms'
    const cpuMetrics: Record<string, number> = {
      'plain CPU µs/write': round(median(cpu.plain), 1),
      'encrypted CPU µs/write': round(median(cpu.encrypted), 1),
      'CPU overhead %': overhead(cpu.plain, cpu.encrypted, 'lower').median,
    }
    return {
      primary: { name: "overhead of 'encrypted' vs 'plain' (medians)", value: cost.median, unit: '%', better: 'lower' },
      metrics: {
        rounds,
        [`plain ${unit}`]: Math.round(m.plain),
        [`encrypted ${unit}`]: Math.round(m.encrypted),
        'overhead % (best runs)': cost.best,
        'plain spread %': spread(samples.plain),
        'encrypted spread %': spread(samples.encrypted),
        ...cpuMetrics,
      },
    }
  },
}
