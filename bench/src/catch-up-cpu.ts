// What a late joiner's catch-up costs in CPU with the trust boundary on (issue #13, W3), in
// more rounds than TRUST runs: the wall time of a catch-up on this shared 2-core machine
// spreads by 30–60 % from round to round, its CPU time by less.
//   npm run build && node bench/dist/src/catch-up-cpu.js [n=3000] [rounds=8] [system=convergent-automerge]
// Each round, for 'plain' then 'cluster' (alternating which goes first): A (fresh folder) writes
// n new entities, then B opens in a fresh folder and catches up over TCP (as TRUST W3: in
// 'cluster' a random key, A the admin, a policy naming A and B). Timed from B's open until B
// holds all n: wall time and the process's CPU (both nodes, all threads), and on Linux the main
// thread's share of it (/proc: the rest is V8's worker threads — garbage collection, the
// optimizing compiler — and libuv's pool). One untimed round of each first. Prints the medians,
// CPU µs per entity and the CPU overhead of cluster over plain.
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { folderPeerId } from 'convergent'
import { openPair } from './lib/node-pair.js'
import { median, round } from './lib/stats.js'
import { tempDir } from './lib/tmp.js'
import type { ConvergentNode } from './peers/convergent.js'
import { timeLateJoiner, type Joiner } from './workloads/w3-late-joiner.js'

const n = Number(process.argv[2] ?? 3000)
const rounds = Number(process.argv[3] ?? 8)
const system = process.argv[4] ?? 'convergent-automerge'
const VARIANTS = ['plain', 'cluster'] as const
type Variant = (typeof VARIANTS)[number]

const policyFor = (...members: string[]) => ({ roles: { all: members }, collections: { '*': { read: ['*'], write: ['*'] } } })

/** The main thread's CPU time so far in µs (Linux: /proc/self/task/<pid>/stat, in clock ticks of 10 ms); undefined elsewhere. */
function mainThreadCpuUs(): number | undefined {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 10_000 // utime + stime
  } catch {
    return undefined
  }
}

async function catchUp(variant: Variant): Promise<{ ms: number; cpuUs: number; mainUs?: number }> {
  const [dirA, dirB] = [await tempDir(system), await tempDir(system)]
  const [idA, idB] = [await folderPeerId(dirA.dir), await folderPeerId(dirB.dir)]
  const cluster = variant === 'cluster' ? { key: randomBytes(32), admins: [idA] } : undefined
  const pair = await openPair(system, cluster ? { cluster } : undefined, dirA)
  let b: Joiner | undefined
  try {
    if (cluster) await (pair.a.node as ConvergentNode).replica.policy.set(policyFor(idA, idB))
    let mainAtStart: number | undefined
    const timed = await timeLateJoiner(
      pair,
      n,
      64,
      300_000,
      () => {
        mainAtStart = mainThreadCpuUs()
        return pair.openB(dirB)
      },
      (joined) => (b = joined),
    )
    const mainNow = mainThreadCpuUs()
    return mainAtStart === undefined || mainNow === undefined ? timed : { ...timed, mainUs: mainNow - mainAtStart }
  } finally {
    await pair.close(...(b ? [b] : []))
    await dirB.cleanup()
  }
}

const samples: Record<Variant, { ms: number; cpuUs: number; mainUs?: number }[]> = { plain: [], cluster: [] }
for (let r = -1; r < rounds; r++) {
  const order = r % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()
  const got: string[] = []
  for (const variant of order) {
    const s = await catchUp(variant)
    if (r >= 0) samples[variant].push(s)
    const main = s.mainUs === undefined ? '' : ` (main thread ${Math.round(s.mainUs / n)})`
    got.push(`${variant} ${Math.round(s.ms)} ms, ${Math.round(s.cpuUs / n)} µs CPU/entity${main}`)
  }
  process.stderr.write(`[catch-up-cpu] ${r < 0 ? 'warm-up' : `round ${r + 1}/${rounds}`}: ${got.join('; ')}\n`)
}
const cpu = (v: Variant) => median(samples[v].map((s) => s.cpuUs / n))
const ms = (v: Variant) => median(samples[v].map((s) => s.ms))
const main = (v: Variant) => (samples[v].every((s) => s.mainUs !== undefined) ? round(median(samples[v].map((s) => s.mainUs! / n)), 1) : undefined)
console.log(
  JSON.stringify({
    system,
    n,
    rounds,
    'plain ms': Math.round(ms('plain')),
    'cluster ms': Math.round(ms('cluster')),
    'plain CPU µs/entity': round(cpu('plain'), 1),
    'cluster CPU µs/entity': round(cpu('cluster'), 1),
    'CPU overhead %': round((cpu('cluster') / cpu('plain') - 1) * 100, 1),
    // The main thread's share (10 ms ticks; the rest of the process's CPU ran on other threads).
    ...(main('plain') !== undefined ? { 'plain main-thread µs/entity': main('plain'), 'cluster main-thread µs/entity': main('cluster') } : {}),
    'time overhead %': round((ms('cluster') / ms('plain') - 1) * 100, 1),
  }),
)
