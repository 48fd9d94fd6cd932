import { expect } from 'chai'
import type { EntityHead, Store, StoreOp } from '@convergent/core'
import { memoryLevelStore } from '@convergent/level'
import { Activity } from '../src/engine/activity.js'
import { Scheduler } from '../src/engine/scheduler.js'
import { CrashableStore } from '../src/nodes/crashable-store.js'
import { MapStore } from '../src/nodes/map-store.js'
import { SimStore } from '../src/nodes/sim-store.js'

const COLLECTION = 'c'

function head(): EntityHead {
  return { backend: 'yjs', versionHash: new Uint8Array(32).fill(7), deltaCount: 0, deleted: false }
}

/** Two of everything the iterators list: heads, leaves, feed entries. */
const SEED: StoreOp[] = [
  { type: 'collection', collection: COLLECTION, meta: { backend: 'yjs' } },
  { type: 'meta', key: 'k', bytes: Uint8Array.of(1) },
  { type: 'head', collection: COLLECTION, id: 'e0', head: head() },
  { type: 'head', collection: COLLECTION, id: 'e1', head: head() },
  { type: 'leaf', collection: COLLECTION, leaf: 1, bytes: Uint8Array.of(1, 2) },
  { type: 'leaf', collection: COLLECTION, leaf: 2, bytes: Uint8Array.of(3, 4) },
  { type: 'feed', collection: COLLECTION, entry: { seq: 1, id: 'e0', origin: 'local', time: 1, kind: 'put' } },
  { type: 'feed', collection: COLLECTION, entry: { seq: 2, id: 'e1', origin: 'local', time: 2, kind: 'put' } },
]

/** How a promise stands after a few turns of the event loop (memory-level answers within one or two). */
async function outcome(p: Promise<unknown>): Promise<'resolved' | 'rejected' | 'pending'> {
  let state: 'resolved' | 'rejected' | 'pending' = 'pending'
  p.then(
    () => (state = 'resolved'),
    () => (state = 'rejected'),
  )
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r))
  return state
}

interface Mode {
  name: string
  /** A durable store holding SEED, and a new incarnation's view over it. */
  setup(): Promise<{ inner: Store; view(): CrashableStore; activity?: Activity }>
}

const modes: Mode[] = [
  {
    // What live mode does: a plain CrashableStore over memory-level, no scheduler anywhere.
    name: 'CrashableStore (live mode) over memory-level',
    async setup() {
      const inner = memoryLevelStore()
      await inner.open()
      await inner.write(SEED)
      return { inner, view: () => new CrashableStore(inner) }
    },
  },
  {
    name: 'SimStore (simulated mode) over MapStore',
    async setup() {
      const inner = new MapStore()
      await inner.open()
      await inner.write(SEED)
      const activity = new Activity()
      const scheduler = new Scheduler(activity)
      return { inner, activity, view: () => new SimStore(inner, activity, scheduler, 0) }
    },
  },
]

type Lister = (s: Store) => AsyncIterable<unknown>
const listers: [string, Lister][] = [
  ['heads', (s) => s.heads(COLLECTION)],
  ['leaves', (s) => s.leaves(COLLECTION)],
  ['feed', (s) => s.feed(COLLECTION, 0)],
]

for (const mode of modes) {
  describe(`sim: ${mode.name} after a crash`, function () {
    for (const [name, list] of listers) {
      it(`${name}(): an iterator opened before the crash answers nothing after it, next() nor return()`, async function () {
        const { inner, view, activity } = await mode.setup()
        const store = view()
        await store.open()
        const it = list(store)[Symbol.asyncIterator]()
        const first = await it.next()
        expect(first.done).to.equal(false)
        store.crash()
        expect(store.crashed).to.equal(true)
        expect(await outcome(it.next())).to.equal('pending')
        expect(await outcome(it.return!())).to.equal('pending')
        // Nothing that never settles is tracked: the scheduler's drain would never end.
        if (activity !== undefined) expect(activity.pending).to.equal(0)
        await inner.close()
      })

      it(`${name}(): an iterator opened after the crash answers nothing`, async function () {
        const { inner, view, activity } = await mode.setup()
        const store = view()
        await store.open()
        store.crash()
        const it = list(store)[Symbol.asyncIterator]()
        expect(await outcome(it.next())).to.equal('pending')
        expect(await outcome(it.return!())).to.equal('pending')
        if (activity !== undefined) expect(activity.pending).to.equal(0)
        await inner.close()
      })

      it(`${name}(): before the crash it lists what the store holds`, async function () {
        const { inner, view } = await mode.setup()
        const store = view()
        await store.open()
        const rows: unknown[] = []
        for await (const row of list(store)) rows.push(row)
        expect(rows).to.have.length(2)
        await inner.close()
      })
    }

    it('every other call answers nothing after the crash, and the underlying store stays open for the next incarnation', async function () {
      const { inner, view, activity } = await mode.setup()
      const store = view()
      await store.open()
      store.crash()
      const calls: [string, () => Promise<unknown>][] = [
        ['open', () => store.open()],
        ['close', () => store.close()],
        ['write', () => store.write([{ type: 'meta', key: 'lost', bytes: Uint8Array.of(9) }])],
        ['readEntity', () => store.readEntity(COLLECTION, 'e0')],
        ['getHead', () => store.getHead(COLLECTION, 'e0')],
        ['lastSeq', () => store.lastSeq(COLLECTION)],
        ['collections', () => store.collections()],
        ['getMeta', () => store.getMeta('k')],
        ['dropCollection', () => store.dropCollection(COLLECTION)],
        ['quarantine', () => store.quarantine({ keyspace: 'heads', key: 'x', collection: COLLECTION, id: 'e0' })],
      ]
      for (const [name, call] of calls) expect(await outcome(call()), name).to.equal('pending')
      if (activity !== undefined) expect(activity.pending).to.equal(0)
      // The next incarnation's view sees the durable data, and not what the dead one tried to do.
      const next = view()
      await next.open()
      expect(await next.getMeta('lost')).to.equal(undefined)
      expect(await next.lastSeq(COLLECTION)).to.equal(2)
      expect((await next.collections()).has(COLLECTION)).to.equal(true)
      await next.close()
      await inner.close()
    })
  })
}

/** An open SimStore over an empty MapStore, with writes durable `ms` of virtual time after write(). */
async function simStoreWithLatency(ms: number): Promise<{ inner: MapStore; scheduler: Scheduler; store: SimStore }> {
  const inner = new MapStore()
  await inner.open()
  const activity = new Activity()
  const scheduler = new Scheduler(activity)
  const store = new SimStore(inner, activity, scheduler, ms)
  await store.open()
  return { inner, scheduler, store }
}

describe('sim: SimStore write latency and crashes', function () {
  it('a write still queued when the node crashes is lost and never acknowledged', async function () {
    const { inner, scheduler, store } = await simStoreWithLatency(50)
    let acked = false
    void store.write([{ type: 'meta', key: 'k', bytes: Uint8Array.of(1) }]).then(() => (acked = true))
    expect(store.unflushed).to.equal(1)
    await scheduler.runUntil(20)
    store.crash()
    expect(store.unflushed).to.equal(0)
    await scheduler.runUntil(200)
    expect(acked).to.equal(false)
    expect(await inner.getMeta('k')).to.equal(undefined)
  })

  it('close() waits for queued writes on their virtual schedule', async function () {
    const { inner, scheduler, store } = await simStoreWithLatency(50)
    void store.write([{ type: 'meta', key: 'k', bytes: Uint8Array.of(1) }])
    let closed = false
    void store.close().then(() => (closed = true))
    await scheduler.runUntil(40)
    expect(closed).to.equal(false)
    await scheduler.runUntil(200)
    expect(closed).to.equal(true)
    expect(await inner.getMeta('k')).to.deep.equal(Uint8Array.of(1))
    expect(store.kind).to.equal('sim(map)')
  })
})
