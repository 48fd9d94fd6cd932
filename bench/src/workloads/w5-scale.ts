import { fork } from 'node:child_process'
import { cp, mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { ConvergentNode } from '../peers/convergent.js'
import { tempDir } from '../lib/tmp.js'
import { inWindow, now } from '../lib/time.js'
import { perSecond } from '../lib/stats.js'
import { entityId, product } from '../lib/values.js'
import type { ProbeInput, ProbeOutput } from './w5-probe.js'
import { spec, type Workload } from './types.js'

/**
 * W5 — scale: a store of N entities. Built here (writes stop at the time budget, and the N
 * reached is reported), copied to a second replica (an in-sync peer without writing it all
 * twice), then measured in a fresh process (w5-probe.ts) so RSS is the replica's alone:
 * open time, RSS, reads, and in-sync anti-entropy rounds between the two.
 */
export const w5: Workload = {
  id: 'W5',
  title: 'W5 scale, one store',
  plan({ mode, window, scaleMax, scaleBudgetS }) {
    const params = { window, budgetS: scaleBudgetS }
    if (mode === 'quick') return [spec('W5', 'scale', 'convergent-yjs', 10_000, params, 120_000)]
    const budgetMs = scaleBudgetS * 1000
    const specs = [
      spec('W5', 'scale', 'convergent-yjs', 100_000, params, budgetMs + 600_000),
      spec('W5', 'scale', 'convergent-automerge', 100_000, params, budgetMs + 600_000),
    ]
    if (scaleMax > 100_000) specs.push(spec('W5', 'scale', 'convergent-yjs', scaleMax, params, budgetMs + 900_000))
    return specs
  },
  async run(s, log) {
    const backend = s.system === 'convergent-yjs' ? 'yjs' : 'automerge'
    const { dir, cleanup } = await tempDir('w5')
    const dirA = join(dir, 'a')
    const dirB = join(dir, 'b')
    try {
      const { reached, writeMs } = await build(backend, dirA, s.n, s.params.window ?? 64, (s.params.budgetS ?? 600) * 1000, log)
      // Only the LevelDB folder: B keeps its own peer identity.
      await mkdir(dirB, { recursive: true })
      await cp(join(dirA, 'db'), join(dirB, 'db'), { recursive: true })
      log(`probing a store of ${reached} entities`)
      const probe = await runProbe({ backend, dirA, dirB, n: reached, rounds: 5 })
      const notes =
        reached < s.n ? [`stopped at ${reached.toLocaleString('en-US')} of ${s.n.toLocaleString('en-US')}: the ${s.params.budgetS} s write budget ran out`] : []
      if (probe.entitiesDiffering > 0) notes.push(`the in-sync round found ${probe.entitiesDiffering} differing entities`)
      return {
        n: reached,
        primary: { name: 'in-sync anti-entropy round', value: probe.roundMs, unit: 'ms', better: 'lower' },
        metrics: {
          openMs: probe.openMs,
          rssAfterOpenMB: probe.rssAfterOpenMB,
          rssAfterReadsMB: probe.rssAfterReadsMB,
          rssTwoReplicasMB: probe.rssTwoReplicasMB,
          readMsPer1000: probe.readMs,
          roundAppBytes: probe.roundAppBytes,
          roundWireBytes: probe.roundWireBytes,
          roundMessages: probe.roundMessages,
          buildWritesPerS: Math.round(perSecond(reached, writeMs)),
        },
        notes,
      }
    } finally {
      await cleanup()
    }
  },
}

async function build(backend: 'yjs' | 'automerge', dir: string, n: number, window: number, budgetMs: number, log: (m: string) => void) {
  const node = await ConvergentNode.open(backend, { dir }, { network: false })
  const t0 = now()
  let reached = 0
  try {
    // Chunks, so the budget is checked (and progress shown) as the store grows.
    const chunk = 10_000
    while (reached < n && now() - t0 < budgetMs) {
      const start = reached
      const size = Math.min(chunk, n - start)
      await inWindow(size, window, (i) => node.put(entityId(start + i), product(start + i)))
      reached += size
      if (reached % 100_000 === 0) log(`built ${reached} entities, ${Math.round(perSecond(reached, now() - t0))}/s`)
    }
  } finally {
    await node.close()
  }
  return { reached, writeMs: now() - t0 }
}

function runProbe(input: ProbeInput): Promise<ProbeOutput> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(new URL('./w5-probe.js', import.meta.url)), [JSON.stringify(input)], {
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    let output: ProbeOutput | undefined
    child.on('message', (m) => {
      output = m as ProbeOutput
    })
    child.on('error', reject)
    child.on('exit', (code) => (output ? resolve(output) : reject(new Error(`the W5 probe exited with code ${code} without a result`))))
  })
}
