// Damaged records (Store reads that fail their checksum): never served, moved aside, and the
// entity repaired — from its copy in memory, else from peers.
import { expect } from 'chai'
import { LoopbackHub, StoreCorruptError, type CorruptRecord, type EntityHead, type Replica, type Store } from '../src/index.js'
import { classicLevelStore, memoryLevelStore } from '@convergent/level'
import { setTimeout as sleep } from 'node:timers/promises'
import { memoryReplica, recordingLogger, storeWith, tempDir, waitFor } from './helpers.js'

/**
 * A memory-level store in which the records named in `damaged` fail their check on every
 * read path until quarantine() moves them aside — as a LevelStore over a damaged disk does.
 */
function damageable(slowScans = false): { store: Store; damaged: Set<string>; quarantined: CorruptRecord[] } {
  const inner = memoryLevelStore()
  const damaged = new Set<string>() // entity ids (or 'leaves:<collection>')
  const quarantined: CorruptRecord[] = []
  const record = (collection: string, id: string, keyspace = 'deltas'): CorruptRecord => ({ keyspace, key: `${collection}\u0000${id}`, collection, id })
  const store = storeWith(inner, {
    async readEntity(collection: string, id: string) {
      if (damaged.has(id)) throw new StoreCorruptError(record(collection, id))
      return inner.readEntity(collection, id)
    },
    heads(collection: string, range?: { fromLeaf: number; toLeaf: number }) {
      return (async function* (): AsyncGenerator<[string, EntityHead]> {
        for await (const [id, head] of inner.heads(collection, range)) {
          if (slowScans) await sleep(5) // (so digest rebuilds, which scan the heads, overlap)
          if (damaged.has(`head:${id}`)) throw new StoreCorruptError(record(collection, id, 'heads'))
          yield [id, head]
        }
      })()
    },
    leaves(collection: string) {
      return (async function* (): AsyncGenerator<[number, Uint8Array]> {
        if (damaged.has(`leaves:${collection}`)) throw new StoreCorruptError({ keyspace: 'leaves', key: `${collection}\u00000001`, collection })
        yield* inner.leaves(collection)
      })()
    },
    async quarantine(r: CorruptRecord) {
      quarantined.push(r)
      if (r.keyspace === 'leaves') damaged.delete(`leaves:${r.collection}`)
      else if (r.keyspace === 'heads') damaged.delete(`head:${r.id}`)
      else damaged.delete(r.id!)
    },
  })
  return { store, damaged, quarantined }
}

describe('integrity: a damaged record', function () {
  this.timeout(30_000)
  let replicas: Replica[] = []
  afterEach(async () => {
    await Promise.all(replicas.map((r) => r.close()))
    replicas = []
  })

  it('is never served: the entity is dropped, reported by name, and fetched again from a peer', async () => {
    const hub = new LoopbackHub()
    const d = damageable()
    const logger = recordingLogger()
    const honest = await memoryReplica({ network: hub.createNetwork('honest') })
    const victim = await memoryReplica({ network: hub.createNetwork('victim'), store: d.store, logger, cacheSize: 1 })
    replicas.push(honest, victim)
    await honest.collection('p', { backend: 'yjs' }).put('k', { v: 1 })
    await honest.collection('p').put('other', { v: 2 })
    await waitFor(async () => (await victim.collection('p').get('k'))?.v === 1 && (await victim.collection('p').get('other'))?.v === 2, 'replicated')
    d.damaged.add('k') // the disk under 'k' goes bad ('other' pushes it out of the 1-entity cache)
    await waitFor(async () => {
      await victim.collection('p').get('other')
      return victim.stats().cachedEntities === 1 // (once their writes are durable, nothing pins them)
    }, "only 'other' in memory")
    const seen = await victim.collection('p').get('k')
    expect(seen === undefined || seen.v === 1).to.equal(true) // never damaged bytes
    expect(d.quarantined.map((r) => r.id)).to.deep.equal(['k'])
    expect(logger.lines.some((l) => l.fields?.code === 'ERR_STORE_CORRUPT' && l.fields?.entity === 'k')).to.equal(true)
    expect(victim.stats().store.corruptRecords).to.equal(1)
    await waitFor(async () => (await victim.collection('p').get('k'))?.v === 1, 'repaired from the peer', 5000)
    const [round] = await victim.sync()
    expect(round!.collectionsDiffering).to.equal(0)
  })

  it('is repaired from the sound copy in memory when there is one, with no peer', async () => {
    const d = damageable()
    const victim = await memoryReplica({ store: d.store, logger: recordingLogger() })
    replicas.push(victim)
    const col = victim.collection('p', { backend: 'automerge' })
    await col.put('k', { v: 1 })
    d.damaged.add('head:k') // found by a scan while 'k' is in the cache
    const keys: string[] = []
    for await (const id of col.keys()) keys.push(id)
    expect(keys).to.deep.equal(['k'])
    expect(d.quarantined.map((r) => r.keyspace)).to.deep.equal(['heads'])
    expect(await col.get('k')).to.deep.equal({ v: 1 })
    expect(victim.stats().store.corruptRecords).to.equal(1)
  })

  it('in several entities at once is repaired with one digest rebuild at a time, so the replica is in sync again', async () => {
    const hub = new LoopbackHub()
    const d = damageable(true)
    const honest = await memoryReplica({ network: hub.createNetwork('honest') })
    const victim = await memoryReplica({ network: hub.createNetwork('victim'), store: d.store, logger: recordingLogger(), cacheSize: 1 })
    replicas.push(honest, victim)
    const ids = ['k0', 'k1', 'other']
    await Promise.all(ids.map((id, i) => honest.collection('p', { backend: 'yjs' }).put(id, { i })))
    const all = async (): Promise<(Record<string, unknown> | undefined)[]> => Promise.all(ids.map(async (id) => victim.collection('p').get(id)))
    await waitFor(async () => (await all()).every((v) => v !== undefined), 'replicated')
    await waitFor(async () => {
      await victim.collection('p').get('other')
      return victim.stats().cachedEntities === 1
    }, "only 'other' in memory")
    d.damaged.add('k0')
    d.damaged.add('k1')
    await Promise.all([victim.collection('p').get('k0'), victim.collection('p').get('k1')]) // both damaged, both found at once
    expect(d.quarantined.map((r) => r.id).sort()).to.deep.equal(['k0', 'k1'])
    await waitFor(
      async () => {
        const [round] = await victim.sync()
        return round!.collectionsDiffering === 0 && (await all()).every((v, i) => v?.i === i)
      },
      'repaired from the peer, with digests equal again',
      10_000,
    )
  })

  it('in the digest does not make the entities under it read as absent before the rebuild', async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const ids = Array.from({ length: 20 }, (_, i) => `k${i}`)
      let a = await memoryReplica({ store: classicLevelStore(dir) })
      await Promise.all(ids.map((id, i) => a.collection('p', { backend: 'automerge' }).put(id, { i })))
      await a.close()
      const inner = classicLevelStore(dir)
      // The first leaf record read is damaged; once quarantined it is gone (moved aside).
      let damaged: number | undefined
      let lost: number | undefined
      const store = storeWith(inner, {
        leaves(collection: string) {
          return (async function* (): AsyncGenerator<[number, Uint8Array]> {
            for await (const [leaf, digest] of inner.leaves(collection)) {
              if (leaf === lost) continue
              if (lost === undefined && (damaged ??= leaf) === leaf) {
                throw new StoreCorruptError({ keyspace: 'leaves', key: `${collection}\u0000${leaf.toString(16).padStart(4, '0')}`, collection })
              }
              yield [leaf, digest]
            }
          })()
        },
        heads(collection: string, range?: { fromLeaf: number; toLeaf: number }) {
          return (async function* (): AsyncGenerator<[string, EntityHead]> {
            for await (const item of inner.heads(collection, range)) {
              await sleep(20) // a slow disk: the digest rebuild (a scan of the heads) is still running while the entities are read
              yield item
            }
          })()
        },
        async quarantine() {
          lost = damaged
        },
      })
      a = await memoryReplica({ store, logger: recordingLogger() })
      replicas.push(a)
      const col = a.collection('p')
      const values = await Promise.all(ids.map(async (id) => col.get(id)))
      expect(values.map((v) => v?.i)).to.deep.equal(ids.map((_, i) => i))
      await col.update('k0', (v) => void (v.j = 1)) // an update finds it too, and keeps its history
      expect(await col.get('k0')).to.deep.equal({ i: 0, j: 1 })
    } finally {
      await cleanup()
    }
  })

  it('in the digest is rebuilt from the heads, so the replica is in sync again', async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const hub = new LoopbackHub()
      const b = await memoryReplica({ network: hub.createNetwork('b'), syncOnConnect: false })
      replicas.push(b)
      let a = await memoryReplica({ network: hub.createNetwork('a'), store: classicLevelStore(dir), syncOnConnect: false })
      await waitFor(() => a.peers().includes('b'), 'connected')
      await Promise.all(Array.from({ length: 20 }, (_, i) => a.collection('p', { backend: 'yjs' }).put(`k${i}`, { i })))
      await a.sync()
      await a.close()
      // After a restart, one stored leaf fails its check: it is moved aside (gone from what
      // the store serves), so the digest as loaded lacks it, and must be rebuilt from the heads.
      const inner = classicLevelStore(dir)
      let damagedKey: string | undefined
      const quarantined: CorruptRecord[] = []
      const store = storeWith(inner, {
        leaves(collection: string) {
          return (async function* (): AsyncGenerator<[number, Uint8Array]> {
            for await (const [leaf, digest] of inner.leaves(collection)) {
              const key = `${collection}\u0000${leaf.toString(16).padStart(4, '0')}`
              damagedKey ??= key
              if (key === damagedKey && quarantined.length > 0) continue
              if (key === damagedKey) throw new StoreCorruptError({ keyspace: 'leaves', key, collection })
              yield [leaf, digest]
            }
          })()
        },
        async quarantine(r: CorruptRecord) {
          quarantined.push(r)
        },
      })
      a = await memoryReplica({ network: hub.createNetwork('a'), store, logger: recordingLogger(), syncOnConnect: false })
      replicas.push(a)
      await waitFor(() => b.peers().includes('a'), 'reconnected')
      await waitFor(async () => {
        const [round] = await b.sync()
        return round!.collectionsDiffering === 0
      }, 'in sync after the rebuild')
      expect(quarantined.map((r) => r.keyspace)).to.deep.equal(['leaves'])
      expect(a.stats().store.corruptRecords).to.equal(1)
    } finally {
      await cleanup()
    }
  })
})
