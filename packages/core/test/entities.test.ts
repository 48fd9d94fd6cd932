// Entities: the document cache and its eviction, loads, failed store writes, compaction.
import { expect } from 'chai'
import { ConvergentError, LoopbackHub, Replica } from '../src/index.js'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { memoryLevelStore } from '@convergent/level'
import { BACKENDS, disposalChecking, memoryReplica, nextTimerTurn, rejectsWith, waitFor } from './helpers.js'

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
          expect((r as PromiseRejectedResult).reason)
            .to.be.instanceOf(ConvergentError)
            .with.property('code', 'ERR_STORE')
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
