// The Collection API on every backend: writes, reads, feeds, and writes that build on others.
import { expect } from 'chai'
import { Replica } from '../src/index.js'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { classicLevelStore, memoryLevelStore } from '@convergent/level'
import { BACKENDS, memoryReplica, rejectsWith, tempDir } from './helpers.js'

type Product = { name: string; price: number; tags?: string[]; dims?: { w: number; h: number } }

for (const backend of BACKENDS) {
  describe(`Replica (${backend}, memory-level, no network)`, () => {
    let replica: Replica
    beforeEach(async () => {
      replica = await memoryReplica()
    })
    afterEach(async () => {
      await replica.close()
    })

    it('put / get / update / delete round trip', async () => {
      const products = replica.collection<Product>('products', { backend })
      expect(products.backend).to.equal(backend)
      await products.put('sku-1', { name: 'Mug', price: 12, tags: ['kitchen'] })
      expect(await products.get('sku-1')).to.deep.equal({ name: 'Mug', price: 12, tags: ['kitchen'] })
      const updated = await products.update('sku-1', (p) => {
        p.price = 13
        p.tags!.push('sale')
      })
      expect(updated).to.deep.equal({ name: 'Mug', price: 13, tags: ['kitchen', 'sale'] })
      expect(await products.get('sku-1')).to.deep.equal(updated)
      await products.delete('sku-1')
      expect(await products.get('sku-1')).to.equal(undefined)
      expect(await products.has('sku-1')).to.equal(false)
      await products.put('sku-1', { name: 'Mug II', price: 20 })
      expect(await products.get('sku-1')).to.deep.equal({ name: 'Mug II', price: 20 })
    })

    it('get returns a copy: mutating it changes nothing stored', async () => {
      const products = replica.collection<Product>('products', { backend })
      await products.put('a', { name: 'A', price: 1 })
      const v = (await products.get('a'))!
      v.price = 999
      expect((await products.get('a'))!.price).to.equal(1)
    })

    it('update may return a replacement value', async () => {
      const products = replica.collection<Product>('products', { backend })
      await products.put('a', { name: 'A', price: 1, tags: ['x'] })
      await products.update('a', (p) => ({ name: p.name, price: 2 }))
      expect(await products.get('a')).to.deep.equal({ name: 'A', price: 2 })
    })

    it('update of a missing or deleted entity rejects with ERR_NOT_FOUND', async () => {
      const products = replica.collection<Product>('products', { backend })
      await rejectsWith(
        products.update('nope', (p) => void (p.price = 1)),
        'ERR_NOT_FOUND',
      )
      await products.put('a', { name: 'A', price: 1 })
      await products.delete('a')
      await rejectsWith(
        products.update('a', (p) => void (p.price = 1)),
        'ERR_NOT_FOUND',
      )
    })

    it('entries() and keys() list live entities only', async () => {
      const products = replica.collection<Product>('products', { backend })
      for (let i = 0; i < 20; i++) await products.put(`p${i}`, { name: `P${i}`, price: i })
      await products.delete('p3')
      const seen = new Map<string, Product>()
      for await (const [id, v] of products.entries()) seen.set(id, v)
      expect(seen.size).to.equal(19)
      expect(seen.has('p3')).to.equal(false)
      expect(seen.get('p7')).to.deep.equal({ name: 'P7', price: 7 })
      const keys: string[] = []
      for await (const k of products.keys()) keys.push(k)
      expect(keys.sort()).to.deep.equal([...seen.keys()].sort())
    })

    it('subscribe() sees local changes after they are durable, with values and seq', async () => {
      const products = replica.collection<Product>('products', { backend })
      const events: { id: string; value: unknown; origin: string; seq: number }[] = []
      const stop = products.subscribe((e) => events.push({ id: e.id, value: e.value, origin: e.origin, seq: e.seq }))
      await products.put('a', { name: 'A', price: 1 })
      await products.update('a', (p) => void (p.price = 2))
      await products.delete('a')
      stop()
      await products.put('b', { name: 'B', price: 1 })
      expect(events).to.deep.equal([
        { id: 'a', value: { name: 'A', price: 1 }, origin: 'local', seq: 1 },
        { id: 'a', value: { name: 'A', price: 2 }, origin: 'local', seq: 2 },
        { id: 'a', value: undefined, origin: 'local', seq: 3 },
      ])
    })

    it('a listener that throws does not break the write', async () => {
      const products = replica.collection<Product>('products', { backend })
      products.subscribe(() => {
        throw new Error('boom')
      })
      await products.put('a', { name: 'A', price: 1 })
      expect(await products.get('a')).to.deep.equal({ name: 'A', price: 1 })
    })

    it('changes({ since }) is a resumable feed of every change', async () => {
      const products = replica.collection<Product>('products', { backend })
      for (let i = 0; i < 10; i++) await products.put(`p${i % 3}`, { name: 'x', price: i })
      const all = []
      for await (const e of products.changes()) all.push(e)
      expect(all.map((e) => e.seq)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
      expect(all.every((e) => e.origin === 'local' && e.kind === 'put')).to.equal(true)
      expect(all.every((e) => e.author === replica.peerId)).to.equal(true) // a local write's author: this replica
      expect(all[4]!.id).to.equal('p1')
      const tail = []
      for await (const e of products.changes({ since: 7 })) tail.push(e.seq)
      expect(tail).to.deep.equal([8, 9, 10])
    })

    it('writing the same value again writes nothing', async () => {
      const products = replica.collection<Product>('products', { backend })
      await products.put('a', { name: 'A', price: 1 })
      await products.put('a', { name: 'A', price: 1 })
      const seqs = []
      for await (const e of products.changes()) seqs.push(e.seq)
      expect(seqs).to.deep.equal([1])
    })

    it('concurrent writes in one tick all land, in order, for one hot entity', async () => {
      const products = replica.collection<Product>('products', { backend })
      await products.put('hot', { name: 'hot', price: 0 })
      await Promise.all(Array.from({ length: 200 }, (_, i) => products.update('hot', (p) => void (p.price = i + 1))))
      expect((await products.get('hot'))!.price).to.equal(200)
    })

    describe('bad input → ConvergentError and nothing written', () => {
      const bad: [string, unknown, string][] = [
        ['a function', { name: 'x', price: 1, f: () => 1 }, 'ERR_INVALID_VALUE'],
        ['a symbol', { name: 'x', price: Symbol('s') }, 'ERR_INVALID_VALUE'],
        ['a BigInt', { name: 'x', price: 10n }, 'ERR_INVALID_VALUE'],
        ['NaN', { name: 'x', price: Number.NaN }, 'ERR_INVALID_VALUE'],
        ['a Date', { name: 'x', price: 1, at: new Date() }, 'ERR_INVALID_VALUE'],
        ['undefined', undefined, 'ERR_INVALID_VALUE'],
        ['null', null, 'ERR_INVALID_VALUE'],
        ['an array at the root', [1, 2], 'ERR_INVALID_VALUE'],
        ['a string at the root', 'mug', 'ERR_INVALID_VALUE'],
        ['undefined in an array', { name: 'x', price: 1, tags: [undefined] }, 'ERR_INVALID_VALUE'],
        ['an oversized value', { name: 'x'.repeat(2 * 1024 * 1024), price: 1 }, 'ERR_TOO_LARGE'],
      ]
      for (const [what, value, code] of bad) {
        it(`put of ${what} → ${code}`, async () => {
          const products = replica.collection<Product>('products', { backend })
          await rejectsWith(products.put('a', value as Product), code)
          expect(await products.get('a')).to.equal(undefined)
          const feed = []
          for await (const e of products.changes()) feed.push(e)
          expect(feed).to.have.length(0)
        })
      }

      it('a cyclic value → ERR_INVALID_VALUE', async () => {
        const products = replica.collection<Product>('products', { backend })
        const v: Record<string, unknown> = { name: 'x', price: 1 }
        v.self = v
        await rejectsWith(products.put('a', v as unknown as Product), 'ERR_INVALID_VALUE')
      })

      it('bad ids → ERR_INVALID_ID', async () => {
        const products = replica.collection<Product>('products', { backend })
        await rejectsWith(products.put('', { name: 'x', price: 1 }), 'ERR_INVALID_ID')
        await rejectsWith(products.put('x'.repeat(257), { name: 'x', price: 1 }), 'ERR_INVALID_ID')
        await rejectsWith(products.put(42 as unknown as string, { name: 'x', price: 1 }), 'ERR_INVALID_ID')
        await rejectsWith(products.get('\ud800'), 'ERR_INVALID_ID')
      })

      it('an update whose draft becomes invalid writes nothing', async () => {
        const products = replica.collection<Product>('products', { backend })
        await products.put('a', { name: 'A', price: 1 })
        await rejectsWith(
          products.update('a', (p) => {
            ;(p as unknown as Record<string, unknown>).bad = () => 1
          }),
          'ERR_INVALID_VALUE',
        )
        expect(await products.get('a')).to.deep.equal({ name: 'A', price: 1 })
      })

      it('an update whose fn throws writes nothing and rethrows', async () => {
        const products = replica.collection<Product>('products', { backend })
        await products.put('a', { name: 'A', price: 1 })
        try {
          await products.update('a', (p) => {
            p.price = 5
            throw new Error('nope')
          })
          expect.fail('should throw')
        } catch (err) {
          expect((err as Error).message).to.equal('nope')
        }
        expect(await products.get('a')).to.deep.equal({ name: 'A', price: 1 })
      })
    })
  })
}

describe('A write of an unchanged value', () => {
  for (const backend of BACKENDS) {
    it(`${backend}: fails when the write it waits for (the same value, still in flight) fails`, async () => {
      const store = memoryLevelStore()
      let failing = false
      const batch = store.db.batch.bind(store.db)
      store.db.batch = (() => {
        const b = batch()
        if (failing) b.write = () => b.close().then(() => Promise.reject(new Error('EIO')))
        return b
      }) as typeof store.db.batch
      const replica = await memoryReplica({ store })
      try {
        const c = replica.collection<{ v: number }>('x', { backend })
        await c.put('e', { v: 0 })
        failing = true
        const [first, same] = await Promise.allSettled([c.put('e', { v: 1 }), c.put('e', { v: 1 })])
        expect(first.status).to.equal('rejected')
        expect(same.status, 'acknowledged a value that is not on disk').to.equal('rejected')
        expect((same as PromiseRejectedResult).reason).to.have.property('code', 'ERR_STORE')
        failing = false
        expect(await c.get('e')).to.deep.equal({ v: 0 })
      } finally {
        await replica.close()
      }
    })
  }
})

describe('A write that builds on one still in flight', () => {
  for (const backend of BACKENDS) {
    for (const fold of [false, true]) {
      it(`${backend}: is not written, and rejects, when the one before it fails${fold ? ' (the failed one folds)' : ''}`, async () => {
        const { dir, cleanup } = await tempDir()
        // Holds the next write back until the test lets it fail.
        let held: { fail: () => void } | undefined
        let holdNext = false
        const open = () => {
          const store = classicLevelStore(dir)
          // Under the store's group commit, where a real disk error would come from.
          const batch = store.db.batch.bind(store.db)
          store.db.batch = (() => {
            const b = batch()
            if (!holdNext) return b
            holdNext = false
            b.write = () => new Promise<void>((_, reject) => (held = { fail: () => void b.close().then(() => reject(new Error('EIO'))) }))
            return b
          }) as typeof store.db.batch
          return Replica.open({ store, backends: [yjsBackend(), automergeBackend()], compactAfter: 4, syncIntervalMs: 0 })
        }
        let replica = await open()
        try {
          const c = replica.collection<{ a: number; b: number }>('x', { backend })
          await c.put('e', { a: 0, b: 0 })
          // Enough deltas that the held write is a fold when asked for.
          for (let i = 1; i <= (fold ? 4 : 1); i++) await c.update('e', (v) => void (v.a = i))
          const acknowledged = await c.get('e')

          holdNext = true
          const first = c.update('e', (v) => void (v.a = 100))
          await new Promise((resolve) => setImmediate(resolve)) // the first is in the store's hands now
          const second = c.update('e', (v) => void (v.b = 200)) // builds on the first, in a later tick
          await new Promise((resolve) => setImmediate(resolve))
          held!.fail()
          await rejectsWith(first, 'ERR_STORE')
          await rejectsWith(second, 'ERR_STORE') // acknowledging it would claim what the store lacks

          await replica.close()
          replica = await open()
          expect(await replica.collection('x').get('e')).to.deep.equal(acknowledged)
          await replica.collection<{ a: number; b: number }>('x').update('e', (v) => void (v.b = 300))
          expect(await replica.collection('x').get('e')).to.deep.equal({ ...acknowledged, b: 300 })
        } finally {
          await replica.close()
          await cleanup()
        }
      })
    }
  }
})
