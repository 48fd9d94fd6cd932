/**
 * The Store compliance suite: every Store implementation runs it (see store.ts for the
 * contract). Needs mocha globals and fast-check; asserts with node:assert (chai ships
 * no types and @types/chai is not installed).
 *
 * `makeStore` returns a store that is NOT yet open; the suite opens it, and closes whatever
 * store it holds before calling `cleanup` (which removes the data). `reopen`, if given,
 * returns a new, unopened store over the same data; it is called after the suite closed the
 * previous one. `tamper`, if given, damages stored records behind the store's back: the
 * integrity tests run only with it (a store whose medium cannot be damaged leaves it out).
 */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { LEAF_COUNT, leafOf } from '../digest.js'
import { isConvergentError, StoreCorruptError, type CorruptRecord, type ErrorCode } from '../errors.js'
import { sha256, toHex } from '../hash.js'
import type { EntityHead, FeedEntry, Store, StoredEntity, StoreOp } from '../store.js'

export interface StoreFixture {
  store: Store
  reopen?: () => Promise<Store>
  cleanup: () => Promise<void>
  /**
   * Damages every stored record of `keyspace` ('heads', 'snapshots', 'deltas', 'feed', 'leaves',
   * 'collections', 'meta') whose key passes `keyFilter`, as a bad disk would: 'value' flips a
   * bit of one byte of the stored value (the body, not only a header); 'key' moves the stored
   * bytes, unchanged, to a key with one bit flipped (in the last character). Resolves with how
   * many records it damaged. Keys are the store's own, as it names them in CorruptRecord.key;
   * the suite picks records by a collection name, entity id or meta key the key contains
   * (each unique to the test). Called with `store` open.
   */
  tamper?: (store: Store, keyspace: string, keyFilter: (key: string) => boolean, part?: 'value' | 'key') => Promise<number>
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

/** Awaits a rejection with ERR_STORE_CORRUPT from a StoreCorruptError, and returns the record it names. */
async function expectCorrupt(promise: Promise<unknown>, what: string): Promise<CorruptRecord> {
  const outcome = await promise.then(
    (served) => ({ served }),
    (error: unknown) => ({ error }),
  )
  if ('served' in outcome) {
    assert.fail(
      `${what}: served ${JSON.stringify(outcome.served, (_k, v: unknown) => (v instanceof Uint8Array ? toHex(v) : v))} instead of rejecting with ERR_STORE_CORRUPT`,
    )
  }
  const { error } = outcome
  assert.equal(isConvergentError(error, 'ERR_STORE_CORRUPT'), true, `${what}: expected ERR_STORE_CORRUPT, got ${String(error)}`)
  assert.ok(error instanceof StoreCorruptError, `${what}: expected a StoreCorruptError naming the record, got ${String(error)}`)
  return error.record
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
const idArb = fc.string({ unit: 'binary', minLength: 1, maxLength: 24 }).filter((s) => !s.includes('\u0000') && s.isWellFormed() && Buffer.byteLength(s) <= 256)

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
              assert.deepEqual(
                listed.map(([i, h]) => [i, plainHead(h)]),
                [[id, plainHead(head)]],
              )
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
                origin: fc.oneof(
                  fc.constant('local'),
                  fc.string({ unit: 'binary', maxLength: 60 }).filter((s) => s.isWellFormed()),
                ),
                time: fc.maxSafeNat(),
                kind: fc.constantFrom<FeedEntry['kind']>('put', 'delete', 'remote'),
                // A signed push's proof id (hex in practice; any string up to 255 bytes round-trips).
                proof: fc.option(
                  fc.string({ unit: 'binary', maxLength: 60 }).filter((s) => s.isWellFormed()),
                  { nil: undefined },
                ),
              }),
              { minLength: 1, maxLength: 12 },
            ),
            async (entries) => {
              const collection = `feed-${run++}`
              const withSeq = entries.map(({ proof, ...e }, i): FeedEntry => ({ ...e, seq: i + 1, ...(proof !== undefined ? { proof } : {}) }))
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

      it('delMeta deletes a meta record; metas(prefix) lists a prefix in key order; compact() keeps what is live', async function () {
        await store.write([
          { type: 'meta', key: 'sk/b', bytes: text('B') },
          { type: 'meta', key: 'sk/a', bytes: text('A') },
          { type: 'meta', key: 'sk/c', bytes: text('C') },
          { type: 'meta', key: 'sl', bytes: text('other') },
        ])
        await store.write([
          { type: 'delMeta', key: 'sk/c' },
          { type: 'delMeta', key: 'never-written' },
        ])
        assert.equal(await store.getMeta('sk/c'), undefined)
        if (store.metas !== undefined) {
          const listed: [string, string][] = []
          for await (const [k, v] of store.metas('sk/')) listed.push([k, new TextDecoder().decode(v)])
          assert.deepEqual(listed, [
            ['sk/a', 'A'],
            ['sk/b', 'B'],
          ])
        }
        if (store.compact !== undefined) {
          await store.compact()
          assert.equal(hex(await store.getMeta('sk/a')), hex(text('A')))
          assert.equal(await store.getMeta('sk/c'), undefined)
        }
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
        assert.deepEqual(
          (await collect(store.feed('c', 0))).map((e) => e.seq),
          [...Array(n).keys()].map((k) => k + 1),
        )
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
        assert.deepEqual(
          (await collect(store.leaves('c'))).map(([l, b]) => [l, hex(b)]),
          [[3, hex(sha256('l2'))]],
        )
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
        await expectCode(store.readEntity('c', 'e'), 'ERR_STORE_CORRUPT') // delta 0 was deleted after it was put
        await store.write([
          { type: 'delta', collection: 'c', id: 'e', index: 0, bytes: text('w') },
          { type: 'head', collection: 'c', id: 'e', head: makeHead('e', 2) },
        ])
        assert.deepEqual((await store.readEntity('c', 'e'))!.deltas.map(hex), [hex(text('w')), hex(text('z'))])
      })
    })

    describe('delDelta', function () {
      it('compaction (snapshot + delDelta + head) drops exactly the deleted deltas', async function () {
        const deltas = (id: string): StoreOp[] => [0, 1, 2].map((index) => ({ type: 'delta', collection: 'c', id, index, bytes: text(`${id}${index}`) }))
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
        await expectCode(store.readEntity('c', 'e'), 'ERR_STORE_CORRUPT')
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
        await expectCode(store.readEntity('c', 'e'), 'ERR_STORE_CORRUPT')
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
                assert.deepEqual(
                  gotLeaves,
                  [...gotLeaves].sort((x, y) => x - y),
                )
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
        assert.deepEqual(
          (await collect(store.feed('c', 0))).map((e) => e.id),
          UNUSUAL_IDS,
        )

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

    describe('delEntity', function () {
      it('forgets the head and snapshot (reads and scans no longer meet the entity); its deltas become unreachable', async function () {
        const ops: StoreOp[] = [{ type: 'snapshot', collection: 'c', id: 'e', bytes: text('snap') }]
        for (let index = 0; index < 3; index++) ops.push({ type: 'delta', collection: 'c', id: 'e', index, bytes: text(`old${index}`) })
        ops.push({ type: 'head', collection: 'c', id: 'e', head: makeHead('e', 3) })
        for (const id of ['e\u0001', 'f']) ops.push(...entityOps('c', id, id.length))
        await store.write(ops)
        await store.write([{ type: 'delEntity', collection: 'c', id: 'e' }])
        assert.equal(await store.getHead('c', 'e'), undefined)
        assert.equal(await store.readEntity('c', 'e'), undefined)
        assert.deepEqual((await collect(store.heads('c'))).map(([id]) => id).sort(), ['e\u0001', 'f'])
        // Its neighbours (one whose id extends it) are untouched.
        assert.deepEqual((await store.readEntity('c', 'e\u0001'))!.deltas.map(hex), [hex(text('delta of e\u0001'))])
        assert.notEqual(await store.getHead('c', 'f'), undefined)
        // Fetched again: written from delta 0 with a fresh head, no old snapshot or delta shows.
        await store.write([
          { type: 'delta', collection: 'c', id: 'e', index: 0, bytes: text('new0') },
          { type: 'head', collection: 'c', id: 'e', head: makeHead('e2', 1) },
        ])
        assert.deepEqual(plainEntity(await store.readEntity('c', 'e')), {
          head: plainHead(makeHead('e2', 1)),
          snapshot: undefined,
          deltas: [hex(text('new0'))],
        })
      })

      it('applies atomically and in order with the other ops of its write', async function () {
        await store.write(entityOps('c', 'e', 1))
        await store.write([
          { type: 'delEntity', collection: 'c', id: 'e' },
          { type: 'delta', collection: 'c', id: 'e', index: 0, bytes: text('again') },
          { type: 'head', collection: 'c', id: 'e', head: makeHead('again', 1) },
          { type: 'delEntity', collection: 'c', id: 'never-written' },
        ])
        assert.deepEqual((await store.readEntity('c', 'e'))!.deltas.map(hex), [hex(text('again'))])
        await store.write([
          { type: 'head', collection: 'c', id: 'e', head: makeHead('later', 1) },
          { type: 'delEntity', collection: 'c', id: 'e' },
        ])
        assert.equal(await store.getHead('c', 'e'), undefined)
      })
    })

    describe('dropCollection', function () {
      /** Every kind of record of collection `c`, plus the collection's meta. */
      const fill = (c: string, backend = 'yjs'): StoreOp[] => [
        { type: 'collection', collection: c, meta: { backend } },
        ...entityOps(c, 'e1', 1),
        ...entityOps(c, 'e2', 2),
        { type: 'snapshot', collection: c, id: 'e1', bytes: text(`snap of ${c}`) },
      ]
      const contents = async (s: Store, c: string): Promise<unknown> => ({
        listed: (await s.collections()).get(c),
        heads: (await collect(s.heads(c))).map(([id, h]) => [id, plainHead(h)]),
        entities: await Promise.all(['e1', 'e2'].map(async (id) => plainEntity(await s.readEntity(c, id)))),
        leaves: (await collect(s.leaves(c))).map(([l, b]) => [l, hex(b)]),
        feed: await collect(s.feed(c, 0)),
        lastSeq: await s.lastSeq(c),
      })
      const EMPTY = { listed: undefined, heads: [], entities: [undefined, undefined], leaves: [], feed: [], lastSeq: 0 }

      it('removes every record of that collection and of no other', async function () {
        // 'a' is a prefix of 'ab' and of 'a/x': a careless range would take them along.
        await store.write([...fill('a'), ...fill('ab', 'automerge'), ...fill('a/x'), { type: 'meta', key: 'a', bytes: text('kept') }])
        const others = { ab: await contents(store, 'ab'), 'a/x': await contents(store, 'a/x') }
        await store.dropCollection('a')
        assert.deepEqual(await contents(store, 'a'), EMPTY)
        assert.deepEqual([...(await store.collections()).keys()].sort(), ['a/x', 'ab'])
        assert.deepEqual({ ab: await contents(store, 'ab'), 'a/x': await contents(store, 'a/x') }, others)
        assert.equal(hex(await store.getMeta('a')), hex(text('kept')))
        await store.dropCollection('never-there') // nothing to drop: resolves
        if (fixture.reopen !== undefined) {
          const reopened = await reopen()
          assert.deepEqual(await contents(reopened, 'a'), EMPTY)
          assert.deepEqual({ ab: await contents(reopened, 'ab'), 'a/x': await contents(reopened, 'a/x') }, others)
        }
      })

      it('a dropped collection can be written again from scratch; writes queued before the drop are dropped with it', async function () {
        await store.write(fill('a'))
        const before = store.write(entityOps('a', 'e3', 3)) // queued in the same tick as the drop
        const dropped = store.dropCollection('a')
        await before
        await dropped
        assert.deepEqual(await contents(store, 'a'), EMPTY)
        assert.equal(await store.getHead('a', 'e3'), undefined)
        await store.write([{ type: 'collection', collection: 'a', meta: { backend: 'automerge' } }, ...entityOps('a', 'e2', 1)])
        assert.deepEqual((await store.collections()).get('a'), { backend: 'automerge' })
        assert.deepEqual(
          (await collect(store.heads('a'))).map(([id]) => id),
          ['e2'],
        )
        assert.equal(await store.lastSeq('a'), 1)
        assert.equal(await store.readEntity('a', 'e1'), undefined)
      })

      it('rejects with ERR_CLOSED once the store is closed', async function () {
        await store.close()
        await expectCode(store.dropCollection('a'), 'ERR_CLOSED')
      })
    })

    describe('integrity', function () {
      beforeEach(function () {
        if (fixture.tamper === undefined) {
          // A store of plain objects (the simulator's MapStore) has no medium to damage: its
          // records are always what was written, so there is nothing to detect.
          const test = this.currentTest
          if (test !== undefined) test.title += ' — skipped: the fixture has no tamper hook (records this store keeps cannot be damaged)'
          this.skip()
        }
      })

      const tamper = async (keyspace: string, keyFilter: (key: string) => boolean, part: 'value' | 'key' = 'value'): Promise<void> => {
        const damaged = await fixture.tamper!(store, keyspace, keyFilter, part)
        assert.ok(damaged > 0, `tamper found no ${keyspace} record to damage`)
      }

      /** One entity per case, in a collection of its own: id `${c}-e`, feed seq 1 and 2, meta key `${c}-m`. */
      const writeCase = async (c: string): Promise<void> => {
        const id = `${c}-e`
        await store.write([
          { type: 'collection', collection: c, meta: { backend: 'yjs' } },
          { type: 'snapshot', collection: c, id, bytes: text(`snapshot of ${id}`) },
          { type: 'delta', collection: c, id, index: 0, bytes: text(`delta 0 of ${id}`) },
          { type: 'delta', collection: c, id, index: 1, bytes: text(`delta 1 of ${id}`) },
          { type: 'head', collection: c, id, head: makeHead(id, 2) },
          { type: 'leaf', collection: c, leaf: leafOf(id), bytes: sha256('leaf', id) },
          { type: 'feed', collection: c, entry: feedEntry(1, id) },
          { type: 'feed', collection: c, entry: feedEntry(2, id, 'remote', 'peer') },
          { type: 'meta', key: `${c}-m`, bytes: text(`meta of ${c}`) },
        ])
      }

      /** Each keyspace, and every read path that meets its records. */
      const CASES: { keyspace: string; names: 'entity' | 'collection' | 'none'; reads: (c: string) => [string, () => Promise<unknown>][] }[] = [
        {
          keyspace: 'heads',
          names: 'entity',
          reads: (c) => [
            ['getHead', () => store.getHead(c, `${c}-e`)],
            ['readEntity', () => store.readEntity(c, `${c}-e`)],
            ['heads()', () => collect(store.heads(c))],
            ['heads(range)', () => collect(store.heads(c, { fromLeaf: leafOf(`${c}-e`), toLeaf: leafOf(`${c}-e`) }))],
          ],
        },
        { keyspace: 'snapshots', names: 'entity', reads: (c) => [['readEntity', () => store.readEntity(c, `${c}-e`)]] },
        { keyspace: 'deltas', names: 'entity', reads: (c) => [['readEntity', () => store.readEntity(c, `${c}-e`)]] },
        {
          keyspace: 'feed',
          names: 'collection',
          reads: (c) => [
            ['feed(0)', () => collect(store.feed(c, 0))],
            ['feed(1)', () => collect(store.feed(c, 1))],
            ['lastSeq', () => store.lastSeq(c)],
          ],
        },
        { keyspace: 'leaves', names: 'collection', reads: (c) => [['leaves()', () => collect(store.leaves(c))]] },
        { keyspace: 'collections', names: 'collection', reads: () => [['collections()', () => store.collections()]] },
        { keyspace: 'meta', names: 'none', reads: (c) => [['getMeta', () => store.getMeta(`${c}-m`)]] },
      ]

      for (const { keyspace, names, reads } of CASES) {
        it(`a damaged ${keyspace} record: every read path that meets it rejects with ERR_STORE_CORRUPT naming it`, async function () {
          const c = `ks-${keyspace}`
          await writeCase(c)
          await writeCase(`${c}-other`) // untouched: must stay readable
          const filter = (key: string): boolean => key.includes(keyspace === 'meta' ? `${c}-m` : c) && !key.includes(`${c}-other`)
          await tamper(keyspace, filter)
          for (const [what, read] of reads(c)) {
            const record = await expectCorrupt(read(), `${keyspace}: ${what}`)
            assert.equal(record.keyspace, keyspace, what)
            assert.ok(filter(record.key), `${what} named key ${JSON.stringify(record.key)}, not the damaged record`)
            if (names !== 'none') assert.equal(record.collection, c, what)
            if (names === 'entity') assert.equal(record.id, `${c}-e`, what)
          }
          // Another collection's records, read the same ways, are served.
          for (const [what, read] of reads(`${c}-other`)) {
            if (keyspace !== 'collections') await read().catch((err: unknown) => assert.fail(`${what} of an undamaged collection: ${String(err)}`))
          }
        })
      }

      it('a flipped key byte is caught too: the record, met under a key it was not written for, fails its check', async function () {
        await writeCase('kf')
        await writeCase('kf-other')
        await tamper('heads', (key) => key.includes('kf-e'), 'key')
        assert.equal(await store.getHead('kf', 'kf-e'), undefined) // nothing is stored under its own key now
        const record = await expectCorrupt(collect(store.heads('kf')), 'heads() over a moved record')
        assert.equal(record.keyspace, 'heads')
        assert.equal(record.collection, 'kf')
        assert.notEqual(record.id, 'kf-e') // the key it sits under names another id
        await store.quarantine(record)
        assert.deepEqual(await collect(store.heads('kf')), [])
        assert.deepEqual(
          (await collect(store.heads('kf-other'))).map(([id]) => id),
          ['kf-other-e'],
        )
      })

      it('quarantine() removes the record it names, so reads and scans no longer meet it; the rest stays readable', async function () {
        const ids = ['q1', 'q2', 'q3']
        await store.write(ids.flatMap((id, k) => entityOps('q', id, k + 1)))
        await store.write([{ type: 'snapshot', collection: 'q', id: 'q2', bytes: text('snap of q2') }])
        await tamper('heads', (key) => key.endsWith('q2'))
        const record = await expectCorrupt(collect(store.heads('q')), 'heads()')
        assert.deepEqual(await expectCorrupt(store.getHead('q', 'q2'), 'getHead'), record)
        await store.quarantine(record)
        assert.deepEqual((await collect(store.heads('q'))).map(([id]) => id).sort(), ['q1', 'q3'])
        assert.equal(await store.getHead('q', 'q2'), undefined)
        assert.equal(await store.readEntity('q', 'q2'), undefined)
        for (const id of ['q1', 'q3'])
          assert.deepEqual(
            plainEntity(await store.readEntity('q', id)),
            plainEntity({ head: makeHead(id, 1), snapshot: undefined, deltas: [text(`delta of ${id}`)] }),
          )
        assert.equal((await collect(store.feed('q', 0))).length, 3)
        await store.quarantine(record) // gone already: a no-op

        // A damaged delta: quarantined, the entity reads as missing a delta until it is written again.
        await tamper('deltas', (key) => key.includes('q3'))
        const delta = await expectCorrupt(store.readEntity('q', 'q3'), 'readEntity')
        assert.equal(delta.keyspace, 'deltas')
        await store.quarantine(delta)
        await expectCode(store.readEntity('q', 'q3'), 'ERR_STORE_CORRUPT') // its head still counts it
        await store.write([
          { type: 'delEntity', collection: 'q', id: 'q3' },
          { type: 'delta', collection: 'q', id: 'q3', index: 0, bytes: text('fetched again') },
          { type: 'head', collection: 'q', id: 'q3', head: makeHead('q3 again', 1) },
        ])
        assert.deepEqual((await store.readEntity('q', 'q3'))!.deltas.map(hex), [hex(text('fetched again'))])
        if (fixture.reopen !== undefined) {
          const reopened = await reopen()
          assert.deepEqual((await collect(reopened.heads('q'))).map(([id]) => id).sort(), ['q1', 'q3'])
        }
      })

      it('quarantine() leaves a record that was rewritten since it failed (healthy now)', async function () {
        await store.write(entityOps('r', 'r1', 1))
        await tamper('heads', (key) => key.endsWith('r1'))
        const record = await expectCorrupt(store.getHead('r', 'r1'), 'getHead')
        await store.write([{ type: 'head', collection: 'r', id: 'r1', head: makeHead('fetched again', 1) }])
        await store.quarantine(record)
        assert.deepEqual(plainHead(await store.getHead('r', 'r1')), plainHead(makeHead('fetched again', 1)))
      })

      it('quarantine() of a damaged meta, feed, leaf or collection record leaves the others of its keyspace', async function () {
        await writeCase('m')
        await writeCase('m-other')
        for (const keyspace of ['meta', 'feed', 'leaves', 'collections']) {
          await tamper(keyspace, (key) => key.includes(keyspace === 'meta' ? 'm-m' : 'm') && !key.includes('m-other'))
        }
        await store.quarantine(await expectCorrupt(store.getMeta('m-m'), 'getMeta'))
        assert.equal(await store.getMeta('m-m'), undefined)
        // Two entries written together: two damaged records, or one (a store may keep the entries
        // of one write in one record, as an encrypted LevelStore does).
        await store.quarantine(await expectCorrupt(collect(store.feed('m', 0)), 'feed()'))
        const second = await collect(store.feed('m', 0)).then(
          () => undefined,
          (err: unknown) => err,
        )
        if (second !== undefined) {
          assert.ok(
            second instanceof StoreCorruptError,
            `feed(): expected a StoreCorruptError naming the record, got ${second instanceof Error ? second.message : typeof second}`,
          )
          await store.quarantine(second.record)
        }
        assert.deepEqual(await collect(store.feed('m', 0)), [])
        // The seqs moved aside are not handed out again: lastSeq stays at the highest.
        assert.equal(await store.lastSeq('m'), 2)
        await store.quarantine(await expectCorrupt(collect(store.leaves('m')), 'leaves()'))
        assert.deepEqual(await collect(store.leaves('m')), [])
        await store.quarantine(await expectCorrupt(store.collections(), 'collections()'))
        assert.deepEqual([...(await store.collections()).keys()], ['m-other'])
        assert.equal(hex(await store.getMeta('m-other-m')), hex(text('meta of m-other')))
        assert.equal((await collect(store.feed('m-other', 0))).length, 2)
      })

      it('dropCollection() removes damaged records of the collection along with the rest', async function () {
        await writeCase('d')
        await tamper('heads', (key) => key.includes('d-e'))
        await tamper('feed', (key) => key.includes('d'))
        await store.dropCollection('d')
        assert.deepEqual(await collect(store.heads('d')), [])
        assert.deepEqual(await collect(store.feed('d', 0)), [])
        assert.equal(await store.getHead('d', 'd-e'), undefined)
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
