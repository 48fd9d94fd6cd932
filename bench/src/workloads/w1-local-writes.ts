import { openNode } from '../lib/node-pair.js'
import { perSecond } from '../lib/stats.js'
import { inWindow, now } from '../lib/time.js'
import { entityId, product } from '../lib/values.js'
import type { BenchNode } from '../peers/types.js'
import { spec, type Workload } from './types.js'

const SYSTEMS = ['convergent-yjs', 'convergent-automerge', 'raw-yjs', 'raw-automerge', 'orbitdb', 'automerge-repo', 'y-leveldb']
/** Convergent only: encryption at rest on (the 'distinct-enc' / 'hot-enc' cases, against 'distinct' / 'hot'). */
const ENCRYPTED_SYSTEMS = ['convergent-yjs', 'convergent-automerge']
/** Those that can fsync each batch: Convergent (durability 'fsync', open()'s default) and the raw ceiling. */
const FSYNC_SYSTEMS = ['convergent-yjs', 'convergent-automerge', 'raw-yjs', 'raw-automerge']
const HOT = 'hot-entity'

/**
 * W1 — local durable writes: N distinct new entities; N updates of one hot entity. Every
 * system gets the same writes with the same number in flight; a write counts once the system
 * says it is durable (automerge-repo: once repo.flush() resolves at the end).
 *
 * Cases 'distinct' and 'hot' run every system at durability 'process' (a resolved write has
 * reached the OS: it survives a crash of the process, not a power loss) — what the raw ceiling
 * and the peers give, so the ratios compare like with like. 'distinct-fsync' and 'hot-fsync'
 * run the same writes with every batch fsynced (survives a power loss too): Convergent at
 * open()'s default durability 'fsync' against the raw ceiling with `sync: true`. Same run, so
 * the two rows of a system show what fsync costs. 'distinct-enc' and 'hot-enc' run Convergent
 * at durability 'process' with encryption at rest on (XChaCha20-Poly1305, a random key; AES-256-GCM before 2026-12-06): against
 * 'distinct' / 'hot' of the same run, what encryption costs (issue #14: ≤ 10 %).
 */
/**
 * W1's measurement on an open node: untimed warm-up writes, then N timed writes with `window`
 * in flight — N new entities ('distinct') or N updates of one entity ('hot'). Returns the ms
 * until the last is durable, and the process's CPU time meanwhile (all its threads).
 */
export async function timeLocalWrites(
  node: BenchNode,
  kind: 'distinct' | 'hot',
  n: number,
  window: number,
  warmUp: number,
): Promise<{ ms: number; cpuUs: number }> {
  await inWindow(warmUp, window, (i) => node.put(`warm-up-${i}`, product(i)))
  await inWindow(warmUp, window, (i) => node.setStock('warm-up-0', i))
  await node.flush()
  const timed = async (write: () => Promise<void>): Promise<{ ms: number; cpuUs: number }> => {
    const cpu = process.cpuUsage()
    const t0 = now()
    await write()
    await node.flush()
    const ms = now() - t0
    const used = process.cpuUsage(cpu)
    return { ms, cpuUs: used.user + used.system }
  }
  if (kind === 'distinct') return timed(() => inWindow(n, window, (i) => node.put(entityId(i), product(i))))
  await node.put(HOT, product(0))
  await node.flush()
  return timed(() => inWindow(n, window, (i) => node.setStock(HOT, i + 1)))
}

export const w1: Workload = {
  id: 'W1',
  title: 'W1 local durable writes',
  plan({ mode, window }) {
    const n = mode === 'quick' ? 200 : 10_000
    // Generous timeouts: automerge-repo needs ~4 min for 10k new documents here.
    // Untimed writes first: Automerge's WASM alone needs ~2 s to warm up on a 2-core machine.
    const warmUp = mode === 'quick' ? 50 : 200
    const timeout = 120_000 + n * 100
    return [
      ...['distinct', 'hot'].flatMap((c) => SYSTEMS.map((s) => spec('W1', c, s, n, { window, warmUp }, timeout))),
      ...['distinct-fsync', 'hot-fsync'].flatMap((c) => FSYNC_SYSTEMS.map((s) => spec('W1', c, s, n, { window, warmUp, fsync: 1 }, timeout))),
      ...['distinct-enc', 'hot-enc'].flatMap((c) => ENCRYPTED_SYSTEMS.map((s) => spec('W1', c, s, n, { window, warmUp, encrypted: 1 }, timeout))),
    ]
  },
  async run(s, log) {
    // Convergent without a network: W1 is about the local write path only.
    const durability = s.params.fsync === 1 ? 'fsync' : 'process'
    const encryption = s.params.encrypted === 1
    const { node, close } = await openNode(s.system, { tuning: { network: false, durability, encryption } })
    const window = s.params.window ?? 64
    const warmUp = s.params.warmUp ?? 200
    try {
      const { ms } = await timeLocalWrites(node, s.case.startsWith('distinct') ? 'distinct' : 'hot', s.n, window, warmUp)
      log(`${s.n} writes in ${Math.round(ms)} ms`)
      return {
        primary: { name: 'durable writes/s', value: perSecond(s.n, ms), unit: 'ops/s', better: 'higher' },
        metrics: { ms: Math.round(ms), window, warmUpWrites: 2 * warmUp, fsync: durability === 'fsync' ? 1 : 0, encrypted: encryption ? 1 : 0 },
      }
    } finally {
      await close()
    }
  },
}
