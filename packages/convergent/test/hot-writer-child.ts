/**
 * A child process for crash.test.ts (forked from dist/test/hot-writer-child.js):
 *
 *   hot-writer-child.js <dir> <backend>
 *
 * Opens a replica on classic-level in <dir> with a tiny compactAfter, so hot entities are
 * folded into snapshots every few writes, and increments `n` of a few hot entities forever,
 * WINDOW updates in flight. Reports { type: 'ready' } and then, once per tick,
 * { type: 'acked', values: [id, n][] } for every update that resolved (it is durable).
 */
import { open } from '../src/index.js'

const [dir, backend] = process.argv.slice(2)
if (dir === undefined || (backend !== 'yjs' && backend !== 'automerge')) {
  console.error('usage: hot-writer-child.js <dir> yjs|automerge')
  process.exit(2)
}

const HOT = ['h0', 'h1', 'h2']
const WINDOW = 8

const replica = await open({ dir, network: false, compactAfter: 4, syncIntervalMs: 0 })
const col = replica.collection<{ n: number; pad: string }>('c', { backend })
for (const id of HOT) await col.update(id, (v) => void ((v.n ??= 0), (v.pad = 'p'.repeat(100))), { upsert: true })
process.send!({ type: 'ready' })

let acked: [string, number][] = []
const flush = (): void => {
  if (acked.length > 0) process.send!({ type: 'acked', values: acked })
  acked = []
}
let i = 0
const worker = async (): Promise<never> => {
  for (;;) {
    const id = HOT[i++ % HOT.length]!
    const value = await col.update(id, (v) => void (v.n += 1))
    if (acked.length === 0) setImmediate(flush)
    acked.push([id, value.n])
  }
}
await Promise.all(Array.from({ length: WINDOW }, worker))
