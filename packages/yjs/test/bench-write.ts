/**
 * Micro-benchmarks of the write path of this build (medians of interleaved rounds; compare two
 * builds by running this in each, or by importing both, as the report of the change did):
 * put + versionHash of small entities (W1 distinct) and of one entity written 64 times per
 * versionHash (W1 hot), versionHash of a ~40 kB entity after a one-field put, and put of a list
 * of 100k empty objects / arrays. Run: node packages/yjs/dist/test/bench-write.js [rounds]
 */
import type { JsonObject, JsonValue } from '@convergent/core'
import { yjsBackend } from '../src/index.js'

const backend = yjsBackend()
const rounds = Number(process.argv[2] ?? 21)
const TAGS = ['kitchen', 'garden', 'office', 'toys', 'books', 'sport', 'music']
const product = (i: number): JsonObject => ({
  name: `Product ${i}`,
  price: 5 + (i % 100) + 0.99,
  stock: i % 50,
  tags: [TAGS[i % TAGS.length]!, TAGS[(i * 7 + 3) % TAGS.length]!],
})
const actor = (i: number): Uint8Array => Uint8Array.from({ length: 16 }, (_, k) => (k < 4 ? ((i >>> (8 * (3 - k))) & 0xff) | (k === 0 ? 1 : 0) : k))
const median = (xs: number[]): string => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!.toFixed(2)

const big: JsonObject = {}
for (let i = 0; i < 300; i++) big[`field${i}`] = `value number ${i} of a rather large entity`
big.nested = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`inner${i}`, { n: i, s: `nested ${i}` }]))
big.list = Array.from({ length: 200 }, (_, i) => ({ id: i, label: `item ${i}` }))

const r = { put: [] as number[], hash: [] as number[], hotPut: [] as number[], hotHash: [] as number[], bigHash: [] as number[] }
const hot = backend.put(backend.create(actor(1)), product(0)).doc
let stock = 0
for (let round = 0; round < rounds; round++) {
  let put = 0
  let hash = 0
  for (let i = 0; i < 3000; i++) {
    const t0 = performance.now()
    const doc = backend.put(backend.create(actor(i)), product(i)).doc
    const t1 = performance.now()
    backend.versionHash(doc)
    put += t1 - t0
    hash += performance.now() - t1
  }
  r.put.push((put / 3000) * 1000)
  r.hash.push((hash / 3000) * 1000)
  put = 0
  hash = 0
  for (let tick = 0; tick < 50; tick++) {
    const t0 = performance.now()
    for (let w = 0; w < 64; w++) backend.put(hot, { ...product(0), stock: ++stock })
    const t1 = performance.now()
    backend.versionHash(hot)
    put += t1 - t0
    hash += performance.now() - t1
  }
  r.hotPut.push((put / (50 * 64)) * 1000)
  r.hotHash.push((hash / 50) * 1000)
  const doc = backend.put(backend.create(actor(2)), big).doc
  hash = 0
  for (let i = 0; i < 50; i++) {
    backend.put(doc, { ...big, field1: `v${i}` })
    const t0 = performance.now()
    backend.versionHash(doc)
    hash += performance.now() - t0
  }
  r.bigHash.push((hash / 50) * 1000)
}
console.log(`small entity: put ${median(r.put)} µs + versionHash ${median(r.hash)} µs`)
console.log(`hot entity: put ${median(r.hotPut)} µs per write + versionHash ${median(r.hotHash)} µs per 64 writes`)
console.log(`~40 kB entity: versionHash after a one-field put ${median(r.bigHash)} µs`)
for (const [label, make] of [
  ['{}', (): JsonValue => ({})],
  ['[]', (): JsonValue => []],
] as const) {
  const value = { list: Array.from({ length: 100_000 }, make) }
  const t0 = performance.now()
  backend.put(backend.create(actor(3)), value)
  console.log(`put of 100k ${label}: ${(performance.now() - t0).toFixed(0)} ms`)
}
