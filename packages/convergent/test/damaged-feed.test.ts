// A damaged last change-feed record (a flipped byte on disk): the replica still opens, moves the
// record aside, reports it, and numbers the next change past it, so a changes({ since })
// consumer that had read up to it misses nothing written later.
import { join } from 'node:path'
import { expect } from 'chai'
import { Replica } from '@convergent/core'
import { recordingLogger } from '@convergent/core/testing'
import { classicLevelStore } from '@convergent/level'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { tempDir } from './helpers.js'

describe('A damaged last change-feed record', function () {
  this.timeout(30_000)

  it('the replica opens, moves it aside, and hands out no seq twice', async () => {
    const { dir, cleanup } = await tempDir('convergent-damaged-feed-')
    const db = join(dir, 'db')
    const opened = (logger = recordingLogger()) =>
      Replica.open({ store: classicLevelStore(db), backends: [yjsBackend(), automergeBackend()], logger, syncIntervalMs: 0 })
    try {
      let replica = await opened()
      const products = replica.collection<{ n: number }>('products')
      await products.put('p1', { n: 1 })
      await Promise.all([products.put('p2', { n: 2 }), products.put('p3', { n: 3 })]) // one write: a page of seqs 2..3
      const before: number[] = []
      for await (const c of products.changes({ since: 0 })) {
        before.push(c.seq)
        if (before.length === 3) break
      }
      expect(before).to.deep.equal([1, 2, 3])
      await replica.close()

      // Flip a byte of the last feed record (the page of 2..3), behind the store's back.
      const raw = classicLevelStore(db)
      await raw.open()
      const level = raw.db as unknown as {
        keys(o: object): { all(): Promise<string[]> }
        get(k: string, o: object): Promise<Uint8Array>
        put(k: string, v: Uint8Array, o: object): Promise<void>
      }
      const key = (await level.keys({ gte: '!feed!products', lt: '!feed!products\uffff' }).all()).at(-1)!
      const damaged = new Uint8Array(await level.get(key, { valueEncoding: 'view' }))
      damaged[damaged.byteLength - 1]! ^= 1
      await level.put(key, damaged, { valueEncoding: 'view' })
      await raw.close()

      const logger = recordingLogger()
      replica = await opened(logger)
      expect(logger.lines.some((l) => /last change-feed record: moved aside/.test(l.message))).to.equal(true)
      const again = replica.collection<{ n: number }>('products')
      expect(await again.get('p3')).to.deep.equal({ n: 3 }, 'the entities are untouched')
      await again.put('p4', { n: 4 })
      const after: number[] = []
      for await (const c of again.changes({ since: 3 })) {
        after.push(c.seq)
        break
      }
      expect(after).to.deep.equal([4], 'the next change is numbered past the damaged record')
      await replica.close()
    } finally {
      await cleanup()
    }
  })
})
