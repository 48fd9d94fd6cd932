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
    const window = s.params.window ?? 64
    let b: Awaited<ReturnType<typeof pair.openB>> | undefined
    try {
      await inWindow(s.n, window, (i) => pair.a.node.put(entityId(i), product(i)))
      await pair.a.node.flush()
      pair.meter.reset()

      const t0 = now()
      const joiner = (b = await pair.openB()).node
      await waitFor(
        () => `B to catch up on ${s.n} entities (has ${joiner.received()})`,
        () => joiner.received() >= s.n,
        s.timeoutMs - 30_000,
        2,
      )
      const ms = now() - t0
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
        const stats = (b.node as ConvergentNode).replica.stats()
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
