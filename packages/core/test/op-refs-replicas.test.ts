/**
 * A writer's hand-made Automerge change that names ops outside its own past (automerge/src/op-refs.ts),
 * sent to replicas of an ordinary collection: refused and counted as invalidDelta by each, the
 * honest writes before and after it converge everywhere (before the check, the first change
 * made SUPPORT never take ADMIN's next change; the second deleted a value elsewhere).
 */
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { LoopbackHub, type PolicyDocument } from '../src/index.js'
import { waitFor } from '../src/testing/index.js'
import { ALL, counterSuite, crafted, opIdAt, ordersFrom, ordersReplica, reloadEntity, savedDoc, syncAll, type State } from './counter-helpers.js'
import { ADMIN, ORDERS, SUPPORT } from './trust-helpers.js'
import { closedAfterEach } from './helpers.js'

const POLICY: PolicyDocument = {
  roles: { admin: [ADMIN], orders: [ORDERS], support: [SUPPORT] },
  collections: { orders: { read: ['*'], write: ['admin', 'orders', 'support'] } },
}

describe('replicas refuse an Automerge change naming ops outside its past (op-refs)', function () {
  this.timeout(120_000)
  const { cluster } = counterSuite(POLICY)
  const opened = closedAfterEach()

  it("a delete naming ADMIN's next op, and one naming a value at another key: refused by every receiver as invalidDelta; ADMIN's next write reaches everyone", async () => {
    const { r } = await cluster()
    await r[ADMIN]!.collection<State>('orders', { backend: 'automerge' }).put('o1', { status: 'new', total: 10 })
    for (const n of ALL) await waitFor(async () => (await r[n]!.collection<State>('orders', { backend: 'automerge' }).get('o1')) !== undefined, `${n} holds o1`)
    const saved = await savedDoc(r[ORDERS]!, 'orders', 'o1')
    const ops = A.decodeChange(A.getAllChanges(A.load<State>(saved)).at(-1)!)
    // ADMIN's next change starts past every op the document holds: its first op id is predictable.
    const maxOp = A.getAllChanges(A.load<State>(saved))
      .map((c) => A.decodeChange(c))
      .reduce((max, c) => Math.max(max, c.startOp + c.ops.length - 1), 0)
    const future = `${maxOp + 1}@${ops.actor}`
    const changes = [
      crafted(saved, '07'.repeat(16), [{ action: 'del', obj: '_root', key: 'status', pred: [opIdAt(saved, 'status'), future] }]),
      crafted(saved, '08'.repeat(16), [{ action: 'del', obj: '_root', key: 'status', pred: [opIdAt(saved, 'status'), opIdAt(saved, 'total')] }]),
    ]
    const results: string[] = []
    for (const change of changes) {
      for (const n of [ADMIN, SUPPORT]) results.push(await ordersFrom(r[n]!, 'o1')(ORDERS, change))
    }
    expect(results).to.deep.equal(['invalidDelta', 'invalidDelta', 'invalidDelta', 'invalidDelta'])
    await r[ADMIN]!.collection<State>('orders', { backend: 'automerge' }).update('o1', (o) => void (o['status'] = 'paid'))
    await syncAll(r, 2)
    for (const n of ALL) {
      await waitFor(async () => (await r[n]!.collection<State>('orders', { backend: 'automerge' }).get('o1'))?.['status'] === 'paid', `${n} sees paid`)
    }
    const seen = await Promise.all(ALL.map((n) => r[n]!.collection<State>('orders', { backend: 'automerge' }).get('o1')))
    expect(seen).to.deep.equal(ALL.map(() => ({ status: 'paid', total: 10 })))
    for (const n of [ADMIN, SUPPORT]) expect(r[n]!.stats().peers[ORDERS]?.dropped.invalidDelta, n).to.equal(2)
  })

  it('development mode: a bad change stored waiting for one not here yet does not make that honest change refused when it comes, and is gone from the store after it', async () => {
    const hub = new LoopbackHub()
    const { replica, orders } = await ordersReplica(opened, hub, 'victim')
    await orders.put('o2', { status: 'new' })
    const saved = await savedDoc(replica, 'orders', 'o2')
    // A peer's honest D (not sent yet), and a bad X on it that names an op that never exists.
    const dDoc = A.change(A.load<State>(saved, { actor: '09'.repeat(16) }), { time: 0 }, (d) => void (d['note'] = 'd'))
    const d = A.getLastLocalChange(dDoc)!
    const x = crafted(A.save(dDoc), '09'.repeat(16), [
      { action: 'del', obj: '_root', key: 'status', pred: [opIdAt(saved, 'status'), `500@${'09'.repeat(16)}`] },
    ])
    const from = ordersFrom(replica, 'o2')
    const at = (delta: Uint8Array) => from('peer', delta)
    // X waits (stored, unjudged); D is taken — before, D was refused with X on every delivery.
    expect([await at(x), await at(d), await at(d)]).to.deep.equal(['applied', 'applied', 'duplicate'])
    expect(await orders.get('o2')).to.deep.equal({ status: 'new', note: 'd' })
    // Loaded again from the store: X is not there to come back.
    await reloadEntity(replica, 'orders', 'o2')
    expect(await orders.get('o2')).to.deep.equal({ status: 'new', note: 'd' })
    expect(await at(x)).to.equal('invalidDelta')
  })
})
