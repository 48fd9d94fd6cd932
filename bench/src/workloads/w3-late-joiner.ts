import type { ConvergentNode } from '../peers/convergent.js'
import { deltaBytes } from '../lib/delta-bytes.js'
import { openPair } from '../lib/node-pair.js'
import { perSecond, round } from '../lib/stats.js'
import { inWindow, now, waitFor } from '../lib/time.js'
import { entityId, product } from '../lib/values.js'
import { spec, type Workload } from './types.js'

const OURS = ['convergent-yjs', 'convergent-automerge']
const PEERS = ['orbitdb', 'automerge-repo']
/** The raw replication ceiling (peers/raw-link.ts): the stack's least work, no Convergent code. */
const RAW = ['raw-yjs', 'raw-automerge']

type Pair = Awaited<ReturnType<typeof openPair>>
export type Joiner = Awaited<ReturnType<Pair['openB']>>

/**
 * W3's measurement on a pair whose B has not opened yet: A writes N entities (`window` in
 * flight), then B opens (with `openB`) and dials A; returns the ms from B's open until B has
 * all N, and the process's CPU time meanwhile (both nodes, all threads). `joined` gets B as
 * soon as it is open, so the caller closes it whatever happens. The pair's meter counts the
 * bytes of the timed part.
 */
export async function timeLateJoiner(
  pair: Pair,
  n: number,
  window: number,
  timeoutMs: number,
  openB: () => Promise<Joiner>,
  joined: (b: Joiner) => void,
): Promise<{ ms: number; cpuUs: number }> {
  await inWindow(n, window, (i) => pair.a.node.put(entityId(i), product(i)))
  await pair.a.node.flush()
  pair.meter.reset()

  const cpu = process.cpuUsage()
  const t0 = now()
  const b = await openB()
  joined(b)
  await waitFor(
    () => `B to catch up on ${n} entities (has ${b.node.received()})`,
    () => b.node.received() >= n,
    timeoutMs - 30_000,
    2,
  )
  const ms = now() - t0
  const used = process.cpuUsage(cpu)
  return { ms, cpuUs: used.user + used.system }
}

/**
 * W3 — late joiner: A holds N entities; B opens (empty) and dials A; measured from B's open
 * until B has all N. Wire bytes (TCP, both ways) against the bytes of the deltas themselves.
 */
export const w3: Workload = {
  id: 'W3',
  title: 'W3 late joiner catch-up',
  plan({ mode, window }) {
    if (mode === 'quick') return [...OURS, ...RAW, ...PEERS].map((s) => spec('W3', 'catch-up', s, 200, { window }, 120_000))
    return [
      ...[...OURS, ...RAW, ...PEERS].map((s) => spec('W3', 'catch-up', s, 1_000, { window }, 180_000)),
      ...[...OURS, ...RAW].map((s) => spec('W3', 'catch-up', s, 10_000, { window }, 300_000)),
    ]
  },
  async run(s, log) {
    const pair = await openPair(s.system)
    let b: Joiner | undefined
    try {
      const { ms } = await timeLateJoiner(pair, s.n, s.params.window ?? 64, s.timeoutMs, pair.openB, (joined) => (b = joined))
      log(`B caught up on ${s.n} entities in ${Math.round(ms)} ms, ${pair.meter.total} bytes on the wire`)

      const metrics: Record<string, number> = {
        entitiesPerS: Math.round(perSecond(s.n, ms)),
        wireBytes: pair.meter.total,
        wireBytesPerEntity: round(pair.meter.total / s.n, 1),
      }
      if (s.system.startsWith('convergent-')) {
        const deltas = deltaBytes(
          s.system === 'convergent-yjs' ? 'yjs' : 'automerge',
          Array.from({ length: s.n }, (_, i) => ({ after: product(i) })),
        )
        // What the replicas themselves counted: sync requests/responses and gossip, both ways.
        const stats = (b!.node as ConvergentNode).replica.stats()
        const peer = stats.peers[pair.a.node.token]
        const appBytes = (peer?.bytesIn ?? 0) + (peer?.bytesOut ?? 0) + stats.pushed.bytes
        Object.assign(metrics, {
          deltaBytes: deltas,
          appBytes,
          wirePerDelta: round(pair.meter.total / deltas, 2),
          appPerDelta: round(appBytes / deltas, 2),
          deltasDuplicate: peer?.deltasDuplicate ?? 0,
        })
      }
      return { primary: { name: 'catch-up time', value: ms, unit: 'ms', better: 'lower' }, metrics }
    } finally {
      await pair.close(...(b ? [b] : []))
    }
  },
}
