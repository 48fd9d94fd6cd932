// What a Collection promises its caller: read APIs that agree, writes that close() lets
// finish, values kept exactly (a "__proto__" field, large arrays of numbers), clear errors.
import { expect } from 'chai'
import { LoopbackHub, Replica, silentLogger, type Store, type StoreOp } from '../src/index.js'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { classicLevelStore, memoryLevelStore } from '@convergent/level'
import { BACKENDS, memoryReplica, storeWith, tempDir, waitFor } from './helpers.js'

/** A store whose writes wait until `release()` (what a slow disk does to a replica). */
function gated(): { store: Store; release: () => void; hold: () => void } {
  const inner = memoryLevelStore()
  let gate: Promise<void> | undefined
  let open = (): void => {}
  const store = storeWith(inner, {
    async write(ops: StoreOp[]) {
      if (gate !== undefined) await gate
      return inner.write(ops)
    },
  })
  return {
    store,
    hold: () => {
      gate = new Promise<void>((r) => (open = r))
    },
    release: () => {
      gate = undefined
      open()
    },
  }
}

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

describe('collection: read APIs, close, values', function () {
  this.timeout(30_000)
  let replicas: Replica[] = []
  afterEach(async () => {
    await Promise.all(replicas.map((r) => r.close().catch(() => undefined)))
    replicas = []
  })

  for (const backend of BACKENDS) {
    it(`${backend}: keys(), entries() and get() agree while remote changes are still being written`, async () => {
      const hub = new LoopbackHub()
      const g = gated()
      const a = await memoryReplica({ network: hub.createNetwork('a') })
      const b = await memoryReplica({ network: hub.createNetwork('b'), store: g.store })
      replicas.push(a, b)
      await a.collection('p', { backend }).put('old', { v: 0 })
      await a.collection('p').put('gone', { v: 0 })
      await waitFor(async () => (await b.collection('p').get('gone')) !== undefined, 'b has the first entities')
      g.hold() // b's disk stalls: what arrives now is applied in memory, not yet durable
      await a.collection('p').delete('gone')
      await Promise.all(Array.from({ length: 50 }, (_, i) => a.collection('p').put(`e${i}`, { i })))
      const col = b.collection('p')
      await waitFor(async () => (await col.get('e49')) !== undefined && (await col.get('gone')) === undefined, 'b applied them in memory')
      const keys = (await all(col.keys())).sort()
      const entries = (await all(col.entries())).map(([id]) => id).sort()
      const viaGet: string[] = []
      for (const id of ['old', 'gone', ...Array.from({ length: 50 }, (_, i) => `e${i}`)]) if ((await col.get(id)) !== undefined) viaGet.push(id)
      expect(keys).to.deep.equal(viaGet.sort())
      expect(entries).to.deep.equal(keys)
      expect(keys.length).to.equal(51)
      g.release()
    })
  }

  it('close() lets writes called before it finish, and refuses those called after', async () => {
    const r = await memoryReplica()
    const col = r.collection('p')
    const writes = [col.put('a', { v: 1 }), col.update('b', () => ({ v: 2 }), { upsert: true }), col.delete('a')]
    const closing = r.close()
    const outcomes = await Promise.allSettled(writes)
    expect(outcomes.map((o) => o.status)).to.deep.equal(['fulfilled', 'fulfilled', 'fulfilled'])
    await closing
    const late = await col.put('c', { v: 3 }).then(
      () => undefined,
      (e: { code?: string }) => e.code,
    )
    expect(late).to.equal('ERR_CLOSED')
  })

  it('close() keeps what writes called before it wrote (reopened from the same folder)', async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const r = await Replica.open({ store: classicLevelStore(dir), backends: [yjsBackend()], logger: silentLogger })
      const put = r.collection('p').put('a', { v: 1 })
      await r.close()
      await put
      const again = await Replica.open({ store: classicLevelStore(dir), backends: [yjsBackend()], logger: silentLogger })
      replicas.push(again)
      expect(await again.collection('p').get('a')).to.deep.equal({ v: 1 })
    } finally {
      await cleanup()
    }
  })

  for (const backend of BACKENDS) {
    it(`${backend}: keeps a "__proto__" field as data or refuses it with a code — never drops it silently`, async () => {
      const r = await memoryReplica()
      replicas.push(r)
      const col = r.collection<Record<string, unknown>>('p', { backend })
      const value = JSON.parse('{"__proto__": {"x": 1}, "y": 2}') as Record<string, unknown>
      const outcome = await col.put('k', value).then(
        () => 'stored',
        (e: { code?: string }) => e.code,
      )
      if (outcome === 'stored') {
        const read = await col.get('k')
        expect(Object.prototype.hasOwnProperty.call(read, '__proto__')).to.equal(true)
        expect(JSON.stringify(read)).to.equal('{"__proto__":{"x":1},"y":2}')
        await col.update('k', (d) => void (d.z = 3))
        expect(Object.keys((await col.get('k'))!).sort()).to.deep.equal(['__proto__', 'y', 'z'])
      } else {
        expect(outcome).to.equal('ERR_INVALID_VALUE')
      }
    })
  }

  it('refuses an update callback that returns null with ERR_INVALID_VALUE', async () => {
    const r = await memoryReplica()
    replicas.push(r)
    const col = r.collection('p')
    await col.put('k', { v: 1 })
    const code = await col
      .update('k', () => null as unknown as { v: number })
      .then(
        () => undefined,
        (e: { code?: string }) => e.code,
      )
    expect(code).to.equal('ERR_INVALID_VALUE')
    expect(await col.get('k')).to.deep.equal({ v: 1 })
  })

  it('charges numbers at their JSON length: 120,000 small numbers (~300 KB of JSON) fit the 1 MiB limit', async () => {
    const r = await Replica.open({ store: memoryLevelStore(), backends: [yjsBackend(), automergeBackend()], logger: silentLogger })
    replicas.push(r)
    const numbers = Array.from({ length: 120_000 }, (_, i) => i % 100)
    await r.collection('p').put('k', { numbers })
    expect(((await r.collection('p').get('k')) as { numbers: number[] }).numbers.length).to.equal(120_000)
  })
})
