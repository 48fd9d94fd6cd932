import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { isConvergentError, type StoreCorruptError, type StoreOp } from '@convergent/core'
import { storeComplianceSuite } from '@convergent/core/testing'
import { MemoryLevel } from 'memory-level'
import { classicLevelStore, LevelStore, memoryLevelStore } from '../src/index.js'
import { entityWrite } from './entity-ops.js'
import { forkStoreChild, type StoreChild } from './fork-child.js'
import { rejection, removeDir, tempDir } from './helpers.js'
import { tamperLevel } from './tamper.js'

storeComplianceSuite('classic-level', async () => {
  const dir = await tempDir()
  return { store: classicLevelStore(dir), reopen: async () => classicLevelStore(dir), cleanup: () => removeDir(dir), tamper: tamperLevel }
})

storeComplianceSuite('classic-level, sync: true', async () => {
  const dir = await tempDir()
  return {
    store: classicLevelStore(dir, { sync: true }),
    reopen: async () => classicLevelStore(dir, { sync: true }),
    cleanup: () => removeDir(dir),
    tamper: tamperLevel,
  }
})

storeComplianceSuite('memory-level', async () => {
  const store = memoryLevelStore()
  // memory-level keeps its data across close() and open() of the same instance.
  return { store, reopen: async () => new LevelStore(store.db, { kind: 'memory-level' }), cleanup: async () => undefined, tamper: tamperLevel }
})

// A database whose own default encodings are not utf8/view: its batch ops carry encoding
// options (the factories' databases take the faster path without them). Same bytes on disk.
storeComplianceSuite('memory-level with default encodings', async () => {
  const db = new MemoryLevel()
  return {
    store: new LevelStore(db, { kind: 'memory-level' }),
    reopen: async () => new LevelStore(db, { kind: 'memory-level' }),
    cleanup: async () => undefined,
    tamper: tamperLevel,
  }
})

describe('LevelStore', function () {
  describe('kind', function () {
    it('names the database', async function () {
      const dir = await tempDir()
      try {
        const disk = classicLevelStore(dir)
        assert.equal(disk.kind, 'classic-level')
        await disk.close()
        const memory = memoryLevelStore()
        assert.equal(memory.kind, 'memory-level')
        await memory.close()
      } finally {
        await removeDir(dir)
      }
    })
  })

  describe('locked data dir', function () {
    let dir: string
    let child: StoreChild | undefined
    beforeEach(async () => (dir = await tempDir()))
    afterEach(async () => {
      await child?.kill()
      child = undefined
      await removeDir(dir)
    })

    it('open() fails with a clear ERR_STORE while another store in this process holds the dir', async function () {
      const first = classicLevelStore(dir)
      await first.open()
      const second = classicLevelStore(dir)
      try {
        const err = await rejection(second.open())
        assert.equal(isConvergentError(err, 'ERR_STORE'), true)
        assert.match(err.message, /data dir .* is locked by another process/)
        assert.ok(err.message.includes(dir))
      } finally {
        await first.close()
      }
      await second.open() // free now: open() can be retried
      await second.close()
    })

    it('open() fails with a clear ERR_STORE while another process holds the dir', async function () {
      child = await forkStoreChild('hold', dir)
      const store = classicLevelStore(dir)
      const err = await rejection(store.open())
      assert.equal(isConvergentError(err, 'ERR_STORE'), true)
      assert.match(err.message, /data dir .* is locked by another process/)
      await store.close()
    })
  })

  describe('failed batches', function () {
    /** A memory-level whose batches fail while they carry a key containing 'poison'. */
    function poisonableStore(): LevelStore {
      const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' })
      db.hooks.prewrite.add((op) => {
        if (String(op.key).includes('poison')) throw new Error('injected failure')
      })
      return new LevelStore(db, { kind: 'memory-level' })
    }

    it('reject every write() of the batch and those queued behind it with ERR_STORE, apply nothing, and leave the store usable', async function () {
      const store = poisonableStore()
      await store.open()
      const before = store.stats.batches
      const tickA = [
        store.write(entityWrite('c', 1)),
        store.write([{ type: 'meta', key: 'poison', bytes: new Uint8Array([1]) }]),
        store.write(entityWrite('c', 2)),
      ]
      const failures = Promise.all(tickA.map(rejection))
      await new Promise((resolve) => setImmediate(resolve)) // batch A is in flight
      const tickB = rejection(store.write(entityWrite('c', 3))) // queued behind it: built on it, so it fails too
      const errors = await failures
      for (const err of errors) {
        assert.equal(isConvergentError(err, 'ERR_STORE'), true, String(err))
        assert.ok(err.message.includes('injected failure'))
      }
      const errB = await tickB
      assert.equal(isConvergentError(errB, 'ERR_STORE'), true, String(errB))
      assert.ok(errB.message.includes('came behind it'))
      assert.equal(await store.getHead('c', 'entity-1'), undefined)
      assert.equal(await store.getHead('c', 'entity-2'), undefined)
      assert.equal(await store.getMeta('poison'), undefined)
      assert.equal(await store.getHead('c', 'entity-3'), undefined)
      assert.equal(store.stats.batches - before, 0)
      await new Promise((resolve) => setImmediate(resolve)) // the next macrotask: writes go out again
      await store.write(entityWrite('c', 4))
      assert.equal(await store.lastSeq('c'), 4)
      await store.close()
    })

    it('reject with ERR_STORE when the database was closed under the store', async function () {
      const store = memoryLevelStore()
      await store.open()
      await store.write(entityWrite('c', 1))
      await store.db.close()
      const err = await rejection(store.write(entityWrite('c', 2)))
      assert.equal(isConvergentError(err, 'ERR_STORE'), true, String(err))
      assert.equal(isConvergentError(await rejection(store.getHead('c', 'entity-1')), 'ERR_STORE'), true)
      await store.close()
    })
  })

  describe('invalid ops', function () {
    it('reject only the write() they came in, before it joins the batch', async function () {
      const store = memoryLevelStore()
      await store.open()
      const bad: StoreOp[][] = [
        [{ type: 'delta', collection: 'c', id: 'a\u0000b', index: 0, bytes: new Uint8Array(1) }],
        [{ type: 'head', collection: '', id: 'x', head: { backend: 'yjs', versionHash: new Uint8Array(32), deltaCount: 0, deleted: false } }],
        [{ type: 'delta', collection: 'c', id: 'x', index: -1, bytes: new Uint8Array(1) }],
        [{ type: 'leaf', collection: 'c', leaf: 65_536, bytes: new Uint8Array(32) }],
        [{ type: 'feed', collection: 'c', entry: { seq: 0, id: 'x', origin: 'local', time: 0, kind: 'put' } }],
      ]
      const good = store.write(entityWrite('c', 1))
      const errors = await Promise.all(bad.map((ops) => rejection(store.write(ops))))
      assert.deepEqual(
        errors.map((e) => e.code),
        ['ERR_INVALID_ID', 'ERR_INVALID_ID', 'ERR_INVALID_ARGUMENT', 'ERR_INVALID_ARGUMENT', 'ERR_INVALID_ARGUMENT'],
      )
      await good
      assert.equal(await store.lastSeq('c'), 1)
      await store.close()
    })
  })

  describe('lifecycle', function () {
    it('rejects calls before open() with ERR_CLOSED', async function () {
      const store = memoryLevelStore()
      assert.equal((await rejection(store.write(entityWrite('c', 1)))).code, 'ERR_CLOSED')
      assert.equal((await rejection(store.getMeta('k'))).code, 'ERR_CLOSED')
      await store.open()
      await store.write(entityWrite('c', 1))
      await store.close()
    })

    it('passes the sync option to every batch (the memory-level path: what batch.write() is given)', async function () {
      const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' })
      const seen: unknown[] = []
      // The store writes chained batches: record the options of every batch.write().
      type Chained = { write(options: unknown): Promise<void> }
      const batch = db.batch.bind(db) as unknown as () => Chained
      ;(db as unknown as { batch: typeof batch }).batch = () => {
        const chained = batch()
        const write = chained.write.bind(chained)
        chained.write = (options) => {
          seen.push(options)
          return write(options)
        }
        return chained
      }
      const store = new LevelStore(db, { sync: true })
      await store.open() // writes the store's format record: a batch too
      await store.write(entityWrite('c', 1))
      await store.dropCollection('c')
      assert.deepEqual(seen, new Array(seen.length).fill({ sync: true }))
      assert.ok(seen.length >= 4, `saw ${seen.length} batches`)
      await store.close()
    })

    for (const sync of [true, false]) {
      it(`classicLevelStore(dir, { sync: ${sync} }) hands sync: ${sync} to LevelDB's batch write for every batch (writes, open, drop, quarantine)`, async function () {
        // The native call itself: classic-level's chained batch calls binding.batch_write(context,
        // options), which reads options.sync into WriteOptions.sync (binding.cc) — fsync per batch.
        const binding = createRequire(import.meta.url)('classic-level/binding.js') as {
          batch_write: (context: unknown, options: { sync?: boolean }) => unknown
        }
        const original = binding.batch_write
        const seen: (boolean | undefined)[] = []
        binding.batch_write = function (this: unknown, context, options) {
          seen.push(options?.sync)
          return original.call(this, context, options)
        }
        const dir = await tempDir()
        try {
          const store = classicLevelStore(dir, { sync })
          await store.open()
          await store.write(entityWrite('c', 1))
          await store.write(entityWrite('c', 2))
          await tamperLevel(store, 'heads', (key) => key.endsWith('entity-1'))
          const record = (await rejection(store.getHead('c', 'entity-1'))) as StoreCorruptError
          await store.quarantine(record.record)
          await store.dropCollection('c')
          await store.close()
          // open (format record), 2 writes, quarantine, drop (marker, 4 keyspaces' deletes, end).
          assert.ok(seen.length >= 9, `saw ${seen.length} batches`)
          assert.deepEqual(seen, new Array(seen.length).fill(sync))
        } finally {
          binding.batch_write = original
          await removeDir(dir)
        }
      })
    }
  })
})
