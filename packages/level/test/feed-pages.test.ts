/**
 * Feed pages (store format 3): a store writes the feed entries of one write whose seqs follow
 * each other as ONE record (one seal or checksum instead of one per entry). Reads see the same
 * entries as from one record per entry: feed(since) from any point, inside a page too, lastSeq,
 * damage and quarantine; the folder says format 3 from the batch that writes its first page.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { isConvergentError, StoreCorruptError, type FeedEntry, type StoreOp } from '@convergent/core'
import { classicLevelStore, memoryLevelStore, type LevelStore } from '../src/index.js'
import { AtRestSealer } from '../src/encryption.js'
import { FORMAT_KEY } from '../src/keys.js'
import { collect, putRaw, rawRecords, removeDir, tempDir } from './helpers.js'

const KEY = randomBytes(32)

function entry(seq: number, id = `e${seq}`): FeedEntry {
  return {
    seq,
    id,
    origin: seq % 3 === 0 ? 'peer-x' : 'local',
    time: 1_000 + seq,
    kind: seq % 2 === 0 ? 'put' : 'remote',
    ...(seq % 5 === 0 ? { proof: `p${seq}` } : {}),
  }
}

const feedOps = (collection: string, seqs: number[]): StoreOp[] => seqs.map((seq) => ({ type: 'feed', collection, entry: entry(seq) }))

function feedRecordsOf(records: Map<string, Uint8Array>): string[] {
  return [...records.keys()].filter((k) => k.startsWith('!feed!'))
}

function formatOf(records: Map<string, Uint8Array>): number {
  const stored = records.get('!store!' + FORMAT_KEY)!
  return (JSON.parse(Buffer.from(new AtRestSealer(KEY).open('!store!', 0, FORMAT_KEY, stored)!).toString()) as { version: number }).version
}

describe('LevelStore: feed pages', function () {
  this.timeout(60_000)
  let dir: string
  let store: LevelStore | undefined
  beforeEach(async () => (dir = await tempDir('convergent-pages-')))
  afterEach(async () => {
    await store?.close().catch(() => undefined)
    store = undefined
    await removeDir(dir)
  })

  it("one write's consecutive entries are one record; feed(since) from every point and lastSeq read them as before", async function () {
    store = classicLevelStore(dir, { encryption: { key: KEY } })
    await store.open()
    await store.write(feedOps('c', [1, 2, 3, 4, 5]))
    await store.write(feedOps('c', [6]))
    await store.write([...feedOps('c', [7, 8, 10, 11]), ...feedOps('d', [1, 2])]) // a gap: two runs
    await store.close()
    const records = await rawRecords(dir)
    // Keyed by each record's last seq: feed(since) is one range scan from since + 1.
    assert.deepEqual(feedRecordsOf(records), [
      '!feed!c\u00000000000000000005',
      '!feed!c\u00000000000000000006',
      '!feed!c\u00000000000000000008',
      '!feed!c\u00000000000000000011',
      '!feed!d\u00000000000000000002',
    ])
    assert.equal(formatOf(records), 3)
    store = classicLevelStore(dir, { encryption: { key: KEY } })
    await store.open()
    const all = [1, 2, 3, 4, 5, 6, 7, 8, 10, 11]
    for (const since of [-1, 0, 1, 2, 4.5, 5, 6, 7, 8, 9, 10, 11, 12]) {
      assert.deepEqual(
        await collect(store.feed('c', since)),
        all.filter((s) => s > since).map((s) => entry(s)),
        `since ${since}`,
      )
    }
    assert.deepEqual(await collect(store.feed('d', 1)), [entry(2)])
    assert.equal(await store.lastSeq('c'), 11)
    assert.equal(await store.lastSeq('d'), 2)
  })

  it('a plain store pages its feed the same way', async function () {
    store = classicLevelStore(dir)
    await store.open()
    await store.write(feedOps('c', [1, 2, 3]))
    assert.deepEqual(await collect(store.feed('c', 1)), [entry(2), entry(3)])
    await store.close()
    assert.equal(feedRecordsOf(await rawRecords(dir)).length, 1)
  })

  it('a damaged page rejects with ERR_STORE_CORRUPT naming it; quarantined, the other records read', async function () {
    store = memoryLevelStore({ encryption: { key: KEY } })
    await store.open()
    await store.write(feedOps('c', [1, 2, 3]))
    await store.write(feedOps('c', [4, 5]))
    const db = store.db as unknown as { get(k: string, o: object): Promise<Uint8Array>; put(k: string, v: Uint8Array, o: object): Promise<void> }
    const key = '!feed!c\u00000000000000000003' // the page of 1..3
    const page = new Uint8Array(await db.get(key, { valueEncoding: 'view' }))
    page[page.byteLength - 20]! ^= 1
    await db.put(key, page, { valueEncoding: 'view' })
    for (const since of [0, 1, 2]) {
      const err: unknown = await collect(store.feed('c', since)).then(
        () => undefined,
        (e: unknown) => e,
      )
      assert.ok(err instanceof StoreCorruptError && isConvergentError(err, 'ERR_STORE_CORRUPT'), `since ${since}: ${String(err)}`)
      assert.equal(err.record.keyspace, 'feed')
    }
    assert.deepEqual(await collect(store.feed('c', 4)), [entry(5)], 'a read from a later record on does not touch it')
    const damaged = (await collect(store.feed('c', 0)).catch((e: unknown) => e)) as StoreCorruptError
    await store.quarantine(damaged.record)
    assert.deepEqual(await collect(store.feed('c', 0)), [entry(4), entry(5)])
  })

  it('a folder at format 1 or 2 stays there while no page is written, then says 3 in the batch of its first page', async function () {
    for (const start of [1, 2]) {
      store = classicLevelStore(dir, { encryption: { key: KEY } })
      await store.open()
      await store.close()
      const FORMAT = '!store!' + FORMAT_KEY
      await putRaw(dir, [[FORMAT, new AtRestSealer(KEY).sealCopy(FORMAT, new TextEncoder().encode(JSON.stringify({ version: start })))]])
      store = classicLevelStore(dir, { encryption: { key: KEY } })
      await store.open()
      await store.write(feedOps('c', [start * 10 + 1])) // one entry (no proof): no page
      await store.close()
      assert.equal(formatOf(await rawRecords(dir)), start, `format ${start} stays while no page is written`)
      store = classicLevelStore(dir, { encryption: { key: KEY } })
      await store.open()
      await store.write(feedOps('c', [start * 10 + 2, start * 10 + 3]))
      await store.close()
      assert.equal(formatOf(await rawRecords(dir)), 3, `format ${start} → 3 with the first page`)
      store = undefined
      await removeDir(dir)
    }
  })

  it('a quarantined last page keeps lastSeq (no seq handed out twice) until the collection is dropped', async function () {
    store = memoryLevelStore({ encryption: { key: KEY } })
    await store.open()
    await store.write(feedOps('c', [1]))
    await store.write(feedOps('c', [2, 3, 4]))
    const db = store.db as unknown as { get(k: string, o: object): Promise<Uint8Array>; put(k: string, v: Uint8Array, o: object): Promise<void> }
    const key = '!feed!c\u00000000000000000004'
    const page = new Uint8Array(await db.get(key, { valueEncoding: 'view' }))
    page[page.byteLength - 5]! ^= 1
    await db.put(key, page, { valueEncoding: 'view' })
    const damaged = (await collect(store.feed('c', 0)).catch((e: unknown) => e)) as StoreCorruptError
    await store.quarantine(damaged.record)
    assert.deepEqual(await collect(store.feed('c', 0)), [entry(1)])
    assert.equal(await store.lastSeq('c'), 4)
    await store.dropCollection('c')
    assert.equal(await store.lastSeq('c'), 0, 'a dropped collection starts again at 0')
  })

  it('property: any sequence of writes (runs, gaps, several collections) reads back as the entries written', async function () {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(fc.record({ collection: fc.constantFrom('a', 'b'), skip: fc.nat(2) }), { minLength: 1, maxLength: 12 }), {
          minLength: 1,
          maxLength: 8,
        }),
        fc.array(fc.integer({ min: -1, max: 120 }), { minLength: 1, maxLength: 6 }),
        async (writes, sinces) => {
          const s = memoryLevelStore({ encryption: { key: KEY } })
          await s.open()
          try {
            const next: Record<string, number> = { a: 0, b: 0 }
            const written: Record<string, FeedEntry[]> = { a: [], b: [] }
            for (const w of writes) {
              const ops: StoreOp[] = []
              for (const { collection, skip } of w) {
                next[collection]! += 1 + skip
                const e = entry(next[collection]!)
                written[collection]!.push(e)
                ops.push({ type: 'feed', collection, entry: e })
              }
              await s.write(ops)
            }
            for (const c of ['a', 'b']) {
              assert.equal(await s.lastSeq(c), written[c]!.at(-1)?.seq ?? 0)
              for (const since of sinces)
                assert.deepEqual(
                  await collect(s.feed(c, since)),
                  written[c]!.filter((e) => e.seq > since),
                )
            }
          } finally {
            await s.close()
          }
        },
      ),
      { numRuns: 200 },
    )
  })
})
