/**
 * Review 5 of feed pages (4362317, 9de8906): each test here failed against those commits and
 * passes since pages are keyed by their last seq, a queued batch's format is never lowered, a
 * quarantined feed record leaves a floor for lastSeq, and pages stop at 64 KiB.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { StoreOp } from '@convergent/core'
import { memoryLevelStore, type LevelStore } from '../src/index.js'
import { collect, rawRecords, removeDir, tempDir } from './helpers.js'
import { damage, entry, feedOps, formatOf, storeAtFormat } from './feed-helpers.js'

const KEY = randomBytes(32)

describe('review5: feed pages', function () {
  this.timeout(120_000)
  let dir: string
  let store: LevelStore | undefined
  beforeEach(async () => (dir = await tempDir('convergent-review5-')))
  afterEach(async () => {
    await store?.close().catch(() => undefined)
    store = undefined
    await removeDir(dir)
  })

  /** A folder whose 'format' record says `version` (as one written by an older release). */
  async function folderAtFormat(version: number): Promise<void> {
    store = await storeAtFormat(dir, KEY, version)
  }

  it('a format-1 folder: a page and a proof entry written in the same tick leave the folder saying 3, not 2', async function () {
    await folderAtFormat(1)
    // Both writes see format 1: the page's batch op says 3, the proof's says 2, and
    // writeBatch keeps only the LAST op of the 'format' key.
    await Promise.all([store!.write(feedOps('c', [1, 2])), store!.write([{ type: 'feed', collection: 'd', entry: entry(1, { proof: 'p1' }) }])])
    await store!.close()
    store = undefined
    assert.equal(formatOf(await rawRecords(dir), KEY), 3, 'the folder holds a page, so format-2 code must refuse it')
  })

  it('a format-1 folder: a proof entry written while the first page is in flight does not take the format back to 2', async function () {
    await folderAtFormat(1)
    const page = store!.write(feedOps('c', [1, 2]))
    await new Promise((resolve) => setImmediate(resolve)) // the page's batch is being written
    const proof = store!.write([{ type: 'feed', collection: 'd', entry: entry(1, { proof: 'p1' }) }])
    await Promise.all([page, proof])
    await store!.close()
    store = undefined
    assert.equal(formatOf(await rawRecords(dir), KEY), 3, 'a later batch wrote format 2 over the 3 of the first page')
  })

  it('ops of one write apply in order: a feed seq written twice keeps the later entry, and feed() stays ascending', async function () {
    store = memoryLevelStore()
    await store.open()
    const again = entry(2, { id: 'again' })
    await store.write([...feedOps('c', [1, 2, 3]), { type: 'feed', collection: 'c', entry: again }])
    const got = await collect(store.feed('c', 0))
    assert.deepEqual(
      got.map((e) => [e.seq, e.id]),
      [
        [1, 'e1'],
        [2, 'again'],
        [3, 'e3'],
      ],
    )
  })

  // (A later write of a seq an earlier write's page holds is outside the Store contract now —
  // each seq is written once, which core always did — so that review test is not kept.)

  it('feed(since) does not read a damaged record wholly at or before since (one entry per record, as a pre-page folder has)', async function () {
    store = memoryLevelStore({ encryption: { key: KEY } })
    await store.open()
    for (let seq = 1; seq <= 5; seq++) await store.write(feedOps('c', [seq])) // one record each, no page
    await damage(store, '!feed!c\u00000000000000000003', 3)
    // Before pages, feed('c', 3) began at key 4: the consumer that has read up to 3 never met
    // the damaged record (core's changes() would now quarantine it; the audit CLI too).
    assert.deepEqual(
      (await collect(store.feed('c', 3))).map((e) => e.seq),
      [4, 5],
    )
  })

  it('quarantining a damaged LAST page does not take lastSeq back by the whole page (seqs would be reused after reopen)', async function () {
    // Pre-existing for one entry (its seq was reused); a page makes it every entry of the last
    // write, up to 1024: a changes({ since }) consumer past them then misses that many new changes.
    store = memoryLevelStore({ encryption: { key: KEY } })
    await store.open()
    await store.write(feedOps('c', [1]))
    await store.write(feedOps('c', [2, 3, 4, 5, 6]))
    await damage(store, '!feed!c\u00000000000000000006', 3) // the page of 2..6, keyed by its last seq
    const err = (await collect(store.feed('c', 0)).catch((e: unknown) => e)) as { record: { keyspace: string; key: string } }
    await store.quarantine(err.record)
    assert.ok((await store.lastSeq('c')) >= 5, `lastSeq fell to ${await store.lastSeq('c')}: seqs 2..6 will be handed out again`)
  })

  it('one feed read round trip holds a bounded number of bytes (pages of 1024 large entries: READ_CHUNK counts records)', async function () {
    store = memoryLevelStore()
    await store.open()
    const origin = 'o'.repeat(16 * 1024)
    let seq = 0
    for (let w = 0; w < 4; w++) {
      const ops: StoreOp[] = []
      for (let i = 0; i < 1024; i++) ops.push({ type: 'feed', collection: 'c', entry: entry(++seq, { origin }) })
      await store.write(ops)
    }
    // Count the bytes each nextv() of the feed keyspace returns.
    const feed = (store as unknown as { sub: { feed: { iterator(o: object): { nextv(n: number): Promise<[string, Uint8Array][]> } } } }).sub.feed
    const iterator = feed.iterator.bind(feed)
    let most = 0
    feed.iterator = (o: object) => {
      const it = iterator(o)
      const nextv = it.nextv.bind(it)
      it.nextv = async (n: number) => {
        const got = await nextv(n)
        most = Math.max(
          most,
          got.reduce((sum, [, v]) => sum + v.byteLength, 0),
        )
        return got
      }
      return it
    }
    let n = 0
    for await (const e of store.feed('c', 0)) {
      void e
      n++
    }
    assert.equal(n, 4096)
    // One record per entry: at most 256 entries of at most ~64 KiB each per round trip.
    const oldWorstCase = 256 * (64 * 1024 + 300)
    assert.ok(most <= oldWorstCase, `one round trip held ${(most / 2 ** 20).toFixed(1)} MiB (bound before pages: ${(oldWorstCase / 2 ** 20).toFixed(1)} MiB)`)
  })
})
