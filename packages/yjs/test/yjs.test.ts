import assert from 'node:assert/strict'
import * as Y from 'yjs'
import { backendComplianceSuite, seededRandom } from '@convergent/core/testing'
import { sha256, toHex } from '@convergent/core'
import { yjsBackend } from '../src/index.js'
import { addRange, encodeVersion } from '../src/version.js'
import { entityText } from '../src/read.js'
import type { JsonObject, JsonValue } from '@convergent/core'
import fc from 'fast-check'

/** JSON with every object's keys sorted (UTF-16 order); '' for undefined. The reference for entityText. */
function canonicalJson(value: JsonValue | undefined): string {
  if (value === undefined) return ''
  const walk = (v: JsonValue): string => {
    if (Array.isArray(v)) return '[' + v.map(walk).join(',') + ']'
    if (v !== null && typeof v === 'object') {
      return (
        '{' +
        Object.keys(v)
          .sort()
          .map((k) => JSON.stringify(k) + ':' + walk(v[k]!))
          .join(',') +
        '}'
      )
    }
    return JSON.stringify(v)
  }
  return walk(value)
}

backendComplianceSuite('yjs', yjsBackend)

describe('yjs backend specifics', function () {
  const backend = yjsBackend()
  const actor = (n: number): Uint8Array => Uint8Array.from({ length: 16 }, (_, i) => (i < 4 ? (i === 3 ? n : 0) : i))

  it('the version covers the delete set: after map.delete the state vectors match but the hashes do not', function () {
    const a = backend.put(backend.create(actor(1)), { x: 1, y: 2 }).doc
    const b = backend.create(actor(2))
    backend.applyDelta(b, Y.encodeStateAsUpdate(a))
    const change = backend.put(a, { x: 1 })
    assert.ok(change.delta !== null)
    assert.equal(toHex(Y.encodeStateVector(a)), toHex(Y.encodeStateVector(b)))
    assert.notEqual(toHex(backend.versionHash(a)), toHex(backend.versionHash(b)))
    backend.applyDelta(b, backend.deltaSince(a, backend.version(b))!)
    assert.equal(toHex(backend.versionHash(a)), toHex(backend.versionHash(b)))
  })

  it('derives the client id from the first 4 actor bytes, never 0', function () {
    assert.equal(backend.create(Uint8Array.of(0, 0, 1, 2, ...new Array(12).fill(9))).clientID, 0x0102)
    assert.equal(backend.create(new Uint8Array(16)).clientID, 1)
  })

  it('keeps nested Y.Maps when an object field is rewritten, and stores strings as plain values', function () {
    const doc = backend.put(backend.create(actor(3)), { o: { a: 1 }, s: 'text' }).doc
    const inner = doc.getMap('value').get('o')
    backend.put(doc, { o: { a: 2, b: 3 }, s: 'text 2' })
    assert.equal(doc.getMap('value').get('o'), inner)
    assert.equal(typeof doc.getMap('value').get('s'), 'string')
  })

  it('rejects updates that write to other root types or hold other content', function () {
    const other = new Y.Doc()
    other.getText('t').insert(0, 'hello')
    const doc = backend.create(actor(4))
    assert.throws(() => backend.applyDelta(doc, Y.encodeStateAsUpdate(other)), { code: 'ERR_INVALID_DELTA' })
    const foreignRoot = new Y.Doc()
    foreignRoot.getMap('elsewhere').set('a', 1)
    assert.throws(() => backend.applyDelta(doc, Y.encodeStateAsUpdate(foreignRoot)), { code: 'ERR_INVALID_DELTA' })
    assert.equal(backend.hasPending(doc), false)
  })

  it('reads a "__proto__" field as an own property', function () {
    const value = JSON.parse('{"__proto__": {"a": 1}}')
    const doc = backend.put(backend.create(actor(5)), value).doc
    const read = backend.read(doc)!
    assert.deepEqual(Object.keys(read), ['__proto__'])
    assert.equal(Object.getPrototypeOf(read), Object.prototype)
  })

  describe('the version hash covers the content', function () {
    it('two documents with equal versions but different content under the same (client, clock) have different version hashes, also after exchanging deltas', function () {
      // The same client id and the same sequence of operations: the same ids, other content.
      for (const [honest, forged] of [
        [{ a: 1 }, { a: 2 }],
        [{ a: 1 }, { b: 1 }],
        [{ o: { x: 'y' } }, { o: { x: 'z' } }],
        [{ list: [1, 2] }, { list: [2, 1] }],
      ] as [JsonObject, JsonObject][]) {
        const a = backend.create(actor(10))
        const b = backend.create(actor(10))
        const da = backend.put(a, honest).delta!
        const db = backend.put(b, forged).delta!
        assert.equal(toHex(backend.version(a)), toHex(backend.version(b)))
        assert.notDeepEqual(backend.read(a), backend.read(b))
        assert.notEqual(toHex(backend.versionHash(a)), toHex(backend.versionHash(b)))
        // Yjs ignores structs whose ids it holds: the two stay apart, and anti-entropy must see it.
        backend.applyDelta(a, db)
        backend.applyDelta(b, da)
        assert.equal(backend.deltaSince(a, backend.version(b)), null)
        assert.notDeepEqual(backend.read(a), backend.read(b))
        assert.notEqual(toHex(backend.versionHash(a)), toHex(backend.versionHash(b)))
      }
    })

    it('the texts it keeps per Y.Map and Y.Array stay those of a walk from scratch, through nested edits, remote deltas, deletes and re-creation', function () {
      const small = fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constantFrom('s', 't'))
      const { value } = fc.letrec<{ value: JsonValue }>((tie) => ({
        value: fc.oneof(
          { depthSize: 'small', maxDepth: 4 },
          small,
          fc.array(tie('value'), { maxLength: 3 }),
          fc.dictionary(fc.constantFrom('a', 'b', 'c'), tie('value'), { maxKeys: 3 }),
        ),
      }))
      const step = fc.record({
        who: fc.nat(1),
        value: fc.dictionary(fc.constantFrom('a', 'b', 'c'), value, { maxKeys: 3 }),
        how: fc.constantFrom('put', 'deep', 'deep', 'delete'),
        leaf: fc.nat(),
        sync: fc.boolean(),
      })
      /** `v` with one leaf as deep as it goes changed to `leaf` (so that only the innermost type changes). */
      const deepEdit = (v: JsonValue, leaf: number): JsonValue => {
        if (Array.isArray(v)) return v.length === 0 ? [leaf] : v.map((e, i) => (i === leaf % v.length ? deepEdit(e, leaf) : e))
        if (v !== null && typeof v === 'object') {
          const keys = Object.keys(v)
          if (keys.length === 0) return { a: leaf }
          const k = keys.find((key) => typeof v[key] === 'object' && v[key] !== null) ?? keys[leaf % keys.length]!
          return { ...v, [k]: deepEdit(v[k]!, leaf) }
        }
        return v === leaf ? leaf + 1 : leaf
      }
      fc.assert(
        fc.property(fc.array(step, { minLength: 1, maxLength: 12 }), (steps) => {
          const docs = [backend.create(actor(20)), backend.create(actor(21))]
          for (const s of steps) {
            const doc = docs[s.who]!
            backend.versionHash(doc) // keep texts from the state before
            if (s.how === 'delete') backend.delete(doc)
            else if (s.how === 'put') backend.put(doc, s.value)
            else backend.put(doc, deepEdit(backend.read(doc) ?? s.value, s.leaf) as JsonObject)
            if (s.sync) {
              const other = docs[1 - s.who]!
              backend.versionHash(other)
              const delta = backend.deltaSince(doc, backend.version(other))
              if (delta !== null) backend.applyDelta(other, delta)
            }
            for (const d of docs) {
              const afresh = sha256(Buffer.from(Y.encodeSnapshot(Y.snapshot(d))).toString('latin1') + entityText(d))
              assert.equal(toHex(backend.versionHash(d)), toHex(afresh))
            }
          }
        }),
        { numRuns: 200 },
      )
    })

    it('entityText is canonical JSON of what read returns (keys sorted), for any value, escapes and odd keys included', function () {
      const key = fc.oneof(
        fc.string({ maxLength: 4 }),
        fc.string({ unit: 'binary', maxLength: 4 }),
        fc.constantFrom('"', '\\', '\n', '\ud800', '🌍', '10', '2', '__proto__'),
      )
      const scalar = fc.oneof(
        fc.string({ unit: 'binary', maxLength: 6 }),
        fc.double(),
        fc.integer(),
        fc.boolean(),
        fc.constant(null),
        fc.constantFrom('a"b', 'x\\y', '\u0007', '\udfff', -0),
      )
      const { value } = fc.letrec<{ value: JsonValue }>((tie) => ({
        value: fc.oneof(
          { depthSize: 'small', maxDepth: 3 },
          scalar,
          fc.array(tie('value'), { maxLength: 3 }),
          fc.dictionary(key, tie('value'), { maxKeys: 4 }),
        ),
      }))
      fc.assert(
        fc.property(fc.dictionary(key, value, { maxKeys: 5 }), fc.boolean(), (v, remove) => {
          const doc = backend.create(actor(11))
          backend.put(doc, v)
          if (remove) backend.delete(doc)
          assert.equal(entityText(doc), canonicalJson(backend.read(doc)))
        }),
        { numRuns: 300 },
      )
      assert.equal(entityText(backend.create(actor(12))), '')
    })
  })

  describe('the version kept up to date per transaction', function () {
    const expected = (doc: Y.Doc): string => toHex(Y.encodeSnapshot(Y.snapshot(doc)))

    it('addRange keeps sorted, merged ranges equal to the union of what was added', function () {
      const rand = seededRandom(7)
      for (let round = 0; round < 200; round++) {
        const ds = new Map<number, number[]>()
        const covered = new Set<number>()
        for (let k = 0; k < 30; k++) {
          const start = Math.floor(rand() * 100)
          const end = start + 1 + Math.floor(rand() * 6)
          addRange(ds, 1, start, end)
          for (let c = start; c < end; c++) covered.add(c)
        }
        const want: number[] = []
        for (let c = 0; c < 120; c++) {
          if (!covered.has(c)) continue
          if (want.length > 0 && want[want.length - 1] === c) want[want.length - 1] = c + 1
          else want.push(c, c + 1)
        }
        assert.deepEqual(ds.get(1), want)
      }
    })

    it("equals Yjs' own snapshot encoding through random writes, deletes and deltas in any order", function () {
      for (let seed = 1; seed <= 8; seed++) {
        const rand = seededRandom(seed)
        const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!
        const docs = [1, 2, 3].map((n) => backend.create(actor(n)))
        const inbox: Uint8Array[][] = [[], [], []]
        const keys = ['a', 'b', 'c', 'd']
        const randomValue = () => {
          const value: Record<string, unknown> = {}
          for (const k of keys)
            if (rand() < 0.6)
              value[k] = rand() < 0.3 ? { x: Math.floor(rand() * 3), y: [1, 2] } : rand() < 0.3 ? [Math.floor(rand() * 4), 'z'] : Math.floor(rand() * 5)
          return value as never
        }
        for (let step = 0; step < 150; step++) {
          const i = Math.floor(rand() * docs.length)
          const doc = docs[i]!
          const r = rand()
          let delta: Uint8Array | null = null
          if (r < 0.45) delta = backend.put(doc, randomValue()).delta
          else if (r < 0.55) delta = backend.delete(doc).delta
          else if (r < 0.65) {
            // An anti-entropy repair: carries deleted content and GC structs, not just changes.
            const repair = backend.deltaSince(pick(docs), backend.version(doc))
            if (repair !== null) backend.applyDelta(doc, repair)
          } else if (inbox[i]!.length > 0) {
            // Deliver a random pending delta (out of order: some stay pending for a while).
            const j = Math.floor(rand() * inbox[i]!.length)
            backend.applyDelta(doc, inbox[i]!.splice(j, 1)[0]!)
          }
          if (delta !== null) {
            for (let o = 0; o < docs.length; o++) {
              if (o === i) continue
              inbox[o]!.push(delta)
              if (rand() < 0.1) inbox[o]!.push(delta) // duplicated
            }
          }
          // Start tracking some documents late (after history exists), others from the start.
          const d = pick(docs)
          if (step > 20 || d !== docs[2]) {
            assert.equal(toHex(encodeVersion(d)), expected(d), `seed ${seed}, step ${step}`)
            assert.equal(
              toHex(backend.versionHash(d)),
              toHex(sha256(Buffer.from(Y.encodeSnapshot(Y.snapshot(d))).toString('latin1') + canonicalJson(backend.read(d)))),
            )
          }
        }
        for (const [i, doc] of docs.entries()) {
          for (const delta of inbox[i]!) backend.applyDelta(doc, delta)
          assert.equal(toHex(encodeVersion(doc)), expected(doc))
          // A reload rebuilds the same version from the saved state.
          const reloaded = backend.load(backend.save(doc), [], actor(9))
          assert.equal(toHex(encodeVersion(reloaded)), toHex(encodeVersion(doc)))
        }
        // Everyone has everything: equal states, equal hashes.
        const hashes = new Set(docs.map((d) => toHex(backend.versionHash(d))))
        assert.equal(hashes.size, 1, `seed ${seed}`)
      }
    })
  })
})
