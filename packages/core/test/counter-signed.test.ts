/**
 * Counters in a cluster (issue #13, item 5): every row is signed by its holder, so a writer of
 * the counter — here ORDERS, writing the counter's collection directly with its own code —
 * cannot take another holder's rights, undo its decrements or change min, on any replica.
 */
import { expect } from 'chai'
import { classicLevelStore } from '@convergent/level'
import { automergeBackend } from '@convergent/automerge'
import { yjsBackend } from '@convergent/yjs'
import { LoopbackHub, Replica } from '../src/index.js'
import { rowKey } from '../src/counter-rows.js'
import { silentLogger } from '../src/logger.js'
import { asForger, putRow, rowKeyIn, rowNames } from '../src/testing/index.js'
import { tempDir, waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustCluster, trustSuite } from './trust-helpers.js'
import { counterSuite, STOCK_POLICY as POLICY, syncAll, type State } from './counter-helpers.js'

describe('Counters in a cluster: signed rows', function () {
  this.timeout(60_000)
  const { keys, replicas, setUp, row } = counterSuite()

  /** What every replica shows: value and the rights of ADMIN and ORDERS. */
  async function shown(r: Record<string, Replica>, id = 's1'): Promise<{ value: number; admin: number; orders: number }[]> {
    const out = []
    for (const name of [ADMIN, ORDERS, SUPPORT]) {
      const c = r[name]!.counter('stock')
      out.push({ value: await c.value(id), admin: await c.rights(id, ADMIN), orders: await c.rights(id, ORDERS) })
    }
    return out
  }

  it('rows are signed, one key per holder; the unsigned layout a forger writes counts for nothing', async () => {
    const { r } = await setUp()
    const state = (await r[ADMIN]!.collection<State>('stock').get('s1'))!
    expect(rowNames(state)).to.deep.equal([`${ADMIN}|1`])
    // ORDERS writes the development-mode keys that would give it ADMIN's 100 rights.
    await r[ORDERS]!.collection<State>('stock').update('s1', (s) => {
      s[`p|${ADMIN}|${ORDERS}`] = 100
      s[`p|${ORDERS}|${ORDERS}`] = 1000
    })
    await syncAll(r)
    expect(await shown(r)).to.deep.equal(Array(3).fill({ value: 100, admin: 100, orders: 0 }))
    await expectSpend(r[ORDERS]!, 1, 'ERR_INSUFFICIENT_RIGHTS')
  })

  it("a row under another holder's name, signed by the forger, is refused whole by every receiver; the forger alone counts its own row", async () => {
    const { r } = await setUp()
    await r[ORDERS]!.collection<State>('stock').update('s1', (s) => {
      putRow(s, ADMIN, 2, row(ORDERS, ADMIN, 's1', { version: 2, inc: 100, out: { [ORDERS]: 100 } }))
      putRow(s, ORDERS, 1, row(ORDERS, ORDERS, 's1', { version: 1, inc: 5 })) // its own, genuine: but the change is refused whole
    })
    await syncAll(r)
    expect(await shown(r)).to.deep.equal([
      { value: 100, admin: 100, orders: 0 },
      { value: 105, admin: 100, orders: 5 },
      { value: 100, admin: 100, orders: 0 },
    ])
    for (const n of [ADMIN, SUPPORT]) expect(r[n]!.stats().peers[ORDERS]!.dropped.forbidden, n).to.be.above(0)
    await r[ADMIN]!.counter('stock').decrement('s1', 1)
    await syncAll(r)
    expect(rowNames(await r[SUPPORT]!.collection<State>('stock').get('s1'))).to.deep.equal([`${ADMIN}|2`])
    expect((await shown(r))[2]).to.deep.equal({ value: 99, admin: 99, orders: 0 })
  })

  it("taking a holder's row back (delete, or overwrite its key) is refused by every receiver and counted against the writer", async () => {
    const { r } = await setUp()
    const forbiddenBefore = [ADMIN, SUPPORT].map((n) => r[n]!.stats().peers[ORDERS]?.dropped.forbidden ?? 0)
    await r[ORDERS]!.collection<State>('stock').update('s1', (s) => void delete s[rowKeyIn(s, ADMIN, 1)])
    await syncAll(r)
    for (const n of [ADMIN, SUPPORT]) expect(await r[n]!.counter('stock').value('s1'), n).to.equal(100)
    for (const [i, n] of [ADMIN, SUPPORT].entries()) expect(r[n]!.stats().peers[ORDERS]!.dropped.forbidden, n).to.be.above(forbiddenBefore[i]!)
    // Overwriting the key with garbage, on another id (ADMIN's row there is fresh too).
    await r[ADMIN]!.counter('stock').increment('s2', 10)
    await waitFor(async () => (await r[ORDERS]!.counter('stock').value('s2')) === 10, 's2 arrives')
    await r[ORDERS]!.collection<State>('stock').update('s2', (s) => void (s[rowKeyIn(s, ADMIN, 1)] = 'garbage.AAAA'))
    await syncAll(r)
    for (const n of [ADMIN, SUPPORT]) expect(await r[n]!.counter('stock').value('s2'), n).to.equal(10)
    // The forger's other writes still arrive: a new id it increments reaches everyone.
    await r[ORDERS]!.counter('stock').increment('s3', 7)
    for (const n of [ADMIN, SUPPORT]) await waitFor(async () => (await r[n]!.counter('stock').value('s3')) === 7, `s3 reaches ${n}`)
  })

  it('a genuine row moved to another id, or replayed after a newer one, does not count; a forged min changes nothing', async () => {
    const { r } = await setUp()
    const state1 = (await r[ADMIN]!.collection<State>('stock').get('s1'))!
    const v1 = state1[rowKeyIn(state1, ADMIN, 1)] as string
    await r[ADMIN]!.counter('stock').decrement('s1', 40) // ADMIN's row 2: 60 left
    await waitFor(async () => (await r[ORDERS]!.counter('stock').value('s1')) === 60, 'decrement arrives')
    await r[ORDERS]!.collection<State>('stock').update('s1', (s) => {
      putRow(s, ADMIN, 1, v1) // the decrement undone, if replays counted
      s.min = -1000
    })
    await r[ORDERS]!.collection<State>('stock').put('s9', { [rowKey(ADMIN, 1, v1)]: v1 }) // ADMIN's 100 on another id
    await syncAll(r)
    expect(await shown(r)).to.deep.equal(Array(3).fill({ value: 60, admin: 60, orders: 0 }))
    expect(await shown(r, 's9')).to.deep.equal(Array(3).fill({ value: 0, admin: 0, orders: 0 }))
    // ADMIN keeps writing: a forged min does not make its counter refuse (only signed rows carry min).
    expect(await r[ADMIN]!.counter('stock').decrement('s1', 60)).to.equal(0)
  })

  it('concurrent writes of one id on one replica share rows: one signature per batch, each operation checked against the rights left', async () => {
    const { r } = await setUp()
    const stock = r[ADMIN]!.counter('stock')
    const signsBefore = keys.signs
    const results = await Promise.allSettled(Array.from({ length: 150 }, () => stock.decrement('s1', 1)))
    const sold = results.filter((x) => x.status === 'fulfilled').length
    const refused = results.filter((x) => x.status === 'rejected').map((x) => (x.reason as { code?: string }).code)
    expect({ sold, refused: [...new Set(refused)] }).to.deep.equal({ sold: 100, refused: ['ERR_INSUFFICIENT_RIGHTS'] })
    // 150 operations, a handful of rows (and pushes): not one signature each.
    expect(keys.signs - signsBefore, 'signatures made').to.be.below(20)
    await syncAll(r)
    expect(await shown(r)).to.deep.equal(Array(3).fill({ value: 0, admin: 0, orders: 0 }))
  })

  it('a live push of one change is judged without a copy of the document (a copy costs what the history holds); a forged one is still refused', async () => {
    // SUPPORT's Automerge backend counts the copies the guard makes.
    let copies = 0
    const counting = Object.create(automergeBackend()) as ReturnType<typeof automergeBackend>
    counting.clone = function (doc) {
      copies++
      return Object.getPrototypeOf(counting).clone.call(this, doc)
    }
    const { r } = await trustCluster(keys, [ADMIN, ORDERS, SUPPORT], replicas, {
      options: (id) => (id === SUPPORT ? { backends: [yjsBackend(), counting] } : {}),
    })
    asForger(r[ORDERS]!)
    await r[ADMIN]!.policy.set(POLICY)
    await waitFor(() => r[ORDERS]!.policy.get() !== undefined && r[SUPPORT]!.policy.get() !== undefined, 'adopted')
    await r[ADMIN]!.counter('stock').increment('s1', 100)
    for (const n of [ORDERS, SUPPORT]) await waitFor(async () => (await r[n]!.counter('stock').value('s1')) === 100, `${n} sees 100`)
    copies = 0
    for (let k = 1; k <= 5; k++) {
      await r[ADMIN]!.counter('stock').decrement('s1', 1)
      await waitFor(async () => (await r[SUPPORT]!.counter('stock').value('s1')) === 100 - k, `SUPPORT sees sale ${k}`)
    }
    expect(copies, 'copies made for 5 sales').to.equal(0)
    // A forged change on top of the document: a row under ADMIN's name, signed by ORDERS.
    await waitFor(async () => (await r[ORDERS]!.counter('stock').value('s1')) === 95, 'ORDERS sees 95')
    const forbidden = r[SUPPORT]!.stats().peers[ORDERS]?.dropped.forbidden ?? 0
    await r[ORDERS]!.collection<State>('stock').update('s1', (s) => {
      putRow(s, ADMIN, 7, row(ORDERS, ADMIN, 's1', { version: 7, inc: 100, out: { [ORDERS]: 100 } }))
    })
    await waitFor(() => (r[SUPPORT]!.stats().peers[ORDERS]?.dropped.forbidden ?? 0) > forbidden, 'SUPPORT refuses the forged change')
    expect(await r[SUPPORT]!.counter('stock').value('s1')).to.equal(95)
    expect(await r[SUPPORT]!.counter('stock').rights('s1', ORDERS)).to.equal(0)
    // Honest sales still arrive after it.
    await r[ADMIN]!.counter('stock').decrement('s1', 1)
    await waitFor(async () => (await r[SUPPORT]!.counter('stock').value('s1')) === 94, 'SUPPORT sees the next sale')
  })

  it('after a restart the guard holds before the application opens its counter again', async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const hub = new LoopbackHub()
      const opts = { backends: [yjsBackend(), automergeBackend()], syncIntervalMs: 0, logger: silentLogger }
      const openAdmin = () => Replica.open({ ...opts, store: classicLevelStore(dir), network: hub.createNetwork(ADMIN), trust: keys.trust(ADMIN, [ADMIN]) })
      let admin = await openAdmin()
      const orders = asForger(
        await Replica.open({
          ...opts,
          store: classicLevelStore(`${dir}-orders`),
          network: hub.createNetwork(ORDERS),
          trust: keys.trust(ORDERS, [ADMIN]),
        }),
      )
      replicas.push(orders)
      await admin.policy.set(POLICY)
      await waitFor(() => orders.policy.get() !== undefined, 'adopted')
      await admin.counter('stock').increment('s1', 100)
      await waitFor(async () => (await orders.counter('stock').value('s1')) === 100, 'orders sees 100')
      await admin.close()
      await orders.collection<State>('stock').update('s1', (s) => void delete s[rowKeyIn(s, ADMIN, 1)])
      admin = await openAdmin()
      replicas.push(admin)
      await admin.sync()
      expect(await admin.counter('stock').value('s1')).to.equal(100)
      expect(admin.stats().peers[ORDERS]!.dropped.forbidden).to.be.above(0)
    } finally {
      await cleanup()
      const { rm } = await import('node:fs/promises')
      await rm(`${dir}-orders`, { recursive: true, force: true })
    }
  })
})

async function expectSpend(replica: Replica, n: number, code: string): Promise<void> {
  try {
    await replica.counter('stock').decrement('s1', n)
  } catch (err) {
    expect((err as { code?: string }).code).to.equal(code)
    return
  }
  expect.fail(`decrement of ${n} succeeded`)
}

describe('Counters in a cluster: the row guard leaves ordinary Automerge entities alone', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  it('new and changed entities of an Automerge collection, with keys like min or p|x, replicate by gossip and anti-entropy', async () => {
    const { r } = await trustCluster(keys, [ADMIN, ORDERS], replicas)
    const docs = r[ADMIN]!.collection<State>('docs', { backend: 'automerge' })
    for (let i = 0; i < 20; i++) await docs.put(`d${i}`, { min: i, 'p|x': `v${i}`, title: `t${i}` })
    await docs.update('d0', (d) => void (d.title = 'changed'))
    await r[ORDERS]!.sync()
    for (let i = 0; i < 20; i++) {
      const got = await r[ORDERS]!.collection<State>('docs', { backend: 'automerge' }).get(`d${i}`)
      expect(got, `d${i}`).to.deep.equal({ min: i, 'p|x': `v${i}`, title: i === 0 ? 'changed' : `t${i}` })
    }
    expect(r[ORDERS]!.stats().droppedTotal).to.equal(0)
  })
})

describe('The policy declares counter collections (CollectionRule.counter)', () => {
  it('keeps counter: true, drops false, and refuses anything else', async () => {
    const { normalizePolicy } = await import('../src/trust/policy.js')
    const doc = (counter: unknown) => ({ roles: { w: ['x'] }, collections: { stock: { read: ['w'], write: ['w'], counter } } })
    expect(normalizePolicy(doc(true)).collections.stock).to.deep.equal({ read: ['w'], write: ['w'], counter: true })
    expect(normalizePolicy(doc(false)).collections.stock).to.deep.equal({ read: ['w'], write: ['w'] })
    expect(() => normalizePolicy(doc('yes'))).to.throw(/counter flag/)
  })
})
