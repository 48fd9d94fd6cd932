import { randomBytes } from 'node:crypto'
import { folderPeerId } from 'convergent'
import { openPair } from '../lib/node-pair.js'
import { median, round } from '../lib/stats.js'
import { waitFor } from '../lib/time.js'
import { tempDir } from '../lib/tmp.js'
import { alternate, overhead, spread } from '../lib/variants.js'
import type { ConvergentNode } from '../peers/convergent.js'
import { spec, type Workload } from './types.js'
import { timeLiveReplication } from './w2-live-replication.js'
import { timeLateJoiner } from './w3-late-joiner.js'

const OURS = ['convergent-yjs', 'convergent-automerge']
type Variant = 'plain' | 'cluster'
const VARIANTS: readonly Variant[] = ['plain', 'cluster']

/** A policy that allows what 'plain' allows: both nodes members, every collection read and written by every member. */
const policyFor = (a: string, b: string) => ({ roles: { all: [a, b] }, collections: { '*': { read: ['*'], write: ['*'] } } })

/**
 * TRUST — what the trust boundary costs: W2 (live, 1k) and W3 (late joiner, 1k) with no cluster
 * ('plain') and with open({ cluster: { key, admins } }) ('cluster': the same random 32-byte key
 * at both nodes, node A the admin; A signs a policy naming A and B — every collection readable
 * and writable by every member — before B opens, and W2 measures once B has adopted it; in W3 the
 * late B learns it within the timed catch-up), in one process, `rounds` times each, alternating
 * which goes first, every time on fresh nodes in fresh folders.
 *
 * What it measures is membership and policy checks, not signing: deltas carry no per-delta
 * signature yet (issue #13 item 3), so the issue's targets for signing (W1/W2 ≤ 15 %, W3 ≤ 20 %)
 * are not what this tests. The cluster key makes every connection a libp2p private network
 * (@libp2p/pnet: every byte XORed with XSalsa20, in JavaScript, on both sides, under Noise);
 * the policy adds a mayWrite/mayRead check per delta received and sent and a policy offer at the
 * start of every anti-entropy round (W3's catch-up is such a round). W1 (local writes, no
 * network) is not run: a policy needs a network, and a local write only adds one mayWrite check.
 *
 * The primary value is the overhead of 'cluster' against 'plain' from the medians (time added);
 * the details hold both medians, each variant's spread (max − min over the median) and the
 * process's CPU time per entity (both nodes, all threads, over the timed part), which other
 * processes on a shared machine disturb less than wall time.
 */
export const trust: Workload = {
  id: 'TRUST',
  title: 'TRUST trust-boundary overhead (plain / cluster)',
  plan({ mode, window }) {
    const rounds = mode === 'quick' ? 2 : 5
    const n = mode === 'quick' ? 200 : 1_000
    return ['W2-live', 'W3-catch-up'].flatMap((c) =>
      OURS.map((s) => spec('TRUST', c, s, n, { window, rounds }, 120_000 + (rounds + 1) * 2 * (15_000 + n * 60))),
    )
  },
  async run(s, log) {
    const window = s.params.window ?? 64
    const rounds = s.params.rounds ?? 5
    const cpu: Record<Variant, number[]> = { plain: [], cluster: [] }
    const samples = await alternate(
      VARIANTS,
      rounds,
      async (variant, round) => {
        const cpuSample = (cpuUs: number): void => {
          if (round >= 0) cpu[variant].push(cpuUs / s.n) // not the warm-up's
        }
        // B's folder is made (and its peer id known) before anything opens, in both variants alike.
        const [dirA, dirB] = [await tempDir(s.system), await tempDir(s.system)]
        const [idA, idB] = [await folderPeerId(dirA.dir), await folderPeerId(dirB.dir)]
        const cluster = variant === 'cluster' ? { key: randomBytes(32), admins: [idA] } : undefined
        const pair = await openPair(s.system, cluster ? { cluster } : undefined, dirA)
        let b: Awaited<ReturnType<typeof pair.openB>> | undefined
        try {
          if (cluster) await (pair.a.node as ConvergentNode).replica.policy.set(policyFor(idA, idB))
          if (s.case === 'W2-live') {
            b = await pair.openB(dirB)
            const replica = (b.node as ConvergentNode).replica
            if (cluster) await waitFor("B to adopt A's policy", () => replica.policy.get()?.version === 1, 60_000)
            const { ms, cpuUs } = await timeLiveReplication(pair, b, s.n, window, 120_000)
            cpuSample(cpuUs)
            return ms
          }
          const { ms, cpuUs } = await timeLateJoiner(
            pair,
            s.n,
            window,
            120_000,
            () => pair.openB(dirB),
            (joined) => (b = joined),
          )
          cpuSample(cpuUs)
          // The catch-up counted only if the policy was in force at B by the end of it.
          if (cluster) await waitFor("B to have adopted A's policy", () => (b!.node as ConvergentNode).replica.policy.get()?.version === 1, 10_000)
          return ms
        } finally {
          await pair.close(...(b ? [b] : []))
          await dirB.cleanup()
        }
      },
      log,
      { warmUp: true },
    )
    const cost = overhead(samples.plain, samples.cluster, 'lower')
    return {
      primary: { name: "overhead of 'cluster' vs 'plain' (medians)", value: cost.median, unit: '%', better: 'lower' },
      metrics: {
        rounds,
        'plain ms': Math.round(median(samples.plain)),
        'cluster ms': Math.round(median(samples.cluster)),
        'overhead % (best runs)': cost.best,
        'plain spread %': spread(samples.plain),
        'cluster spread %': spread(samples.cluster),
        'plain CPU µs/entity': round(median(cpu.plain), 1),
        'cluster CPU µs/entity': round(median(cpu.cluster), 1),
        'CPU overhead %': overhead(cpu.plain, cpu.cluster, 'lower').median,
      },
      notes: ['no per-delta signing yet: membership (pnet) and policy checks only, not the signing the issue #13 targets are for'],
    }
  },
}
