/**
 * Store.headCollections: the collections holding entity heads, for core to bring back one whose
 * meta record a damaged disk lost. Only heads that pass their check count: a head moved under a
 * key naming another collection makes no collection up.
 */
import assert from 'node:assert/strict'
import { MemoryLevel } from 'memory-level'
import { LevelStore, memoryLevelStore } from '../src/index.js'
import { entityWrite } from './entity-ops.js'

type Mem = MemoryLevel<string, Uint8Array>

describe('LevelStore.headCollections', function () {
  it('lists the collections with a sound head and their backend, but those skipped; a head moved under another collection name, or a key with no collection part, makes none up', async function () {
    const store = memoryLevelStore()
    await store.open()
    await store.write([{ type: 'collection', collection: 'a', meta: { backend: 'yjs' } }, ...entityWrite('a', 1)])
    await store.write([{ type: 'collection', collection: 'b', meta: { backend: 'yjs' } }, ...entityWrite('b', 1), ...entityWrite('b', 2)])
    await store.write([
      { type: 'head', collection: 'c', id: 'x', head: { backend: 'automerge', versionHash: new Uint8Array(32), deltaCount: 0, deleted: false } },
    ])
    await store.close()
    const db = store.db as unknown as Mem
    await db.open()
    const heads = (await db.iterator({ gte: '!heads!', lt: '!heads"' }).all()).map(([k, v]) => [k, new Uint8Array(v)] as const)
    const [key, value] = heads.find(([k]) => k.startsWith('!heads!a\u0000'))!
    // a's only head moved under 'a2' (its key no longer what it was sealed under), and a stray key.
    await db.batch([
      { type: 'del', key },
      { type: 'put', key: key.replace('!heads!a\u0000', '!heads!a2\u0000'), value },
      { type: 'put', key: '!heads!stray', value },
    ])
    await db.close()
    const reopened = new LevelStore(db)
    await reopened.open()
    try {
      assert.deepEqual(
        [...(await reopened.headCollections(new Set()))],
        [
          ['b', { backend: 'yjs' }],
          ['c', { backend: 'automerge' }],
        ],
      )
      assert.deepEqual([...(await reopened.headCollections(new Set(['b'])))], [['c', { backend: 'automerge' }]])
    } finally {
      await reopened.close()
    }
  })
})
