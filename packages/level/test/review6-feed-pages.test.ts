/**
 * Review 6 of feed pages (3b6ee34: pages keyed by their last seq, queuedFormat, the feed floor).
 * The first describe holds the holes found (each failed against 3b6ee34 and passes since the fixes:
 * pages re-checked with their key's seq, the queued format reset by a failed batch, a damaged floor
 * rebuilt from the quarantine keyspace); the second the probes that held (they guard the fixes).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { StoreCorruptError, type FeedEntry, type StoreOp } from '@convergent/core'
import { classicLevelStore, memoryLevelStore, recryptStore, type LevelStore } from '../src/index.js'
import { encodeFeedEntry, encodeFeedPage, encodeJson } from '../src/codec.js'
import { HEADER_BYTES, PLAIN_SEALER } from '../src/record.js'
import { collect, copyFormat0Fixture, failBatchesAfter, putRaw, rawRecords, rejection, removeDir, tempDir } from './helpers.js'
import { damage, entry, feedOps, formatOf, storeAtFormat, rawDb } from './feed-helpers.js'

const KEY = randomBytes(32)
const floorKey = (collection: string): string => '!store!feedfloor\u0000' + collection
const feedKey = (collection: string, seq: number): string => `${collection}\u0000${String(seq).padStart(16, '0')}`

const seqs = (entries: FeedEntry[]): number[] => entries.map((e) => e.seq)

async function quarantineFeed(store: LevelStore, collection: string, since = 0): Promise<void> {
  const err = await collect(store.feed(collection, since)).catch((e: unknown) => e)
  assert.ok(err instanceof StoreCorruptError, `feed(${since}) should have met a damaged record`)
  await store.quarantine(err.record)
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

describe('review6: feed pages', function () {
  this.timeout(120_000)
  let dir: string
  let store: LevelStore | undefined
  beforeEach(async () => (dir = await tempDir('convergent-review6-')))
  afterEach(async () => {
    await store?.close().catch(() => undefined)
    store = undefined
    await removeDir(dir)
  })

  /** A folder whose 'format' record says `version` (as one written by an older release). */
  async function folderAtFormat(version: number): Promise<void> {
    store = await storeAtFormat(dir, KEY, version)
  }

  describe('holes', function () {
    for (const encrypted of [false, true]) {
      it(`quarantine() leaves a HEALTHY page where it is (${encrypted ? 'encrypted' : 'plain'}): its re-check decodes it as seq 0`, async function () {
        // moveAside() re-checks the record and only moves one that still fails. DECODERS.feed
        // decodes with lastSeq 0, which decodeFeedRecord now refuses for every page (count > 0),
        // so every page reads as unhealthy: a stale or repeated CorruptRecord deletes up to 1024
        // sound entries and raises the floor.
        store = memoryLevelStore(encrypted ? { encryption: { key: KEY } } : {})
        await store.open()
        await store.write(feedOps('c', [1, 2, 3]))
        await store.write(feedOps('c', [4])) // one entry alone: the control
        await store.quarantine({ keyspace: 'feed', key: feedKey('c', 4), collection: 'c' })
        assert.deepEqual(seqs(await collect(store.feed('c', 0))), [1, 2, 3, 4], 'a healthy single-entry record was moved')
        await store.quarantine({ keyspace: 'feed', key: feedKey('c', 3), collection: 'c' })
        assert.deepEqual(seqs(await collect(store.feed('c', 0))), [1, 2, 3, 4], 'the healthy page of 1..3 was moved aside')
        assert.deepEqual(await collect(store.quarantined()), [])
      })
    }

    it('a batch that failed leaves no format behind: a later proof-only write to a format-1 folder says 2, not 3', async function () {
      // queuedFormat is raised before the batch is written and never lowered when it fails: the
      // folder then says 3 with no page in it, and a format-2 release refuses a folder it reads.
      await folderAtFormat(1)
      const heal = failBatchesAfter(store!, 0)
      await rejection(store!.write(feedOps('c', [1, 2]))) // a page: its batch fails, nothing written
      heal()
      await tick()
      await store!.write([{ type: 'feed', collection: 'd', entry: entry(1, { proof: 'p1' }) }])
      await store!.close()
      store = undefined
      const records = await rawRecords(dir)
      assert.equal([...records.keys()].filter((k) => k.startsWith('!feed!')).length, 1, 'one feed entry, no page')
      assert.equal(formatOf(records, KEY), 2, 'no page was ever written, yet the folder says format 3')
    })

    it('a damaged feed floor does not let lastSeq fall below a quarantined seq', async function () {
      // lastSeq() treats a floor that fails its check as none; the quarantine keyspace still
      // says which feed seqs were moved aside, so the floor can be rebuilt from it.
      store = memoryLevelStore({ encryption: { key: KEY } })
      await store.open()
      await store.write(feedOps('c', [1]))
      await store.write(feedOps('c', [2, 3, 4, 5, 6]))
      await damage(store, '!feed!' + feedKey('c', 6))
      await quarantineFeed(store, 'c')
      assert.equal(await store.lastSeq('c'), 6)
      await damage(store, floorKey('c'))
      assert.equal(await store.lastSeq('c'), 6, 'seqs 2..6 will be handed out again')
    })

    it('a quarantine over a damaged feed floor does not write a LOWER floor (the loss becomes permanent)', async function () {
      store = memoryLevelStore({ encryption: { key: KEY } })
      await store.open()
      await store.write(feedOps('c', [1]))
      await store.write(feedOps('c', [2, 3, 4, 5, 6]))
      await damage(store, '!feed!' + feedKey('c', 6))
      await quarantineFeed(store, 'c')
      await damage(store, floorKey('c'))
      await damage(store, '!feed!' + feedKey('c', 1))
      await quarantineFeed(store, 'c') // feedFloorOps: a damaged floor "is replaced" — by 1
      assert.deepEqual(await collect(store.feed('c', 0)), [])
      assert.equal(await store.lastSeq('c'), 6, 'the floor now says 1 (healthy), below the quarantined 6')
    })
  })

  describe('probes that held', function () {
    it('a page whose count exceeds its key seq is refused as damaged, quarantined, and leaves the floor at its key', async function () {
      store = memoryLevelStore()
      await store.open()
      await store.write(feedOps('c', [1]))
      const key = '!feed!' + feedKey('c', 2)
      const page = encodeFeedPage(
        [1, 2, 3].map((s) => encodeFeedEntry(entry(s))),
        HEADER_BYTES,
      )
      await rawDb(store).put(key, PLAIN_SEALER.seal(key, page), { valueEncoding: 'view' })
      const err = await collect(store.feed('c', 0)).catch((e: unknown) => e)
      assert.ok(err instanceof StoreCorruptError && /does not decode/.test(err.message))
      await store.quarantine(err.record)
      assert.deepEqual(seqs(await collect(store.feed('c', 0))), [1])
      assert.equal(await store.lastSeq('c'), 2)
    })

    it('the floor under a failed quarantine batch: nothing moved, no floor; healed, both', async function () {
      store = memoryLevelStore()
      await store.open()
      await store.write(feedOps('c', [1, 2, 3]))
      await damage(store, '!feed!' + feedKey('c', 3))
      const err = (await collect(store.feed('c', 0)).catch((e: unknown) => e)) as StoreCorruptError
      const heal = failBatchesAfter(store, 0)
      await rejection(store.quarantine(err.record))
      heal()
      assert.equal(await rawDb(store).get(floorKey('c'), { valueEncoding: 'view' }), undefined)
      assert.ok(await rawDb(store).get('!feed!' + feedKey('c', 3), { valueEncoding: 'view' }))
      await store.quarantine(err.record)
      assert.equal(await store.lastSeq('c'), 3)
    })

    it('a collection name with odd characters: floor parsed right, dropped with it, not back after re-create', async function () {
      store = memoryLevelStore({ encryption: { key: KEY } })
      await store.open()
      const name = 'a!b\u0001c\uffff 0000000000000009'
      await store.write(feedOps(name, [1, 2, 3]))
      await store.write(feedOps('a!b', [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]))
      await damage(store, '!feed!' + feedKey(name, 3))
      await quarantineFeed(store, name)
      assert.equal(await store.lastSeq(name), 3)
      assert.equal(await store.lastSeq('a!b'), 10)
      await store.dropCollection(name)
      assert.equal(await store.lastSeq(name), 0)
      assert.equal(await rawDb(store).get(floorKey(name), { valueEncoding: 'view' }), undefined)
      await store.write(feedOps(name, [1]))
      assert.equal(await store.lastSeq(name), 1)
      assert.equal(await store.lastSeq('a!b'), 10)
    })

    it('a drop cut short after its marker deletes the floor when open() finishes it', async function () {
      store = classicLevelStore(dir)
      await store.open()
      await store.write(feedOps('c', [1, 2, 3]))
      await damage(store, '!feed!' + feedKey('c', 3))
      await quarantineFeed(store, 'c')
      failBatchesAfter(store, 1) // the marker's batch, then nothing
      await rejection(store.dropCollection('c'))
      await store.close().catch(() => undefined)
      assert.ok((await rawRecords(dir)).has(floorKey('c')))
      store = classicLevelStore(dir)
      await store.open()
      assert.equal(await store.lastSeq('c'), 0)
      await store.close()
      store = undefined
      assert.ok(!(await rawRecords(dir)).has(floorKey('c')))
    })

    it('recrypt (encrypt, then decrypt) keeps the floor', async function () {
      store = classicLevelStore(dir)
      await store.open()
      await store.write(feedOps('c', [1]))
      await store.write(feedOps('c', [2, 3, 4]))
      await damage(store, '!feed!' + feedKey('c', 4))
      await quarantineFeed(store, 'c')
      await store.close()
      await recryptStore(dir, undefined, { key: KEY })
      store = classicLevelStore(dir, { encryption: { key: KEY } })
      await store.open()
      assert.equal(await store.lastSeq('c'), 4)
      await store.close()
      await recryptStore(dir, { key: KEY }, undefined)
      store = classicLevelStore(dir)
      await store.open()
      assert.equal(await store.lastSeq('c'), 4)
    })

    it('format-0 migration leaves a floor present in the store keyspace as it is', async function () {
      const fixture = await copyFormat0Fixture()
      try {
        const key = floorKey('products')
        await putRaw(fixture, [[key, PLAIN_SEALER.sealCopy(key, encodeJson(500))]])
        store = classicLevelStore(fixture, { chunk: 7 })
        await store.open()
        assert.equal(await store.lastSeq('products'), 500)
        assert.equal(await store.lastSeq('orders/eu'), 120)
        await store.close()
      } finally {
        store = undefined
        await removeDir(fixture)
      }
    })

    it("resuming feed(since) after a quarantined page (core's changes() restarts from the last seq it yielded)", async function () {
      store = memoryLevelStore()
      await store.open()
      await store.write(feedOps('c', [1, 2]))
      await store.write(feedOps('c', [3, 4, 5]))
      await store.write(feedOps('c', [6, 7]))
      await damage(store, '!feed!' + feedKey('c', 5))
      const got: number[] = []
      let last = 0
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          for await (const e of store.feed('c', last)) {
            got.push(e.seq)
            last = e.seq
          }
          break
        } catch (err) {
          assert.ok(err instanceof StoreCorruptError)
          await store.quarantine(err.record)
        }
      }
      assert.deepEqual(got, [1, 2, 6, 7])
      for (const since of [2, 3, 4, 5]) assert.deepEqual(seqs(await collect(store.feed('c', since))), [6, 7])
      assert.equal(await store.lastSeq('c'), 7)
    })

    for (const encrypted of [false, true]) {
      it(`single-entry records (sealCopy) read back after reopen, proof included (${encrypted ? 'encrypted' : 'plain'})`, async function () {
        const options = encrypted ? { encryption: { key: KEY } } : {}
        store = classicLevelStore(dir, options)
        await store.open()
        const written = [entry(1), entry(3, { origin: 'ü'.repeat(300) }), entry(5, { proof: 'p5', kind: 'remote' })]
        await store.write(written.map((e): StoreOp => ({ type: 'feed', collection: 'c', entry: e })))
        await store.close()
        const records = await rawRecords(dir)
        for (const seq of [1, 3, 5]) assert.equal(records.get('!feed!' + feedKey('c', seq))![0], encrypted ? 3 : 1)
        store = classicLevelStore(dir, options)
        await store.open()
        assert.deepEqual(await collect(store.feed('c', 0)), written)
        assert.deepEqual(await collect(store.feed('c', 3)), [written[2]])
        assert.equal(await store.lastSeq('c'), 5)
      })
    }
  })
})
