// Replica: which collections it holds and with which backend, close(), reopening from disk.
import { expect } from 'chai'
import { ConvergentError, Replica } from '../src/index.js'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { classicLevelStore } from '@convergent/level'
import { BACKENDS, memoryReplica, rejectsWith, tempDir } from './helpers.js'

describe('Replica: collections and backends', () => {
  it('opening a collection with another backend → ERR_BACKEND_MISMATCH', async () => {
    const replica = await memoryReplica()
    try {
      const c = replica.collection('orders', { backend: 'automerge' })
      await c.put('o1', { total: 3 })
      expect(() => replica.collection('orders', { backend: 'yjs' }))
        .to.throw(ConvergentError)
        .with.property('code', 'ERR_BACKEND_MISMATCH')
      expect(replica.collection('orders').backend).to.equal('automerge')
      expect(() => replica.collection('x', { backend: 'nope' }))
        .to.throw(ConvergentError)
        .with.property('code', 'ERR_UNKNOWN_BACKEND')
      expect(() => replica.collection(''))
        .to.throw(ConvergentError)
        .with.property('code', 'ERR_INVALID_ID')
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
    expect(() => replica.collection('x'))
      .to.throw(ConvergentError)
      .with.property('code', 'ERR_CLOSED')
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
