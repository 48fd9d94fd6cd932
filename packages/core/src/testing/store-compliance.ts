/**
 * The Store compliance suite: every Store implementation runs it (see store.ts for the
 * contract). Needs mocha globals and fast-check; asserts with node:assert (chai ships
 * no types and @types/chai is not installed).
 *
 * `makeStore` returns a store that is NOT yet open; the suite opens it, and closes whatever
 * store it holds before calling `cleanup` (which removes the data). `reopen`, if given,
 * returns a new, unopened store over the same data; it is called after the suite closed the
 * previous one.
 */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { LEAF_COUNT, leafOf } from '../digest.js'
import { isConvergentError, type ErrorCode } from '../errors.js'
import { sha256, toHex } from '../hash.js'
import type { EntityHead, FeedEntry, Store, StoredEntity, StoreOp } from '../store.js'

export interface StoreFixture {
  store: Store
  reopen?: () => Promise<Store>
  cleanup: () => Promise<void>
}

const encoder = new TextEncoder()

function text(s: string): Uint8Array {
  return encoder.encode(s)
}

function makeHead(seed: string, deltaCount = 0, deleted = false, backend = 'yjs'): EntityHead {
  return { backend, versionHash: sha256(seed), deltaCount, deleted }
}

function feedEntry(seq: number, id: string, kind: FeedEntry['kind'] = 'put', origin = 'local'): FeedEntry {
  return { seq, id, origin, time: 1_700_000_000_000 + seq, kind }
}

/** What core writes for one new entity: delta 0, head, digest leaf, feed entry. */
function entityOps(collection: string, id: string, seq: number): StoreOp[] {
  return [
    { type: 'delta', collection, id, index: 0, bytes: text(`delta of ${id}`) },
    { type: 'head', collection, id, head: makeHead(id, 1) },
    { type: 'leaf', collection, leaf: leafOf(id), bytes: sha256('leaf', id) },
    { type: 'feed', collection, entry: feedEntry(seq, id) },
  ]
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of iterable) out.push(x)
  return out
}

/** Bytes as hex, checking they are a Uint8Array (so deep-equal compares content, not class). */
function hex(bytes: Uint8Array | undefined): string | undefined {
  if (bytes === undefined) return undefined
  assert.ok(bytes instanceof Uint8Array, 'bytes must come back as a Uint8Array')
  return toHex(bytes)
}

function plainHead(head: EntityHead | undefined): unknown {
  if (head === undefined) return undefined
  return { backend: head.backend, versionHash: hex(head.versionHash), deltaCount: head.deltaCount, deleted: head.deleted }
}

function plainEntity(entity: StoredEntity | undefined): unknown {
  if (entity === undefined) return undefined
  return { head: plainHead(entity.head), snapshot: hex(entity.snapshot), deltas: entity.deltas.map(hex) }
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  let error: unknown
  try {
    await promise
  } catch (err) {
    error = err
  }
  assert.notEqual(error, undefined, `expected a rejection with ${code}`)
  assert.equal(isConvergentError(error, code), true, `expected ${code}, got ${String(error)}`)
}

const nextTick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** Ids the store must keep apart: separators, prefixes of one another, unicode, 256 bytes. */
const UNUSUAL_IDS = [
  'a',
  'a\u0001',
  'a\u0001b',
  'a!',
  'a/b',
  'a b',
  '/',
  '!',
  '\u0001',
  '\u007f',
  '\uffff',
  'ünïcødé',
  '日本語',
  '🙂',
  '..',
  '\\',
  '\'"',
  'x'.repeat(256),
  '€'.repeat(85) + 'a', // 256 bytes of UTF-8
]

/** Well-formed, non-empty ids without NUL of at most 256 bytes, from all of Unicode. */
const idArb = fc
  .string({ unit: 'binary', minLength: 1, maxLength: 24 })
  .filter((s) => !s.includes('\u0000') && s.isWellFormed() && Buffer.byteLength(s) <= 256)

export function storeComplianceSuite(name: string, makeStore: () => Promise<StoreFixture>): void {
  describe(`Store compliance: ${name}`, function () {
    let fixture: StoreFixture
    let store: Store

    beforeEach(async function () {
      fixture = await makeStore()
      store = fixture.store
      await store.open()
    })

    afterEach(async function () {
      await store.close().catch(() => undefined)
      await fixture.cleanup()
    })

    /** Closes the store and continues with a new one over the same data. */
    async function reopen(): Promise<Store> {
      await store.close()
      store = await fixture.reopen!()
      await store.open()
      return store
    }

    describe('round trips', function () {
      it('a fresh store is empty', async function () {
        assert.equal(await store.getHead('c', 'x'), undefined)
        assert.equal(await store.readEntity('c', 'x'), undefined)
        assert.equal(await store.lastSeq('c'), 0)
        assert.equal((await store.collections()).size, 0)
        assert.equal(await store.getMeta('k'), undefined)
        assert.deepEqual(await collect(store.heads('c')), [])
        assert.deepEqual(await collect(store.leaves('c')), [])
        assert.deepEqual(await collect(store.feed('c', 0)), [])
      })

      it('heads round-trip exactly (getHead and heads)', async function () {
        let run = 0
        await fc.assert(
          fc.asyncProperty(
            idArb,
            fc.record({
              backend: fc.string({ unit: 'binary', maxLength: 12 }).filter((s) => s.isWellFormed()),
              versionHash: fc.uint8Array({ minLength: 32, maxLength: 32 }),
              deltaCount: fc.oneof(fc.nat({ max: 1000 }), fc.constant(2 ** 32 - 1)),
              deleted: fc.boolean(),
            }),
            async (id, head) => {
              const collection = `heads-${run++}`
              await store.write([{ type: 'head', collection, id, head }])
              assert.deepEqual(plainHead(await store.getHead(collection, id)), plainHead(head))
              const listed = await collect(store.heads(collection))
              assert.deepEqual(listed.map(([i, h]) => [i, plainHead(h)]), [[id, plainHead(head)]])
            },
          ),
          { numRuns: 40 },
        )
      })

      it('snapshot and deltas come back through readEntity, in index order', async function () {
        const deltas = [text('d0'), new Uint8Array(0), text('d2'), new Uint8Array(70_000).fill(7)]
        await store.write([
          { type: 'snapshot', collection: 'c', id: 'e', bytes: text('snap') },
          ...deltas.map((bytes, index): StoreOp => ({ type: 'delta', collection: 'c', id: 'e', index, bytes })),
          { type: 'head', collection: 'c', id: 'e', head: makeHead('e', deltas.length, true, 'automerge') },
        ])
        assert.deepEqual(plainEntity(await store.readEntity('c', 'e')), {
          head: plainHead(makeHead('e', deltas.length, true, 'automerge')),
          snapshot: hex(text('snap')),
          deltas: deltas.map(hex),
        })
        // No snapshot stored: snapshot is undefined.
        await store.write([
          { type: 'delta', collection: 'c', id: 'f', index: 0, bytes: text('only') },
          { type: 'head', collection: 'c', id: 'f', head: makeHead('f', 1) },
        ])
        assert.deepEqual(plainEntity(await store.readEntity('c', 'f')), {
          head: plainHead(makeHead('f', 1)),
          snapshot: undefined,
          deltas: [hex(text('only'))],
        })
        // Entities are per collection.
        assert.equal(await store.readEntity('other', 'e'), undefined)
      })

      it('feed entries round-trip exactly', async function () {
        let run = 0
        await fc.assert(
          fc.asyncProperty(
            fc.array(
              fc.record({
                id: idArb,
                origin: fc.oneof(fc.constant('local'), fc.string({ unit: 'binary', maxLength: 60 }).filter((s) => s.isWellFormed())),
                time: fc.maxSafeNat(),
                kind: fc.constantFrom<FeedEntry['kind']>('put', 'delete', 'remote'),
              }),
              { minLength: 1, maxLength: 12 },
            ),
            async (entries) => {
              const collection = `feed-${run++}`
              const withSeq = entries.map((e, i): FeedEntry => ({ ...e, seq: i + 1 }))
              await store.write(withSeq.map((entry): StoreOp => ({ type: 'feed', collection, entry })))
              assert.deepEqual(await collect(store.feed(collection, 0)), withSeq)
            },
          ),
          { numRuns: 30 },
        )
      })

      it('leaves round-trip; an all-zero leaf is not listed', async function () {
        const leaves = new Map<number, string>()
        const ops: StoreOp[] = []
        for (const leaf of [0, 1, 255, 4096, 40_000, LEAF_COUNT - 1]) {
          const bytes = sha256('leaf', String(leaf))
          leaves.set(leaf, hex(bytes)!)
          ops.push({ type: 'leaf', collection: 'c', leaf, bytes })
        }
        ops.push({ type: 'leaf', collection: 'other', leaf: 7, bytes: sha256('x') })
        await store.write(ops)
        const listed = async (): Promise<Map<number, string | undefined>> =>
          new Map((await collect(store.leaves('c'))).map(([leaf, bytes]) => [leaf, hex(bytes)]))
        assert.deepEqual(await listed(), leaves)

        await store.write([
          { type: 'leaf', collection: 'c', leaf: 255, bytes: new Uint8Array(32) }, // emptied
          { type: 'leaf', collection: 'c', leaf: 9, bytes: new Uint8Array(32) }, // never set
        ])
        leaves.delete(255)
        assert.deepEqual(await listed(), leaves)
      })

      it('collections and meta round-trip; later writes replace earlier ones', async function () {
        await store.write([
          { type: 'collection', collection: 'products', meta: { backend: 'yjs' } },
          { type: 'collection', collection: 'orders/eu', meta: { backend: 'automerge' } },
          { type: 'meta', key: 'peer-id', bytes: text('12D3Koo') },
          { type: 'meta', key: 'empty', bytes: new Uint8Array(0) },
        ])
        assert.deepEqual(
          await store.collections(),
          new Map([
            ['products', { backend: 'yjs' }],
            ['orders/eu', { backend: 'automerge' }],
          ]),
        )
        assert.equal(hex(await store.getMeta('peer-id')), hex(text('12D3Koo')))
        assert.equal(hex(await store.getMeta('empty')), '')
        await store.write([
          { type: 'collection', collection: 'products', meta: { backend: 'automerge' } },
          { type: 'meta', key: 'peer-id', bytes: text('other') },
        ])
        assert.deepEqual((await store.collections()).get('products'), { backend: 'automerge' })
        assert.equal(hex(await store.getMeta('peer-id')), hex(text('other')))
      })

      it('keeps its own copy of bytes: neither side mutating later changes what is stored', async function () {
        const delta = text('original')
        const meta = text('meta')
        const hash = sha256('v')
        const head: EntityHead = { backend: 'yjs', versionHash: hash, deltaCount: 1, deleted: false }
        const written = store.write([
          { type: 'delta', collection: 'c', id: 'e', index: 0, bytes: delta },
          { type: 'head', collection: 'c', id: 'e', head },
          { type: 'meta', key: 'm', bytes: meta },
        ])
        delta.fill(0) // the caller reuses its buffers right after write() returns
        meta.fill(0)
        hash.fill(0)
        await written
        const read = (await store.readEntity('c', 'e'))!
        assert.equal(hex(read.deltas[0]), hex(text('original')))
        assert.equal(hex(read.head.versionHash), hex(sha256('v')))
        assert.equal(hex(await store.getMeta('m')), hex(text('meta')))

        read.deltas[0]!.fill(1) // and the reader may keep (and change) what it got
        read.head.versionHash.fill(1)
        ;(await store.getMeta('m'))!.fill(1)
        const again = (await store.readEntity('c', 'e'))!
        assert.equal(hex(again.deltas[0]), hex(text('original')))
        assert.equal(hex(again.head.versionHash), hex(sha256('v')))
        assert.equal(hex(await store.getMeta('m')), hex(text('meta')))
      })
    })

    describe('atomicity', function () {
      it('the ops of one write() are all visible or none, even to concurrent readers', async function () {
        for (let round = 0; round < 5; round++) {
          const ops: StoreOp[] = [{ type: 'meta', key: `first-${round}`, bytes: text('1') }]
          for (let i = 0; i < 300; i++) {
            ops.push({ type: 'delta', collection: 'c', id: `e${round}`, index: i, bytes: new Uint8Array(1024).fill(i) })
          }
          ops.push({ type: 'meta', key: `last-${round}`, bytes: text('1') })
          let done = false
          const written = store.write(ops).finally(() => {
            done = true
          })
          let torn = 0
          let polls = 0
          while (!done) {
            // First op first: once it is visible, an atomic write has made the last one visible too.
            const first = await store.getMeta(`first-${round}`)
            const last = await store.getMeta(`last-${round}`)
            if (first !== undefined && last === undefined) torn++
            // Mostly back to back (to catch ops applied one by one within microtasks), but
            // now and then yield to the event loop so the store's flush can run at all.
            if (++polls % 16 === 0) await nextTick()
          }
          await written
          assert.equal(torn, 0, `saw the first op without the last in ${torn} of ${polls} reads`)
          assert.notEqual(await store.getMeta(`first-${round}`), undefined)
          assert.notEqual(await store.getMeta(`last-${round}`), undefined)
        }
      })
    })

    describe('group commit', function () {
      beforeEach(function () {
        if (store.stats === undefined) this.skip() // needs the optional counters
      })

      it('writes of one tick share one batch, resolved only once it is written', async function () {
        const before = { ...store.stats! }
        const writes: Promise<void>[] = []
        for (let i = 0; i < 50; i++) writes.push(store.write(entityOps('c', `e${i}`, i + 1)))
        const seenAtResolve: number[] = []
        const visibleAtResolve: Promise<EntityHead | undefined>[] = []
        writes.forEach((w, i) =>
          w.then(() => {
            seenAtResolve.push(store.stats!.batches - before.batches)
            visibleAtResolve.push(store.getHead('c', `e${i}`))
          }),
        )
        await Promise.all(writes)
        assert.equal(store.stats!.batches - before.batches, 1)
        assert.equal(store.stats!.ops - before.ops, 50 * 4)
        assert.deepEqual(seenAtResolve, new Array(50).fill(1), 'a write resolved before its batch was committed')
        for (const head of await Promise.all(visibleAtResolve)) assert.notEqual(head, undefined)
      })

      it('writes of later ticks go to later batches: at most one batch per tick, in call order', async function () {
        const before = store.stats!.batches
        const order: number[] = []
        const writes: Promise<void>[] = []
        let n = 0
        for (let tick = 0; tick < 3; tick++) {
          for (let i = 0; i < 20; i++) {
            const k = n++
            writes.push(store.write(entityOps('c', `e${k}`, k + 1)).then(() => void order.push(k)))
          }
          await nextTick() // the first tick's batch is now being written; the next accumulates
        }
        await Promise.all(writes)
        const batches = store.stats!.batches - before
        assert.ok(batches >= 1 && batches <= 3, `3 ticks of writes took ${batches} batches`)
        assert.deepEqual(order, [...Array(n).keys()])
        assert.equal(await store.lastSeq('c'), n)
        assert.deepEqual((await collect(store.feed('c', 0))).map((e) => e.seq), [...Array(n).keys()].map((k) => k + 1))
      })
    })

    describe('ordering', function () {
      it('a later write wins over an earlier one to the same key, within a tick and across ticks', async function () {
        const sameTick = [
          store.write([{ type: 'meta', key: 'k', bytes: text('1') }]),
          store.write([{ type: 'meta', key: 'k', bytes: text('2') }]),
          store.write([{ type: 'head', collection: 'c', id: 'e', head: makeHead('v1') }]),
          store.write([{ type: 'head', collection: 'c', id: 'e', head: makeHead('v2', 0, true) }]),
          store.write([{ type: 'leaf', collection: 'c', leaf: 3, bytes: sha256('l1') }]),
          store.write([{ type: 'leaf', collection: 'c', leaf: 3, bytes: sha256('l2') }]),
          store.write([{ type: 'collection', collection: 'c', meta: { backend: 'yjs' } }]),
          store.write([{ type: 'collection', collection: 'c', meta: { backend: 'automerge' } }]),
        ]
        await Promise.all(sameTick)
        assert.equal(hex(await store.getMeta('k')), hex(text('2')))
        assert.deepEqual(plainHead(await store.getHead('c', 'e')), plainHead(makeHead('v2', 0, true)))
        assert.deepEqual((await collect(store.leaves('c'))).map(([l, b]) => [l, hex(b)]), [[3, hex(sha256('l2'))]])
        assert.deepEqual((await store.collections()).get('c'), { backend: 'automerge' })

        const first = store.write([{ type: 'meta', key: 'k', bytes: text('3') }])
        await nextTick() // the first batch is in flight; the second must still land after it
        const second = store.write([{ type: 'meta', key: 'k', bytes: text('4') }])
        await Promise.all([first, second])
        assert.equal(hex(await store.getMeta('k')), hex(text('4')))
      })

      it('the ops of one write() apply in the order given', async function () {
        await store.write([
          { type: 'meta', key: 'k', bytes: text('A') },
          { type: 'meta', key: 'k', bytes: text('B') },
          { type: 'delta', collection: 'c', id: 'e', index: 0, bytes: text('x') },
          { type: 'delDelta', collection: 'c', id: 'e', index: 0 },
          { type: 'delta', collection: 'c', id: 'e', index: 1, bytes: text('y') },
          { type: 'delDelta', collection: 'c', id: 'e', index: 1 },
          { type: 'delta', collection: 'c', id: 'e', index: 1, bytes: text('z') },
          { type: 'head', collection: 'c', id: 'e', head: makeHead('e', 2) },
        ])
        assert.equal(hex(await store.getMeta('k')), hex(text('B')))
        await expectCode(store.readEntity('c', 'e'), 'ERR_STORE') // delta 0 was deleted after it was put
        await store.write([
          { type: 'delta', collection: 'c', id: 'e', index: 0, bytes: text('w') },
          { type: 'head', collection: 'c', id: 'e', head: makeHead('e', 2) },
        ])
        assert.deepEqual((await store.readEntity('c', 'e'))!.deltas.map(hex), [hex(text('w')), hex(text('z'))])
      })
    })

    describe('delDelta', function () {
      it('compaction (snapshot + delDelta + head) drops exactly the deleted deltas', async function () {
        const deltas = (id: string): StoreOp[] =>
          [0, 1, 2].map((index) => ({ type: 'delta', collection: 'c', id, index, bytes: text(`${id}${index}`) }))
        // 'e' and 'e\u0001' would share a key prefix under a careless layout.
        await store.write([
          ...deltas('e'),
          { type: 'head', collection: 'c', id: 'e', head: makeHead('e', 3) },
          ...deltas('e\u0001'),
          { type: 'head', collection: 'c', id: 'e\u0001', head: makeHead('e1', 3) },
        ])
        await store.write([
          { type: 'snapshot', collection: 'c', id: 'e', bytes: text('folded') },
          { type: 'delDelta', collection: 'c', id: 'e', index: 0 },
          { type: 'delDelta', collection: 'c', id: 'e', index: 1 },
          { type: 'delDelta', collection: 'c', id: 'e', index: 2 },
          { type: 'delDelta', collection: 'c', id: 'e', index: 3 }, // never written: a no-op
          { type: 'head', collection: 'c', id: 'e', head: makeHead('e', 0) },
        ])
        assert.deepEqual(plainEntity(await store.readEntity('c', 'e')), {
          head: plainHead(makeHead('e', 0)),
          snapshot: hex(text('folded')),
          deltas: [],
        })
        // The deltas are really gone: a head that counts them finds them missing.
        await store.write([{ type: 'head', collection: 'c', id: 'e', head: makeHead('e', 3) }])
        await expectCode(store.readEntity('c', 'e'), 'ERR_STORE')
        // The neighbour kept all of its own.
        assert.deepEqual(
          (await store.readEntity('c', 'e\u0001'))!.deltas.map(hex),
          ['e\u00010', 'e\u00011', 'e\u00012'].map((s) => hex(text(s))),
        )
      })

      it('a head that counts fewer deltas than are stored hides the rest; a put overwrites a slot', async function () {
        // Core folds an entity by writing a snapshot and a head with deltaCount 0, and leaves
        // the old deltas for later writes to overwrite.
        await store.write([
          ...[0, 1, 2].map((index): StoreOp => ({ type: 'delta', collection: 'c', id: 'e', index, bytes: text(`old${index}`) })),
          { type: 'head', collection: 'c', id: 'e', head: makeHead('e', 3) },
        ])
        await store.write([
          { type: 'snapshot', collection: 'c', id: 'e', bytes: text('folded') },
          { type: 'head', collection: 'c', id: 'e', head: makeHead('e', 0) },
        ])
        assert.deepEqual(plainEntity(await store.readEntity('c', 'e')), { head: plainHead(makeHead('e', 0)), snapshot: hex(text('folded')), deltas: [] })
        await store.write([
          { type: 'delta', collection: 'c', id: 'e', index: 0, bytes: text('new0') },
          { type: 'head', collection: 'c', id: 'e', head: makeHead('e', 1) },
        ])
        assert.deepEqual((await store.readEntity('c', 'e'))!.deltas.map(hex), [hex(text('new0'))])
      })

      it('deleting one delta leaves the others', async function () {
        await store.write([
          ...[0, 1, 2].map((index): StoreOp => ({ type: 'delta', collection: 'c', id: 'e', index, bytes: text(`d${index}`) })),
          { type: 'delDelta', collection: 'c', id: 'e', index: 2 },
          { type: 'head', collection: 'c', id: 'e', head: makeHead('e', 2) },
        ])
        assert.deepEqual((await store.readEntity('c', 'e'))!.deltas.map(hex), [hex(text('d0')), hex(text('d1'))])
        await store.write([{ type: 'head', collection: 'c', id: 'e', head: makeHead('e', 3) }])
        await expectCode(store.readEntity('c', 'e'), 'ERR_STORE')
      })
    })

    describe('heads by leaf range', function () {
      it('yields exactly the ids whose leaf is in [fromLeaf, toLeaf], in leaf order', async function () {
        let run = 0
        const offset = fc.integer({ min: -2, max: 2 })
        await fc.assert(
          fc.asyncProperty(
            fc.uniqueArray(idArb, { minLength: 1, maxLength: 40 }),
            // Ranges near the ids' own leaves (so they cut between ids), and random ones.
            fc.array(fc.tuple(fc.nat(), fc.nat(), offset, offset), { maxLength: 6 }),
            fc.array(fc.tuple(fc.nat({ max: LEAF_COUNT - 1 }), fc.nat({ max: LEAF_COUNT - 1 })), { maxLength: 3 }),
            async (ids, near, random) => {
              const collection = `range-${run++}`
              const ops: StoreOp[] = []
              for (const id of ids) {
                ops.push({ type: 'head', collection, id, head: makeHead(id) })
                // Same ids in a collection whose name extends this one: must never show up.
                ops.push({ type: 'head', collection: `${collection}-x`, id, head: makeHead('x') })
              }
              await store.write(ops)
              const leaves = ids.map(leafOf)
              const clamp = (l: number): number => Math.min(LEAF_COUNT - 1, Math.max(0, l))
              const ranges: [number, number][] = [[0, LEAF_COUNT - 1], ...random]
              for (const [i, j, di, dj] of near) {
                const a = clamp(leaves[i % ids.length]! + di)
                const b = clamp(leaves[j % ids.length]! + dj)
                ranges.push([Math.min(a, b), Math.max(a, b)])
              }
              for (const [fromLeaf, toLeaf] of ranges) {
                const got = await collect(store.heads(collection, { fromLeaf, toLeaf }))
                const expected = ids.filter((id) => leafOf(id) >= fromLeaf && leafOf(id) <= toLeaf)
                assert.deepEqual(got.map(([id]) => id).sort(), [...expected].sort())
                const gotLeaves = got.map(([id]) => leafOf(id))
                assert.deepEqual(gotLeaves, [...gotLeaves].sort((x, y) => x - y))
                for (const [id, head] of got) assert.deepEqual(plainHead(head), plainHead(makeHead(id)))
              }
              const all = await collect(store.heads(collection))
              assert.deepEqual(all.map(([id]) => id).sort(), [...ids].sort())
            },
          ),
          { numRuns: 25 },
        )
      })

      it('an inverted range is empty; single-leaf ranges find their id', async function () {
        const ids = ['p', 'q', 'r', 's']
        await store.write(ids.map((id): StoreOp => ({ type: 'head', collection: 'c', id, head: makeHead(id) })))
        assert.deepEqual(await collect(store.heads('c', { fromLeaf: 5, toLeaf: 4 })), [])
        for (const id of ids) {
          const leaf = leafOf(id)
          assert.ok((await collect(store.heads('c', { fromLeaf: leaf, toLeaf: leaf }))).map(([i]) => i).includes(id))
        }
      })
    })

    describe('feed', function () {
      it('resumes from any since: exactly the entries with seq > since, ascending', async function () {
        const n = 120 // past 9 and 99: a non-padded seq would sort 10 before 9
        let seq = 0
        while (seq < n) {
          const size = 1 + (seq % 7)
          const ops: StoreOp[] = []
          for (let i = 0; i < size && seq < n; i++) {
            seq++
            ops.push({ type: 'feed', collection: 'f', entry: feedEntry(seq, `id${seq}`, seq % 3 === 0 ? 'remote' : 'put', seq % 3 === 0 ? 'peer' : 'local') })
          }
          await store.write(ops)
        }
        await store.write([{ type: 'feed', collection: 'f0', entry: feedEntry(1, 'other') }])
        for (let since = -1; since <= n + 1; since++) {
          const got = (await collect(store.feed('f', since))).map((e) => e.seq)
          const expected = [...Array(n).keys()].map((k) => k + 1).filter((s) => s > since)
          assert.deepEqual(got, expected, `since ${since}`)
        }
        const entries = await collect(store.feed('f', 118))
        assert.deepEqual(entries, [feedEntry(119, 'id119'), feedEntry(120, 'id120', 'remote', 'peer')])
      })

      it('lastSeq is the highest seq of that collection only', async function () {
        const entries = (collection: string, count: number): StoreOp[] =>
          [...Array(count).keys()].map((k) => ({ type: 'feed', collection, entry: feedEntry(k + 1, `${collection}${k}`) }))
        await store.write([...entries('f', 12), ...entries('f0', 30), ...entries('e', 7), ...entries('f/x', 2)])
        assert.equal(await store.lastSeq('f'), 12)
        assert.equal(await store.lastSeq('f0'), 30)
        assert.equal(await store.lastSeq('e'), 7)
        assert.equal(await store.lastSeq('f/x'), 2)
        assert.equal(await store.lastSeq('g'), 0)
        await store.write(entries('g', 1))
        assert.equal(await store.lastSeq('g'), 1)
      })
    })

    describe('unusual ids', function () {
      it('keeps entities apart whatever their ids contain', async function () {
        const ops: StoreOp[] = []
        UNUSUAL_IDS.forEach((id, k) => {
          ops.push({ type: 'snapshot', collection: 'c', id, bytes: text(`snap ${id}`) })
          ops.push({ type: 'delta', collection: 'c', id, index: 0, bytes: text(`d0 ${id}`) })
          ops.push({ type: 'delta', collection: 'c', id, index: 1, bytes: text(`d1 ${id}`) })
          ops.push({ type: 'head', collection: 'c', id, head: makeHead(id, 2) })
          ops.push({ type: 'feed', collection: 'c', entry: feedEntry(k + 1, id) })
        })
        await store.write(ops)
        const expected = (id: string): unknown => ({
          head: plainHead(makeHead(id, 2)),
          snapshot: hex(text(`snap ${id}`)),
          deltas: [hex(text(`d0 ${id}`)), hex(text(`d1 ${id}`))],
        })
        for (const id of UNUSUAL_IDS) assert.deepEqual(plainEntity(await store.readEntity('c', id)), expected(id), JSON.stringify(id))
        assert.deepEqual((await collect(store.heads('c'))).map(([id]) => id).sort(), [...UNUSUAL_IDS].sort())
        assert.deepEqual((await collect(store.feed('c', 0))).map((e) => e.id), UNUSUAL_IDS)

        // Compacting 'a' touches none of the ids it is a prefix of.
        await store.write([
          { type: 'delDelta', collection: 'c', id: 'a', index: 0 },
          { type: 'delDelta', collection: 'c', id: 'a', index: 1 },
          { type: 'head', collection: 'c', id: 'a', head: makeHead('a', 0) },
        ])
        assert.deepEqual((await store.readEntity('c', 'a'))!.deltas, [])
        for (const id of UNUSUAL_IDS.slice(1)) assert.deepEqual(plainEntity(await store.readEntity('c', id)), expected(id))
      })

      it('round-trips random unicode ids', async function () {
        await fc.assert(
          fc.asyncProperty(idArb, fc.uint8Array({ maxLength: 64 }), async (id, bytes) => {
            await store.write([
              { type: 'delta', collection: 'u', id, index: 0, bytes },
              { type: 'head', collection: 'u', id, head: makeHead(id, 1) },
            ])
            assert.deepEqual(plainEntity(await store.readEntity('u', id)), {
              head: plainHead(makeHead(id, 1)),
              snapshot: undefined,
              deltas: [hex(bytes)],
            })
          }),
          { numRuns: 50 },
        )
      })
    })

    describe('close', function () {
      it('flushes writes still queued, then every method rejects with ERR_CLOSED', async function () {
        const queued = store.write(entityOps('c', 'e', 1))
        await store.close()
        await queued // close() waited for it
        await expectCode(store.write(entityOps('c', 'f', 2)), 'ERR_CLOSED')
        await expectCode(store.readEntity('c', 'e'), 'ERR_CLOSED')
        await expectCode(store.getHead('c', 'e'), 'ERR_CLOSED')
        await expectCode(collect(store.heads('c')), 'ERR_CLOSED')
        await expectCode(collect(store.heads('c', { fromLeaf: 0, toLeaf: 10 })), 'ERR_CLOSED')
        await expectCode(collect(store.leaves('c')), 'ERR_CLOSED')
        await expectCode(collect(store.feed('c', 0)), 'ERR_CLOSED')
        await expectCode(store.lastSeq('c'), 'ERR_CLOSED')
        await expectCode(store.collections(), 'ERR_CLOSED')
        await expectCode(store.getMeta('k'), 'ERR_CLOSED')
        await expectCode(store.open(), 'ERR_CLOSED')
        await store.close() // a second close is harmless
      })
    })

    describe('reopen', function () {
      beforeEach(function () {
        if (fixture.reopen === undefined) this.skip() // the store keeps nothing across instances
      })

      it('keeps every kind of record', async function () {
        const ids = ['e1', 'e/2', '🙂', 'x'.repeat(256)]
        const ops: StoreOp[] = [{ type: 'collection', collection: 'c', meta: { backend: 'automerge' } }]
        ids.forEach((id, k) => ops.push(...entityOps('c', id, k + 1)))
        ops.push(
          { type: 'snapshot', collection: 'c', id: 'e1', bytes: text('snap') },
          { type: 'delta', collection: 'c', id: 'e1', index: 1, bytes: text('second') },
          { type: 'head', collection: 'c', id: 'e1', head: makeHead('e1 v2', 2, true, 'automerge') },
          { type: 'meta', key: 'peer-id', bytes: text('me') },
        )
        await store.write(ops)
        const snapshotOf = async (s: Store): Promise<unknown> => ({
          entities: await Promise.all(ids.map(async (id) => plainEntity(await s.readEntity('c', id)))),
          heads: (await collect(s.heads('c'))).map(([id, h]) => [id, plainHead(h)]),
          leaves: (await collect(s.leaves('c'))).map(([l, b]) => [l, hex(b)]),
          feed: await collect(s.feed('c', 0)),
          lastSeq: await s.lastSeq('c'),
          collections: [...(await s.collections())],
          meta: hex(await s.getMeta('peer-id')),
        })
        const before = await snapshotOf(store)
        assert.equal((before as { lastSeq: number }).lastSeq, ids.length)
        const reopened = await reopen()
        assert.deepEqual(await snapshotOf(reopened), before)
      })

      it('keeps writes that close() flushed', async function () {
        const writes = [0, 1, 2].map((k) => store.write(entityOps('c', `e${k}`, k + 1)))
        const reopened = await reopen()
        await Promise.all(writes)
        assert.equal(await reopened.lastSeq('c'), 3)
        for (const k of [0, 1, 2]) assert.notEqual(await reopened.getHead('c', `e${k}`), undefined)
      })
    })
  })
}
