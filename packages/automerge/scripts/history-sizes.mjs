// What a hot entity's history costs, for the README's tables (issue #11). Build first (npx tsc -b).
//   node packages/automerge/scripts/history-sizes.mjs [N ...]        (default 20000 50000 100000)
// For each N and each entity shape: an entity put N times (one change each), and a replica
// partitioned at the midpoint. Prints one JSON line per (shape, N): sizes in bytes, times in ms
// (medians of REPS=3 runs, each way interleaved). Takes minutes: put() makes ~1-2k changes/s.
import * as A from '@automerge/automerge'
import { automergeBackend } from '../dist/src/index.js'
import { checkChunks } from '../dist/src/chunks.js'

const backend = automergeBackend()
let actors = 0
const actor = () => Uint8Array.from({ length: 16 }, (_, i) => (++actors * 31 + i * 7) & 0xff)
const REPS = Number(process.env.REPS ?? 3)
const shapes = {
  // three small fields change each time (price, stock, updatedBy)
  small: (i) => ({ sku: 'MUG-001', name: 'Blue mug', price: 12 + (i % 7), stock: i, updatedBy: `svc-${i % 3}`, tags: ['kitchen', 'blue'] }),
  // a 100-byte string rewritten each time
  string100: (i) => ({ sku: 'MUG-001', stock: i, status: `order ${i} moved to stage ${i % 5} by worker ${i % 13}`.padEnd(100, '.') }),
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const timed = (f) => {
  const t = performance.now()
  const r = f()
  return [r, performance.now() - t]
}
const decoded = (bytes) => checkChunks(bytes, { maxDecodedBytes: Infinity }).decodedBytes

for (const N of process.argv.length > 2 ? process.argv.slice(2).map(Number) : [20_000, 50_000, 100_000]) {
  for (const [shape, value] of Object.entries(shapes)) {
    let doc = backend.create(actor())
    let half
    for (let i = 0; i < N; i++) {
      doc = backend.put(doc, value(i)).doc
      if (i === N / 2 - 1) half = backend.save(doc)
    }
    const source = backend.load(backend.save(doc), [], actor())
    backend.dispose(doc)
    const behind = backend.version(backend.load(half, [], actor()))
    const known = A.getHeads(backend.load(half, [], actor()))
    const ms = { saveSince: [], save: [], deltaSince: [], applyDeltaSince: [], loadIncrementalOfChanges: [] }
    let since, save, delta
    for (let r = 0; r < REPS; r++) {
      let t
      ;[since, t] = timed(() => A.saveSince(source, known))
      ms.saveSince.push(t)
      ;[save, t] = timed(() => A.save(source))
      ms.save.push(t)
      ;[delta, t] = timed(() => backend.deltaSince(source, behind))
      ms.deltaSince.push(t)
      // Receiving: what deltaSince sends, through applyDelta; and the changes as the old code sent them.
      let x = backend.load(half, [], actor())
      ;[x, t] = timed(() => backend.applyDelta(x, delta, { maxDecodedBytes: 64 * 1024 * 1024 }))
      ms.applyDeltaSince.push(t)
      backend.dispose(x)
      x = A.load(half)
      ;[x, t] = timed(() => A.loadIncremental(x, since))
      ms.loadIncrementalOfChanges.push(t)
      A.free(x)
    }
    console.log(
      JSON.stringify({
        shape,
        N,
        saveBytes: save.byteLength,
        saveDecodedBytes: decoded(save),
        decodedPerChange: +(decoded(save) / N).toFixed(1),
        changeChunkPerChange: +(since.byteLength / (N / 2)).toFixed(1),
        saveSinceMidpointBytes: since.byteLength,
        deltaSinceBytes: delta.byteLength,
        deltaSinceChunkType: delta[8] === 0 ? 'document' : 'changes',
        ms: Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, Math.round(median(v))])),
      }),
    )
    backend.dispose(source)
  }
}
