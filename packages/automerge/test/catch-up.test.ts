import assert from 'node:assert/strict'
import type { JsonObject } from '@convergent/core'
import { automergeBackend, type AutomergeDoc } from '../src/index.js'
import { actor, hotEntity } from './fixtures.js'

const MiB = 1024 * 1024
const DOCUMENT = 0

describe('automerge: catch-up deltas stay compact', function () {
  this.timeout(120_000)
  const backend = automergeBackend()

  it('a replica partitioned while a hot entity changed 100,000 times catches up within 2x the compact snapshot', function () {
    const { whole, half, changes } = hotEntity(100_000)
    const source = backend.load(whole, [], actor(1))
    const behind = backend.load(half, [], actor(2))
    const delta = backend.deltaSince(source, backend.version(behind))!
    // A.saveSince from the midpoint is ~6.7 MB here: over the 2 MiB delta limit, forever.
    assert.ok(delta.byteLength <= 2 * whole.byteLength, `${delta.byteLength} bytes sent, snapshot ${whole.byteLength}`)
    assert.ok(delta.byteLength < 2 * MiB)
    const caught = backend.applyDelta(behind, delta, { maxDecodedBytes: 32 * MiB })
    assert.deepEqual(backend.read(caught), { name: 'Blue mug', stock: changes - 1 })
    assert.deepEqual(backend.versionHash(caught), backend.versionHash(source))
    assert.equal(backend.deltaSince(source, backend.version(caught)), null)
  })

  it('to a replica that knows none of its heads (both sides changed), a short history goes as its changes, a long one as the document', function () {
    const diverged = (n: number): { doc: AutomergeDoc; other: AutomergeDoc } => {
      let doc = backend.create(actor(10))
      for (let i = 0; i < n; i++) doc = backend.put(doc, { name: 'Mug', stock: i }).doc
      const other = backend.put(backend.create(actor(11)), { name: 'Cup', stock: 1 }).doc
      return { doc, other }
    }
    const short = diverged(3)
    const changes = backend.deltaSince(short.doc, backend.version(short.other))!
    assert.equal(changes[8], 1, 'change chunks: cheap to apply to a copy with changes of its own')
    const merged = backend.applyDelta(short.other, changes)
    assert.equal(backend.deltaSince(short.doc, backend.version(merged)), null)
    const long = diverged(2000)
    const doc = backend.deltaSince(long.doc, backend.version(long.other))!
    assert.equal(doc[8], DOCUMENT, 'the compact document: 2,000 changes would not fit compactCheckBytes')
    // A replica that holds nothing loads a document (no merge to save): still the compact one.
    const fifty = diverged(50)
    assert.equal(backend.deltaSince(fifty.doc, backend.version(backend.create(actor(12))))![8], DOCUMENT)
    // One change of 20,000 fields: counted by its operations, never serialised change by change.
    const wide = Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`f${i}`, i]))
    const big = backend.put(backend.create(actor(13)), wide).doc
    assert.equal(backend.deltaSince(big, backend.version(short.other))![8], DOCUMENT)
  })

  describe('a whole document as the delta, into a document holding part of its history', function () {
    /** A source with enough history that deltaSince sends its document, and its deltas. */
    function history(n: number): { doc: AutomergeDoc; deltas: Uint8Array[] } {
      let doc = backend.create(actor(4))
      const deltas: Uint8Array[] = []
      for (let i = 0; i < n; i++) {
        const change = backend.put(doc, { name: 'Mug', stock: i, note: `update ${i}` })
        doc = change.doc
        deltas.push(change.delta!)
      }
      return { doc, deltas }
    }

    const replicaWith = (deltas: readonly Uint8Array[], n: number): AutomergeDoc =>
      deltas.reduce((d, delta) => backend.applyDelta(d, delta), backend.create(actor(n)))

    it('applies, is idempotent, and equals applying the changes', function () {
      const { doc, deltas } = history(400)
      const behind = replicaWith(deltas.slice(0, 100), 5)
      const delta = backend.deltaSince(doc, backend.version(behind))!
      assert.equal(delta[8], DOCUMENT, 'the document is the smaller delta here')
      const once = backend.applyDelta(behind, delta)
      assert.deepEqual(backend.read(once), backend.read(doc))
      assert.deepEqual(backend.versionHash(once), backend.versionHash(doc))
      const twice = backend.applyDelta(once, delta)
      assert.deepEqual(backend.read(twice), backend.read(doc))
      assert.deepEqual(backend.versionHash(twice), backend.versionHash(doc))
      // And it keeps working: its writes reach the source, and a small gap is sent as changes.
      const after = backend.put(twice, { name: 'Mug', stock: -1 })
      const back = backend.deltaSince(after.doc, backend.version(doc))!
      assert.equal(back[8], 1, 'a change chunk')
      assert.ok(back.byteLength < 200)
      assert.deepEqual(backend.read(backend.applyDelta(doc, back)), { name: 'Mug', stock: -1 })
    })

    it('keeps what only the receiver has (concurrent local changes) and converges both ways', function () {
      const { doc, deltas } = history(400)
      let behind = replicaWith(deltas.slice(0, 100), 6)
      behind = backend.put(behind, { ...(backend.read(behind) as JsonObject), local: 'only here' }).doc
      const delta = backend.deltaSince(doc, backend.version(behind))!
      assert.equal(delta[8], DOCUMENT)
      const merged = backend.applyDelta(behind, delta)
      assert.deepEqual(backend.read(merged), { ...(backend.read(doc) as JsonObject), local: 'only here' })
      const back = backend.applyDelta(doc, backend.deltaSince(merged, backend.version(doc))!)
      assert.deepEqual(backend.versionHash(back), backend.versionHash(merged))
      assert.deepEqual(backend.read(back), backend.read(merged))
    })

    it('with queued changes: they stay queued until the document brings their dependencies, then apply', function () {
      const { doc, deltas } = history(600)
      // Holds 0..99, plus 150 and 590 whose dependencies it lacks.
      const behind = replicaWith([...deltas.slice(0, 100), deltas[150]!, deltas[590]!], 7)
      assert.equal(backend.hasPending(behind), true)
      // A document holding changes up to 349: 150 applies, 590 stays queued.
      const partial = replicaWith(deltas.slice(0, 350), 8)
      const midDoc = backend.deltaSince(partial, backend.version(behind))!
      assert.equal(midDoc[8], DOCUMENT)
      const mid = backend.applyDelta(behind, midDoc)
      assert.equal(backend.hasPending(mid), true)
      assert.deepEqual(backend.read(mid), backend.read(partial))
      const full = backend.applyDelta(mid, backend.deltaSince(doc, backend.version(mid))!)
      assert.equal(backend.hasPending(full), false)
      assert.deepEqual(backend.versionHash(full), backend.versionHash(doc))
      assert.deepEqual(backend.read(full), backend.read(doc))
    })
  })
})
