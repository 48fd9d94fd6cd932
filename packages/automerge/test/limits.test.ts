import assert from 'node:assert/strict'
import * as A from '@automerge/automerge'
import { toHex, type JsonObject } from '@convergent/core'
import { automergeBackend, type AutomergeDoc } from '../src/index.js'
import { checkChunks } from '../src/chunks.js'
import { actor, bomb, BOMB_STRING_BYTES, changeBomb, compressChange, hotEntity } from './fixtures.js'

const MiB = 1024 * 1024

/** How many maps `n` holds nested: { n: { n: {} } } → 2. */
function nestedDepth(value: JsonObject): number {
  let depth = 0
  for (let at = value.n; at !== undefined; at = (at as JsonObject).n) depth++
  return depth
}

describe('automerge: what a delta decodes to is bounded (decompression bombs)', function () {
  this.timeout(120_000)
  const backend = automergeBackend()

  /** A live entity to throw bombs at, and a way to see it was not touched. */
  function victim(): { doc: AutomergeDoc; unchanged(doc: AutomergeDoc): void } {
    const doc = backend.put(backend.create(actor(1)), { name: 'Mug', stock: 3 }).doc
    const hash = backend.versionHash(doc)
    return {
      doc,
      unchanged(after) {
        assert.deepEqual(backend.read(after), { name: 'Mug', stock: 3 })
        assert.deepEqual(backend.versionHash(after), hash)
        assert.equal(backend.hasPending(after), false)
      },
    }
  }

  it('the bomb is real: ~61 KB of document chunk holding a 60 MiB string', function () {
    const bytes = bomb()
    assert.ok(bytes.byteLength < 100_000, `${bytes.byteLength} bytes`)
    assert.equal(bytes[8], 0, 'a document chunk')
    assert.ok(checkChunks(bytes, { maxDecodedBytes: 2 * BOMB_STRING_BYTES }).decodedBytes > BOMB_STRING_BYTES)
  })

  it('a document chunk whose compressed columns inflate past maxDecodedBytes is refused with ERR_TOO_LARGE, the doc unchanged', function () {
    const v = victim()
    assert.throws(() => backend.applyDelta(v.doc, bomb(), { maxDecodedBytes: 8 * MiB }), { code: 'ERR_TOO_LARGE' })
    v.unchanged(v.doc)
    // Nor does it get in behind an honest chunk (mergeDeltas concatenates).
    const honest = backend.put(backend.create(actor(2)), { other: 1 }).delta!
    assert.throws(() => backend.applyDelta(v.doc, backend.mergeDeltas([honest, bomb()]), { maxDecodedBytes: 8 * MiB }), { code: 'ERR_TOO_LARGE' })
    v.unchanged(v.doc)
    // Into an empty document (an entity new here) neither.
    const empty = backend.create(actor(3))
    assert.throws(() => backend.applyDelta(empty, bomb(), { maxDecodedBytes: 8 * MiB }), { code: 'ERR_TOO_LARGE' })
    assert.equal(backend.read(empty), undefined)
  })

  it('a compressed change chunk that inflates past maxDecodedBytes is refused with ERR_TOO_LARGE, the doc unchanged', function () {
    const v = victim()
    assert.throws(() => backend.applyDelta(v.doc, changeBomb(), { maxDecodedBytes: 8 * MiB }), { code: 'ERR_TOO_LARGE' })
    v.unchanged(v.doc)
  })

  for (const inflateOn of ['thread-pool', 'event-loop'] as const) {
    it(`checkDelta (inflating on the ${inflateOn}) refuses both bombs before any document exists, and passes an honest compressed document`, async function () {
      const checker = automergeBackend({ inflateOn })
      const limits = { maxDecodedBytes: 8 * MiB }
      await assert.rejects(async () => checker.checkDelta!(bomb(), limits), { code: 'ERR_TOO_LARGE' })
      await assert.rejects(async () => checker.checkDelta!(changeBomb(), limits), { code: 'ERR_TOO_LARGE' })
      const compact = hotEntity(2000).whole
      await checker.checkDelta!(compact, limits)
      await assert.rejects(async () => checker.checkDelta!(compact, { maxDecodedBytes: 100 }), { code: 'ERR_TOO_LARGE' })
    })
  }

  it('without limits, a hard default (32 MiB) refuses the 60 MiB bombs; the backend option moves it', function () {
    const v = victim()
    assert.throws(() => backend.applyDelta(v.doc, bomb()), { code: 'ERR_TOO_LARGE' })
    assert.throws(() => backend.applyDelta(v.doc, changeBomb()), { code: 'ERR_TOO_LARGE' })
    v.unchanged(v.doc)
    const tight = automergeBackend({ maxDecodedBytes: 1000 })
    const honest = backend.put(backend.create(actor(4)), { text: 'x'.repeat(2000) }).delta!
    assert.throws(() => tight.applyDelta(tight.create(actor(5)), honest), { code: 'ERR_TOO_LARGE' })
    assert.throws(() => automergeBackend({ maxDecodedBytes: Number.NaN }), { code: 'ERR_INVALID_ARGUMENT' })
    assert.throws(() => backend.applyDelta(v.doc, honest, { maxDecodedBytes: -1 }), { code: 'ERR_INVALID_ARGUMENT' })
  })

  it('a delta whose changes nest objects deeper than maxDepth is refused before it is applied (Automerge applies recursively), the doc unchanged', function () {
    /** Changes making `depth` maps, each inside the one before: { n: { n: … } }. */
    const deep = (depth: number, who: number): Uint8Array => {
      const doc = A.change(A.init<Record<string, unknown>>({ actor: toHex(actor(who)) }), (d) => {
        let at: Record<string, unknown> = d
        for (let i = 0; i < depth; i++) {
          at.n = {}
          at = at.n as Record<string, unknown>
        }
      })
      return backend.mergeDeltas(A.getAllChanges(doc))
    }
    const v = victim()
    assert.throws(() => backend.applyDelta(v.doc, deep(17, 10), { maxDecodedBytes: 8 * MiB, maxDepth: 16 }), { code: 'ERR_INVALID_DELTA' })
    assert.throws(() => backend.applyDelta(v.doc, compressChange(deep(17, 11)), { maxDecodedBytes: 8 * MiB, maxDepth: 16 }), { code: 'ERR_INVALID_DELTA' })
    v.unchanged(v.doc)
    // At the limit it applies; without limits the default is core's (64).
    assert.equal(nestedDepth(backend.read(backend.applyDelta(v.doc, deep(16, 12), { maxDecodedBytes: 8 * MiB, maxDepth: 16 }))!), 16)
    const w = victim()
    assert.throws(() => backend.applyDelta(w.doc, deep(65, 13)), { code: 'ERR_INVALID_DELTA' })
    w.unchanged(w.doc)
    assert.equal(nestedDepth(backend.read(backend.applyDelta(w.doc, deep(64, 14)))!), 64)
  })

  it('load refuses stored bytes that decode past maxLoadedBytes (a bomb stored before limits)', function () {
    const small = automergeBackend({ maxLoadedBytes: 8 * MiB })
    assert.throws(() => small.load(bomb(), [], actor(6)), { code: 'ERR_TOO_LARGE' })
    assert.throws(() => small.load(undefined, [changeBomb()], actor(6)), { code: 'ERR_TOO_LARGE' })
  })

  it('the limit is exact: a delta decodes to its uncompressed size plus its rows, admitted at that limit and refused one byte under', function () {
    // A document with compressible columns (A.save deflates columns over 256 bytes).
    let doc = backend.create(actor(7))
    for (let i = 0; i < 50; i++) doc = backend.put(doc, { text: `line ${i} `.repeat(40), n: i }).doc
    const saved = backend.save(doc)
    const uncompressed = A.getBackend(doc).saveNoCompress()
    assert.ok(saved.byteLength * 4 < uncompressed.byteLength, 'columns are compressed')
    for (const delta of [saved, backend.mergeDeltas([saved, backend.put(doc, { text: 'y'.repeat(3000) }).delta!])]) {
      const decoded = checkChunks(delta, { maxDecodedBytes: Infinity }).decodedBytes
      const target = backend.put(backend.create(actor(8)), { other: true }).doc
      assert.throws(() => backend.applyDelta(target, delta, { maxDecodedBytes: decoded - 1 }), { code: 'ERR_TOO_LARGE' })
      assert.deepEqual(backend.read(target), { other: true })
      const applied = backend.applyDelta(target, delta, { maxDecodedBytes: decoded })
      assert.equal((backend.read(applied) as JsonObject).other, true)
    }
    // Compressed or not, the same document decodes to the same size: its bytes uncompressed,
    // plus 16 bytes per row (operations and changes).
    const decoded = checkChunks(saved, { maxDecodedBytes: Infinity }).decodedBytes
    assert.equal(checkChunks(uncompressed, { maxDecodedBytes: Infinity }).decodedBytes, decoded)
    assert.ok(decoded > uncompressed.byteLength && decoded < uncompressed.byteLength + 200 * 16, `${decoded} for ${uncompressed.byteLength} bytes`)
  })

  it('a change of ~120 bytes holding a million run-length-encoded list insertions is refused (ERR_TOO_LARGE)', function () {
    // Ten million of them in 128 bytes ran Automerge's WASM heap out of memory.
    const handle = A.getBackend(A.init({ actor: 'cc'.repeat(16) }))
    const list = handle.putObject('_root', 'list', [])
    handle.splice(list, 0, 0, new Array(1_000_000).fill(null))
    handle.commit(null, 0)
    const change = handle.getLastLocalChange()!
    handle.free()
    assert.ok(change.byteLength < 200, `${change.byteLength} bytes`)
    const v = victim()
    assert.throws(() => backend.applyDelta(v.doc, change, { maxDecodedBytes: 8 * MiB }), { code: 'ERR_TOO_LARGE' })
    assert.throws(() => backend.applyDelta(v.doc, compressChange(change), { maxDecodedBytes: 8 * MiB }), { code: 'ERR_TOO_LARGE' })
    v.unchanged(v.doc)
  })

  it('an honest entity with a 100,000-change history replicates under the default limit', function () {
    const { whole, changes } = hotEntity(100_000)
    const decoded = checkChunks(whole, { maxDecodedBytes: Infinity }).decodedBytes
    // Measured: ~2.9 bytes per change for an integer field, plus 16 per row: ~35 (README).
    assert.ok(decoded < 8 * MiB, `${decoded} bytes decoded`)
    const source = backend.load(whole, [], actor(9))
    const target = backend.applyDelta(backend.create(actor(10)), backend.deltaSince(source, new Uint8Array(0))!, { maxDecodedBytes: 32 * MiB })
    assert.deepEqual(backend.read(target), { name: 'Blue mug', stock: changes - 1 })
    assert.deepEqual(backend.versionHash(target), backend.versionHash(source))
    assert.throws(() => backend.applyDelta(backend.create(actor(11)), whole, { maxDecodedBytes: decoded - 1 }), { code: 'ERR_TOO_LARGE' })
  })
})

describe('automerge: large arrays', function () {
  this.timeout(120_000)
  const backend = automergeBackend()

  it('puts and reads an array of 200,000 scalars (no call stack overflow), through deltas and snapshots too', function () {
    const list = Array.from({ length: 200_000 }, (_, i) => (i % 3 === 0 ? `s${i}` : i % 3 === 1 ? i : i * 0.5))
    const a = backend.put(backend.create(actor(12)), { list, n: 1 })
    assert.deepEqual(backend.read(a.doc), { list, n: 1 })
    const b = backend.applyDelta(backend.create(actor(13)), a.delta!)
    assert.deepEqual(backend.read(b), { list, n: 1 })
    // One element changed, then one appended: small deltas.
    const edited = [...list]
    edited[100_000] = 'changed'
    const c = backend.put(a.doc, { list: edited, n: 1 })
    const appended = [...edited, 'end']
    const e = backend.put(c.doc, { list: appended, n: 1 })
    let d = b
    for (const delta of [c.delta!, e.delta!]) {
      assert.ok(delta.byteLength < 1000, `${delta.byteLength} bytes`)
      d = backend.applyDelta(d, delta)
    }
    assert.deepEqual(backend.read(d), { list: appended, n: 1 })
    assert.deepEqual(backend.read(backend.load(backend.save(d), [], actor(14))), { list: appended, n: 1 })
  })
})
