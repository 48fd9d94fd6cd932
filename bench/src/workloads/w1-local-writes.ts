import { openNode } from '../lib/node-pair.js'
import { perSecond } from '../lib/stats.js'
import { inWindow, now } from '../lib/time.js'
import { entityId, product } from '../lib/values.js'
import { spec, type Workload } from './types.js'

const SYSTEMS = ['convergent-yjs', 'convergent-automerge', 'raw-yjs', 'raw-automerge', 'orbitdb', 'automerge-repo', 'y-leveldb']
const HOT = 'hot-entity'

/**
 * W1 — local durable writes: N distinct new entities; N updates of one hot entity. Every
 * system gets the same writes with the same number in flight; a write counts once the system
 * says it is durable (automerge-repo: once repo.flush() resolves at the end).
 */
export const w1: Workload = {
  id: 'W1',
  title: 'W1 local durable writes',
  plan({ mode, window }) {
    const n = mode === 'quick' ? 200 : 10_000
    // Generous timeouts: automerge-repo needs ~4 min for 10k new documents here.
    // Untimed writes first: Automerge's WASM alone needs ~2 s to warm up on a 2-core machine.
    const warmUp = mode === 'quick' ? 50 : 200
    return ['distinct', 'hot'].flatMap((c) => SYSTEMS.map((s) => spec('W1', c, s, n, { window, warmUp }, 120_000 + n * 100)))
  },
  async run(s, log) {
    // Convergent without a network: W1 is about the local write path only.
    const { node, close } = await openNode(s.system, { tuning: { network: false } })
    const window = s.params.window ?? 64
    const warmUp = s.params.warmUp ?? 200
    try {
      await inWindow(warmUp, window, (i) => node.put(`warm-up-${i}`, product(i)))
      await inWindow(warmUp, window, (i) => node.setStock('warm-up-0', i))
      await node.flush()
      let ms: number
      if (s.case === 'distinct') {
        const t0 = now()
        await inWindow(s.n, window, (i) => node.put(entityId(i), product(i)))
        await node.flush()
        ms = now() - t0
      } else {
        await node.put(HOT, product(0))
        await node.flush()
        const t0 = now()
        await inWindow(s.n, window, (i) => node.setStock(HOT, i + 1))
        await node.flush()
        ms = now() - t0
      }
      log(`${s.n} writes in ${Math.round(ms)} ms`)
      return {
        primary: { name: 'durable writes/s', value: perSecond(s.n, ms), unit: 'ops/s', better: 'higher' },
        metrics: { ms: Math.round(ms), window, warmUpWrites: 2 * warmUp },
      }
    } finally {
      await close()
    }
  },
}
