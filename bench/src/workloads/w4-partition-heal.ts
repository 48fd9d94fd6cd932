import { isDeepStrictEqual } from 'node:util'
import type { ConvergentNode } from '../peers/convergent.js'
import { deltaBytes } from '../lib/delta-bytes.js'
import { openNode, openPair } from '../lib/node-pair.js'
import { round } from '../lib/stats.js'
import { inWindow, now, waitFor } from '../lib/time.js'
import { entityId, product, type Product } from '../lib/values.js'
import { spec, type Workload } from './types.js'

const OURS = ['convergent-yjs', 'convergent-automerge']
const priceOnA = (i: number): number => 1000 + i
const stockOnB = (i: number): number => 9000 + i

/**
 * W4 — partition heal: A and B share N entities; the link is cut (the TcpMeter drops the
 * connection); during the split A changes the price and B the stock of all N; then B dials A
 * again. Measured from the dial until both hold both changes of every entity; bytes are the
 * heal connection's.
 */
export const w4: Workload = {
  id: 'W4',
  title: 'W4 partition heal',
  plan({ mode, window }) {
    const n = mode === 'quick' ? 100 : 1_000
    return OURS.map((s) => spec('W4', 'heal', s, n, { window }, 180_000))
  },
  async run(s, log) {
    const pair = await openPair(s.system)
    // B dials A itself (not as a bootstrap peer), so nothing redials during the split.
    const bHandle = await openNode(s.system)
    const a = pair.a.node as ConvergentNode
    const b = bHandle.node as ConvergentNode
    const window = s.params.window ?? 64
    try {
      await b.connect(pair.meter.port, a.token)
      const shared = new Set<string>()
      b.onRemote((id) => shared.add(id))
      await inWindow(s.n, window, (i) => a.put(entityId(i), product(i)))
      await waitFor('B to receive the shared entities', () => shared.size >= s.n, 120_000)

      pair.meter.partition()
      await waitFor('the split to be seen on both sides', () => a.replica.peers().length === 0 && b.replica.peers().length === 0, 30_000)
      await inWindow(s.n, window, (i) => a.collection.update(entityId(i), (p) => void (p.price = priceOnA(i))))
      await inWindow(s.n, window, (i) => b.collection.update(entityId(i), (p) => void (p.stock = stockOnB(i))))

      // Converged = each side has seen the other's change of every entity.
      const aHasB = new Set<string>()
      const bHasA = new Set<string>()
      const index = (id: string): number => Number(id.slice(id.indexOf('-') + 1))
      a.onRemote((id, v) => v?.stock === stockOnB(index(id)) && aHasB.add(id))
      b.onRemote((id, v) => v?.price === priceOnA(index(id)) && bHasA.add(id))
      const before = b.replica.stats()
      pair.meter.heal()
      pair.meter.reset()
      const t0 = now()
      await b.connect(pair.meter.port, a.token)
      await waitFor(
        () => `convergence (A has ${aHasB.size}, B has ${bHasA.size} of ${s.n})`,
        () => aHasB.size >= s.n && bHasA.size >= s.n,
        120_000,
        2,
      )
      const ms = now() - t0
      await verifyEqual(a, b, s.n)
      log(`healed ${s.n}+${s.n} divergent entities in ${Math.round(ms)} ms, ${pair.meter.total} bytes`)

      const after = b.replica.stats()
      const appBytes = sumBytes(after, a.token) - sumBytes(before, a.token) + (after.pushed.bytes - before.pushed.bytes)
      const backend = s.system === 'convergent-yjs' ? 'yjs' : 'automerge'
      const deltas =
        deltaBytes(
          backend,
          Array.from({ length: s.n }, (_, i) => ({ before: product(i), after: { ...product(i), price: priceOnA(i) } })),
        ) +
        deltaBytes(
          backend,
          Array.from({ length: s.n }, (_, i) => ({ before: product(i), after: { ...product(i), stock: stockOnB(i) } })),
        )
      return {
        primary: { name: 'time to converge', value: ms, unit: 'ms', better: 'lower' },
        metrics: {
          wireBytes: pair.meter.total,
          appBytes,
          deltaBytes: deltas,
          wirePerDelta: round(pair.meter.total / deltas, 2),
          appPerDelta: round(appBytes / deltas, 2),
        },
      }
    } finally {
      await pair.close(bHandle)
    }
  },
}

function sumBytes(stats: ReturnType<ConvergentNode['replica']['stats']>, peer: string): number {
  const p = stats.peers[peer]
  return (p?.bytesIn ?? 0) + (p?.bytesOut ?? 0)
}

/** Both replicas must hold exactly the same values once the events say they converged. */
async function verifyEqual(a: ConvergentNode, b: ConvergentNode, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const [va, vb] = [await a.collection.get(entityId(i)), await b.collection.get(entityId(i))]
    const want: Product = { ...product(i), price: priceOnA(i), stock: stockOnB(i) }
    if (!isDeepStrictEqual(va, want) || !isDeepStrictEqual(vb, want)) {
      throw new Error(`${entityId(i)} did not converge: A ${JSON.stringify(va)}, B ${JSON.stringify(vb)}`)
    }
  }
}
