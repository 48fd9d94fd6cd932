import { expect } from 'chai'
import { ConvergentError, LoopbackHub, Replica } from '../src/index.js'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { classicLevelStore, memoryLevelStore } from '@convergent/level'
import { BACKENDS, disposalChecking, memoryReplica, nextTimerTurn, tempDir, waitFor } from './helpers.js'

type Product = { name: string; price: number; tags?: string[]; dims?: { w: number; h: number } }

async function rejectsWith(p: Promise<unknown>, code: string): Promise<ConvergentError> {
  try {
    await p
  } catch (err) {
    expect(err).to.be.instanceOf(ConvergentError)
    expect((err as ConvergentError).code).to.equal(code)
    return err as ConvergentError
  }
  throw new Error(`expected a rejection with ${code}`)
}

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
      await rejectsWith(products.update('nope', (p) => void (p.price = 1)), 'ERR_NOT_FOUND')
      await products.put('a', { name: 'A', price: 1 })
      await products.delete('a')
      await rejectsWith(products.update('a', (p) => void (p.price = 1)), 'ERR_NOT_FOUND')
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

describe('Replica: collections and backends', () => {
  it('opening a collection with another backend → ERR_BACKEND_MISMATCH', async () => {
    const replica = await memoryReplica()
    try {
      const c = replica.collection('orders', { backend: 'automerge' })
      await c.put('o1', { total: 3 })
      expect(() => replica.collection('orders', { backend: 'yjs' })).to.throw(ConvergentError).with.property('code', 'ERR_BACKEND_MISMATCH')
      expect(replica.collection('orders').backend).to.equal('automerge')
      expect(() => replica.collection('x', { backend: 'nope' })).to.throw(ConvergentError).with.property('code', 'ERR_UNKNOWN_BACKEND')
      expect(() => replica.collection('')).to.throw(ConvergentError).with.property('code', 'ERR_INVALID_ID')
    } finally {
      await replica.close()
    }
  })

  it('after close every call rejects with ERR_CLOSED', async () => {
    const replica = await memoryReplica()
    const c = replica.collection('x')
    await c.put('a', { v: 1 })
    await replica.close()
    await replica.close() // idempotent
    await rejectsWith(c.put('a', { v: 2 }), 'ERR_CLOSED')
    await rejectsWith(c.get('a'), 'ERR_CLOSED')
    expect(() => replica.collection('x')).to.throw(ConvergentError).with.property('code', 'ERR_CLOSED')
  })

  it('memory stays bounded: the LRU keeps at most cacheSize idle documents', async () => {
    const replica = await memoryReplica({ cacheSize: 16 })
    try {
      const c = replica.collection('many')
      await Promise.all(Array.from({ length: 300 }, (_, i) => c.put(`e${i}`, { i })))
      expect(replica.stats().cachedEntities).to.be.at.most(16)
      expect(await c.get('e5')).to.deep.equal({ i: 5 }) // evicted ones load back from the store
      expect(await c.get('e299')).to.deep.equal({ i: 299 })
    } finally {
      await replica.close()
    }
  })
})

describe('Eviction: documents are disposed of once unused, never reused, and reload from the store', () => {
  /** Both backends wrapped so that using a disposed document throws. */
  function checkedBackends(automergeBudget?: number) {
    const yjs = disposalChecking(yjsBackend())
    const automerge = disposalChecking(automergeBackend(), automergeBudget === undefined ? {} : { maxResident: automergeBudget })
    return { yjs, automerge, list: [yjs, automerge] }
  }

  for (const backend of BACKENDS) {
    it(`${backend}: rounds of concurrent writes evict and dispose of documents; every write survives`, async () => {
      const backends = checkedBackends()
      const replica = await memoryReplica({ backends: backends.list, cacheSize: 8 })
      try {
        const c = replica.collection<{ i: number; n: number; tags: string[] }>('many', { backend })
        // A listener makes every write read its document after it released it (to emit).
        const events: (number | undefined)[] = []
        c.subscribe((e) => events.push(e.value?.n))
        for (let round = 0; round < 3; round++) {
          await Promise.all(
            Array.from({ length: 40 }, (_, i) =>
              round === 0 ? c.put(`e${i}`, { i, n: 0, tags: ['a'] }) : c.update(`e${i}`, (v) => void ((v.n = round), v.tags.push(`r${round}`))),
            ),
          )
          await nextTimerTurn()
        }
        expect(backends[backend].disposed).to.be.greaterThan(0)
        expect(events).to.have.length(120)
        for (let i = 0; i < 40; i++) expect(await c.get(`e${i}`)).to.deep.equal({ i, n: 2, tags: ['a', 'r1', 'r2'] })
        expect(replica.stats().cachedEntities).to.be.at.most(8)
      } finally {
        await replica.close()
      }
    })

    it(`${backend}: documents evicted while deltas from a peer arrive are disposed of safely`, async () => {
      const hub = new LoopbackHub()
      const sender = await memoryReplica({ network: hub.createNetwork('a') })
      const backends = checkedBackends(4)
      const receiver = await memoryReplica({ network: hub.createNetwork('b'), backends: backends.list, cacheSize: 4 })
      try {
        // A listener makes every applied delta read its document after it was released.
        const updated = new Set<string>()
        receiver.collection('items', { backend }).subscribe((e) => {
          if ((e.value as { n?: number } | undefined)?.n === 1) updated.add(e.id)
        })
        const items = sender.collection<{ n: number }>('items', { backend })
        await Promise.all(Array.from({ length: 30 }, (_, i) => items.put(`i${i}`, { n: 0 })))
        await Promise.all(Array.from({ length: 30 }, (_, i) => items.update(`i${i}`, (v) => void (v.n = 1))))
        await waitFor(() => updated.size === 30 || receiver.stats().droppedTotal > 0, 'every remote update emitted')
        expect(receiver.stats().droppedTotal).to.equal(0)
        await nextTimerTurn()
        expect(backends[backend].disposed).to.be.greaterThan(0)
        for (let i = 0; i < 30; i++) expect(await receiver.collection('items').get(`i${i}`)).to.deep.equal({ n: 1 })
      } finally {
        await Promise.all([sender.close(), receiver.close()])
      }
    })
  }

  it("a backend's budget (maxResident) caps its documents; the other backend keeps cacheSize", async () => {
    const backends = checkedBackends(5)
    const replica = await memoryReplica({ backends: backends.list, cacheSize: 100 })
    try {
      const am = replica.collection<{ i: number }>('am', { backend: 'automerge' })
      const y = replica.collection<{ i: number }>('y', { backend: 'yjs' })
      await Promise.all(Array.from({ length: 30 }, (_, i) => Promise.all([am.put(`a${i}`, { i }), y.put(`y${i}`, { i })])))
      await nextTimerTurn()
      expect(replica.stats().cachedEntities).to.equal(35)
      expect(backends.automerge.disposed).to.equal(25)
      expect(backends.yjs.disposed).to.equal(0)
      for (let i = 0; i < 30; i++) expect(await am.get(`a${i}`)).to.deep.equal({ i })
    } finally {
      await replica.close()
    }
  })

  it('Automerge keeps at most 1,000 documents by default; Yjs has no budget of its own', () => {
    expect(automergeBackend().maxResident).to.equal(1000)
    expect(automergeBackend({ maxResident: 50 }).maxResident).to.equal(50)
    expect(yjsBackend().maxResident).to.equal(undefined)
  })
})

describe('Loading entities the store never held', () => {
  for (const backend of BACKENDS) {
    it(`${backend}: an id in a leaf the digest holds nothing in is not read from the store; stored ones still are`, async () => {
      const store = memoryLevelStore()
      const read: string[] = []
      const readEntity = store.readEntity.bind(store)
      store.readEntity = (collection, id) => {
        read.push(id)
        return readEntity(collection, id)
      }
      let failing = false
      const write = store.write.bind(store)
      store.write = (ops) => (failing ? Promise.reject(new Error('disk full')) : write(ops))
      const ids = Array.from({ length: 40 }, (_, i) => `e${i}`)
      const replica = await memoryReplica({ store, cacheSize: 4 })
      try {
        const c = replica.collection<{ n: number }>('x', { backend })
        for (const id of ids) await c.put(id, { n: 1 })
        expect(read).to.deep.equal([]) // each a new entity of an empty leaf
        // Evicted (the cache holds 4): each is read back, as its leaf is not empty any more.
        for (const id of ids) expect(await c.get(id)).to.deep.equal({ n: 1 })
        expect(read).to.deep.equal(ids)
        read.length = 0
        expect(await c.get('never-written')).to.equal(undefined)
        await c.update('e0', (v) => void (v.n = 2))
        expect(await c.get('e0')).to.deep.equal({ n: 2 })

        // After a failed write the digest is reloaded and may miss a write in flight: from
        // then on every load reads the store.
        failing = true
        await rejectsWith(c.put('f', { n: 1 }), 'ERR_STORE')
        failing = false
        read.length = 0
        await c.put('g', { n: 1 })
        expect(read).to.deep.equal(['g'])
        for (const id of ids) expect(await c.get(id)).to.deep.equal({ n: id === 'e0' ? 2 : 1 })
      } finally {
        await replica.close()
      }
    })
  }
})

describe('Failed store writes', () => {
  for (const backend of BACKENDS) {
    it(`${backend}: reject every write of the batch with ERR_STORE; memory reloads what the store holds`, async () => {
      const store = memoryLevelStore()
      let failing = false
      const write = store.write.bind(store)
      store.write = (ops) => (failing ? Promise.reject(new Error('disk full')) : write(ops))
      const replica = await memoryReplica({ store })
      try {
        const c = replica.collection<{ n: number }>('x', { backend })
        await c.put('a', { n: 1 })
        failing = true
        const results = await Promise.allSettled([c.put('a', { n: 2 }), c.put('b', { n: 2 }), c.update('a', (v) => void (v.n = 3))])
        for (const r of results) {
          expect(r.status).to.equal('rejected')
          expect((r as PromiseRejectedResult).reason).to.be.instanceOf(ConvergentError).with.property('code', 'ERR_STORE')
        }
        failing = false
        expect(await c.get('a')).to.deep.equal({ n: 1 })
        expect(await c.get('b')).to.equal(undefined)
        await c.update('a', (v) => void (v.n = 4))
        await c.put('b', { n: 5 })
        expect(await c.get('a')).to.deep.equal({ n: 4 })
        expect(await c.get('b')).to.deep.equal({ n: 5 })
        const feed: string[] = []
        for await (const e of c.changes()) feed.push(`${e.seq}:${e.id}`)
        expect(feed).to.deep.equal(['1:a', '5:a', '6:b']) // failed writes left no feed entries
      } finally {
        await replica.close()
      }
    })
  }
})

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

describe('Change events', () => {
  for (const backend of BACKENDS) {
    it(`${backend}: come in commit order, each with the value right after its own change`, async () => {
      const replica = await memoryReplica()
      try {
        const c = replica.collection<{ a?: number; b?: number }>('x', { backend })
        const seen: unknown[] = []
        c.subscribe((e) => seen.push([e.seq, e.value]))
        await c.put('e', { a: 0 })
        // Three changes of one entity in one tick: one batch, three events.
        await Promise.all([c.update('e', (v) => void (v.a = 1)), c.update('e', (v) => void (v.b = 2)), c.delete('e')])
        await c.put('e', { a: 3 })
        expect(seen).to.deep.equal([
          [1, { a: 0 }],
          [2, { a: 1 }],
          [3, { a: 1, b: 2 }], // not the delete that follows in the same batch
          [4, undefined],
          [5, { a: 3 }],
        ])
      } finally {
        await replica.close()
      }
    })
  }
})

describe('subscribe()', () => {
  for (const backend of BACKENDS) {
    it(`${backend}: tells a listener the changes committed after it subscribed, not one still being written before`, async () => {
      const replica = await memoryReplica()
      try {
        const c = replica.collection<{ n: number }>('x', { backend })
        const early: number[] = []
        c.subscribe((e) => early.push(e.seq))
        await c.put('first', { n: 0 }) // the digest tree is loaded: the next commit comes within microtasks
        const inFlight = c.put('a', { n: 1 })
        for (let i = 0; i < 5; i++) await Promise.resolve() // past its commit; its batch goes out on a later turn
        const late: number[] = []
        c.subscribe((e) => late.push(e.seq))
        await inFlight
        await c.put('b', { n: 2 })
        expect(early).to.deep.equal([1, 2, 3])
        expect(late).to.deep.equal([3])
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

describe('close()', () => {
  for (const backend of BACKENDS) {
    it(`${backend}: writes every commit made before it, also those queued behind a slow write`, async () => {
      const { dir, cleanup } = await tempDir()
      try {
        const store = classicLevelStore(dir)
        // The next batch waits (a slow disk) until the test releases it.
        let release: (() => void) | undefined
        let holdNext = false
        const batch = store.db.batch.bind(store.db)
        store.db.batch = (() => {
          const b = batch()
          if (!holdNext) return b
          holdNext = false
          const write = b.write.bind(b)
          b.write = () => new Promise<void>((resolve, reject) => (release = () => void write().then(resolve, reject)))
          return b
        }) as typeof store.db.batch
        const replica = await Replica.open({ store, backends: [yjsBackend(), automergeBackend()], syncIntervalMs: 0 })
        const c = replica.collection<{ a?: number; b?: number }>('x', { backend })
        await c.put('e', { a: 0 })
        holdNext = true
        const first = c.update('e', (v) => void (v.a = 1))
        await new Promise((resolve) => setImmediate(resolve))
        const second = c.update('e', (v) => void (v.b = 2)) // queued behind the first
        await new Promise((resolve) => setImmediate(resolve))
        const closed = replica.close()
        await new Promise((resolve) => setImmediate(resolve))
        release!()
        await Promise.all([first, second, closed])

        const again = await Replica.open({ store: classicLevelStore(dir), backends: [yjsBackend(), automergeBackend()], syncIntervalMs: 0 })
        try {
          expect(await again.collection('x').get('e')).to.deep.equal({ a: 1, b: 2 })
        } finally {
          await again.close()
        }
      } finally {
        await cleanup()
      }
    })
  }
})

describe('Compaction policy', () => {
  for (const backend of BACKENDS) {
    it(`${backend}: a hot entity keeps between compactAfter and 16× as many deltas`, async () => {
      const store = memoryLevelStore()
      // Folds leave the folded deltas for later writes to overwrite: no deletes.
      let deletes = 0
      const write = store.write.bind(store)
      store.write = (ops) => {
        deletes += ops.filter((op) => op.type === 'delDelta').length
        return write(ops)
      }
      const open = () => Replica.open({ store, backends: [yjsBackend(), automergeBackend()], compactAfter: 4, syncIntervalMs: 0 })
      const replica = await open()
      const c = replica.collection<{ n: number; pad: string }>('hot', { backend })
      await c.put('x', { n: 0, pad: 'p'.repeat(200) })
      let maxDeltas = 0
      let compactions = 0
      for (let i = 1; i <= 150; i++) {
        await c.update('x', (v) => void (v.n = i))
        const head = (await store.getHead('hot', 'x'))!
        if (head.deltaCount < maxDeltas) compactions++
        maxDeltas = Math.max(maxDeltas, head.deltaCount)
      }
      expect(compactions).to.be.greaterThan(0)
      expect(deletes).to.equal(0)
      expect(maxDeltas).to.be.at.least(4).and.at.most(64)
      expect(await c.get('x')).to.deep.equal({ n: 150, pad: 'p'.repeat(200) })
      await replica.close()
    })
  }
})

describe('Replica on classic-level: reopen keeps everything', () => {
  for (const backend of BACKENDS) {
    it(`${backend}: values, deletes, feed and backend survive a reopen; compaction folds deltas`, async () => {
      const { dir, cleanup } = await tempDir()
      try {
        const open = () => Replica.open({ store: classicLevelStore(dir), backends: [yjsBackend(), automergeBackend()], compactAfter: 8, syncIntervalMs: 0 })
        let replica = await open()
        let c = replica.collection<{ n: number; list: number[] }>('things', { backend })
        await c.put('hot', { n: 0, list: [] })
        for (let i = 1; i <= 50; i++) await c.update('hot', (v) => void ((v.n = i), v.list.push(i)))
        await c.put('gone', { n: -1, list: [] })
        await c.delete('gone')
        await replica.close()

        replica = await open()
        expect(() => replica.collection('things', { backend: backend === 'yjs' ? 'automerge' : 'yjs' }))
          .to.throw(ConvergentError)
          .with.property('code', 'ERR_BACKEND_MISMATCH')
        c = replica.collection('things')
        expect(c.backend).to.equal(backend)
        const hot = (await c.get('hot'))!
        expect(hot.n).to.equal(50)
        expect(hot.list).to.have.length(50)
        expect(await c.get('gone')).to.equal(undefined)
        let last = 0
        for await (const e of c.changes()) last = e.seq
        expect(last).to.equal(53)
        await c.update('hot', (v) => void (v.n = 51)) // keeps writing after reopen
        expect((await c.get('hot'))!.n).to.equal(51)
        await replica.close()
      } finally {
        await cleanup()
      }
    })
  }
})
