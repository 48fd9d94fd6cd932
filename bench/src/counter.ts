// Bounded counters in a cluster (signed rows, issue #13) against development mode (unsigned).
//   npm run build && node bench/dist/src/counter.js [n=2000] [runs=7]   (IDS=1: one hot id instead of 20; CONCURRENT=1: each id's decrements at once)
// Each run opens two replicas on a loopback network with classic-level stores in temp folders
// (durability 'process'); A holds n rights on each of 20 ids and sells them one decrement at a
// time (the 20 ids in parallel, each id's decrements one after another, as orders for one SKU
// would be); B receives by gossip. Reported: A's decrements per second, and the time until B
// shows every id at 0. Runs alternate development / cluster; medians printed.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LoopbackHub, Replica, silentLogger } from '@convergent/core'
import { Keyring } from '@convergent/core/testing/keyring'
import { automergeBackend } from '@convergent/automerge'
import { classicLevelStore } from '@convergent/level'

const n = Number(process.argv[2] ?? 2000)
const runs = Number(process.argv[3] ?? 7)
const IDS = Number(process.env.IDS ?? 20)
/** CONCURRENT=1: each id's decrements all at once (a flash sale), not one after another. */
const CONCURRENT = process.env.CONCURRENT === '1'
const keys = new Keyring()

async function run(cluster: boolean): Promise<{ perSec: number; caughtUpMs: number }> {
  const dirs = [await mkdtemp(join(tmpdir(), 'convergent-bench-counter-')), await mkdtemp(join(tmpdir(), 'convergent-bench-counter-'))]
  const hub = new LoopbackHub()
  const replicas: Replica[] = []
  try {
    for (const [i, id] of ['A', 'B'].entries()) {
      replicas.push(
        await Replica.open({
          store: classicLevelStore(dirs[i]!, { sync: false }),
          backends: [automergeBackend()],
          network: hub.createNetwork(id),
          logger: silentLogger,
          syncIntervalMs: 0,
          ...(cluster ? { trust: keys.trust(id, ['A']) } : {}),
        }),
      )
    }
    const [a, b] = replicas as [Replica, Replica]
    const sa = a.counter('stock')
    const sb = b.counter('stock')
    const perId = Math.ceil(n / IDS)
    await Promise.all(Array.from({ length: IDS }, (_, i) => sa.increment(`sku${i}`, perId)))
    const t0 = performance.now()
    await Promise.all(
      Array.from({ length: IDS }, async (_, i) => {
        if (CONCURRENT) await Promise.all(Array.from({ length: perId }, () => sa.decrement(`sku${i}`, 1)))
        else for (let k = 0; k < perId; k++) await sa.decrement(`sku${i}`, 1)
      }),
    )
    const t1 = performance.now()
    // Gossip, then anti-entropy for whatever gossip dropped (a loopback queue under load drops too).
    for (let round = 0; ; round++) {
      const values = await Promise.all(Array.from({ length: IDS }, (_, i) => sb.value(`sku${i}`)))
      if (values.every((v) => v === 0)) break
      if (performance.now() - t1 > 60_000) throw new Error(`B did not catch up in 60 s: ${JSON.stringify(values)}`)
      if (round >= 20) await b.sync()
      else await new Promise((resolve) => setTimeout(resolve, 5))
    }
    return { perSec: ((perId * IDS) / (t1 - t0)) * 1000, caughtUpMs: performance.now() - t1 }
  } finally {
    await Promise.all(replicas.map((r) => r.close()))
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })))
  }
}

const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!
const dev: { perSec: number; caughtUpMs: number }[] = []
const signed: { perSec: number; caughtUpMs: number }[] = []
await run(false) // warm-up
for (let i = 0; i < runs; i++) {
  dev.push(await run(false))
  signed.push(await run(true))
  process.stderr.write(`run ${i + 1}/${runs}: development ${dev.at(-1)!.perSec.toFixed(0)}/s, cluster ${signed.at(-1)!.perSec.toFixed(0)}/s\n`)
}
const d = median(dev.map((x) => x.perSec))
const s = median(signed.map((x) => x.perSec))
console.log(`counter decrements, ${n} over ${IDS} ids${CONCURRENT ? ", each id's at once" : ', one after another per id'}, median of ${runs} runs:`)
console.log(
  `  development (unsigned rows): ${d.toFixed(0)}/s (${(1e6 / d).toFixed(0)} µs each); B caught up ${median(dev.map((x) => x.caughtUpMs)).toFixed(0)} ms after`,
)
console.log(
  `  cluster (signed rows):       ${s.toFixed(0)}/s (${(1e6 / s).toFixed(0)} µs each); B caught up ${median(signed.map((x) => x.caughtUpMs)).toFixed(0)} ms after`,
)
console.log(`  time per decrement, cluster / development: ${(d / s).toFixed(2)}×`)
