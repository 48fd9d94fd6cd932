import { deltaBytes } from '../lib/delta-bytes.js'
import { openPair } from '../lib/node-pair.js'
import { perSecond, round } from '../lib/stats.js'
import { inWindow, now, sleep, waitFor } from '../lib/time.js'
import { entityId, product } from '../lib/values.js'
import { spec, type Workload } from './types.js'

const OURS = ['convergent-yjs', 'convergent-automerge']
const PEERS = ['orbitdb', 'automerge-repo']
/** The raw replication ceiling (peers/raw-link.ts): the stack's least work, no Convergent code. */
const RAW = ['raw-yjs', 'raw-automerge']

/**
 * W2 — live replication between two real nodes on 127.0.0.1: B is connected (and has
 * received a warm-up entity, so subscriptions and meshes are up) when A starts writing N new
 * entities; measured until B has all of them. Bytes are counted on the TCP connection. Case
 * 'live-enc' runs Convergent with encryption at rest on at both nodes (a random key each): against
 * 'live' of the same run, what encryption costs (issue #14: ≤ 10 %).
 */
type Pair = Awaited<ReturnType<typeof openPair>>

/**
 * W2's measurement on an open pair: a warm-up entity A → B and one gossip heartbeat, then A
 * writes N new entities with `window` in flight; returns the ms until B has them all (and
 * how long A took to write them, and the process's CPU time meanwhile: both nodes, all
 * threads). The pair's meter counts the bytes of the timed part.
 */
export async function timeLiveReplication(
  pair: Pair,
  b: Awaited<ReturnType<Pair['openB']>>,
  n: number,
  window: number,
  timeoutMs: number,
): Promise<{ ms: number; writeMs: number; cpuUs: number }> {
  await pair.a.node.put('warm-up', product(-1))
  await waitFor('the warm-up entity to reach B', () => b.node.received() >= 1, 60_000)
  // One gossip heartbeat, so B is in A's mesh rather than reached by anti-entropy alone.
  await sleep(1_000)
  pair.meter.reset()

  const cpu = process.cpuUsage()
  const t0 = now()
  await inWindow(n, window, (i) => pair.a.node.put(entityId(i), product(i)))
  const writeMs = now() - t0
  await waitFor(
    () => `B to have all ${n} entities (has ${b.node.received() - 1})`,
    () => b.node.received() >= n + 1,
    timeoutMs - 30_000,
    2,
  )
  const ms = now() - t0
  const used = process.cpuUsage(cpu)
  await pair.a.node.flush()
  return { ms, writeMs, cpuUs: used.user + used.system }
}

export const w2: Workload = {
  id: 'W2',
  title: 'W2 live replication, two nodes',
  plan({ mode, window }) {
    const small = mode === 'quick' ? 200 : 1_000
    const specs = [...OURS, ...RAW, ...PEERS].map((s) => spec('W2', 'live', s, small, { window }, 120_000 + small * 60))
    specs.push(...OURS.map((s) => spec('W2', 'live-enc', s, small, { window, encrypted: 1 }, 120_000 + small * 60)))
    if (mode === 'full') specs.push(...[...OURS, ...RAW].map((s) => spec('W2', 'live', s, 10_000, { window }, 300_000)))
    return specs
  },
  async run(s, log) {
    const pair = await openPair(s.system, s.params.encrypted === 1 ? { encryption: true } : undefined)
    const b = await pair.openB()
    const window = s.params.window ?? 64
    try {
      const { ms, writeMs } = await timeLiveReplication(pair, b, s.n, window, s.timeoutMs)
      log(`${s.n} entities at B after ${Math.round(ms)} ms (A wrote them in ${Math.round(writeMs)} ms)`)

      const metrics: Record<string, number> = {
        writeMs: Math.round(writeMs),
        entitiesPerS: Math.round(perSecond(s.n, ms)),
        wireBytes: pair.meter.total,
        wireBytesPerEntity: round(pair.meter.total / s.n, 1),
        encrypted: s.params.encrypted === 1 ? 1 : 0,
      }
      if (s.system.startsWith('convergent-')) {
        const deltas = deltaBytes(
          s.system === 'convergent-yjs' ? 'yjs' : 'automerge',
          Array.from({ length: s.n }, (_, i) => ({ after: product(i) })),
        )
        metrics.deltaBytes = deltas
        metrics.wirePerDelta = round(pair.meter.total / deltas, 2)
      }
      return { primary: { name: 'time until B has all', value: ms, unit: 'ms', better: 'lower' }, metrics }
    } finally {
      await pair.close(b)
    }
  },
}
