/**
 * Sizes of a long history (for the design of chunked transfer of large states): one entity,
 * updates alternating two fields of its map, through the backend. At each checkpoint: the
 * whole state as Yjs update v1 (what save() and deltaSince from nothing send), as V2, both
 * deflated, and deltaSince from the version at half the checkpoint, applied to a replica at
 * that version. Run: node packages/yjs/dist/test/long-history.js [20000,100000,150000,1000000]
 * (give node --max-old-space-size=6144 for 1M).
 */
import { deflateSync } from 'node:zlib'
import * as Y from 'yjs'
import { bytesEqual } from '@convergent/core'
import { yjsBackend } from '../src/index.js'

const backend = yjsBackend()
const checkpoints = (process.argv[2] ?? '20000,100000,150000,1000000').split(',').map(Number)
const size = (n: number): string => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`)
function timed<T>(fn: () => T): [T, string] {
  const t0 = performance.now()
  const result = fn()
  return [result, `${(performance.now() - t0).toFixed(0)} ms`]
}

const doc = backend.create(Uint8Array.from({ length: 16 }, (_, i) => i + 1))
const halfway = new Map<number, { version: Uint8Array; state: Uint8Array }>()
const value = { a: 0, b: 0 }
let written = 0
for (let i = 1; i <= Math.max(...checkpoints); i++) {
  if (i % 2 === 1) value.a = i
  else value.b = i
  written += backend.put(doc, value).delta!.byteLength
  if (checkpoints.includes(2 * i)) halfway.set(2 * i, { version: backend.version(doc), state: backend.save(doc) })
  if (!checkpoints.includes(i)) continue
  const [v1, tv1] = timed(() => Y.encodeStateAsUpdate(doc))
  const [v2, tv2] = timed(() => Y.encodeStateAsUpdateV2(doc))
  const [z1, tz1] = timed(() => deflateSync(v1))
  const mid = halfway.get(i)!
  const [since, tsince] = timed(() => backend.deltaSince(doc, mid.version)!)
  const behind = backend.load(mid.state, [], new Uint8Array(16).fill(8))
  const [, tapply] = timed(() => backend.applyDelta(behind, since))
  const [, tload] = timed(() => backend.load(v1, [], new Uint8Array(16).fill(9)))
  console.log(`${i} updates: ${doc.store.clients.get(doc.clientID)!.length} structs, ${size(written)} of deltas written`)
  console.log(
    `  state v1 ${size(v1.byteLength)} (${tv1}), V2 ${size(v2.byteLength)} (${tv2}), deflate(v1) ${size(z1.byteLength)} (${tz1}), deflate(V2) ${size(deflateSync(v2).byteLength)}; load(v1) ${tload}`,
  )
  console.log(
    `  deltaSince(version after ${i / 2}) ${size(since.byteLength)} (${tsince}), deflated ${size(deflateSync(since).byteLength)}; applied at that version in ${tapply}, hashes then equal: ${bytesEqual(backend.versionHash(behind), backend.versionHash(doc))}`,
  )
}
