// Third review of op-refs, replica level: the rebuild without the queue (Backend.rebuilt, stored
// whole by core). "HOLE n" failed then and states what must hold (fixed: only the refused queued
// changes are dropped, automerge/src/backend.ts rebuildWithout); "probe" held.
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { LoopbackHub } from '../src/index.js'
import { crafted, opIdAt, ordersFrom, ordersReplica, reloadEntity, savedDoc, type State } from './counter-helpers.js'
import { closedAfterEach } from './helpers.js'

const HOSTILE = 'ff'.repeat(16)

/** HOSTILE's D on `saved` (held back) and a bad X on D (a delete naming an op that never exists). */
function trigger(saved: Uint8Array): { d: Uint8Array; x: Uint8Array } {
  const dDoc = A.change(A.load<State>(saved, { actor: HOSTILE }), { time: 0 }, (d) => void (d['q'] = 1))
  const d = A.getLastLocalChange(dDoc)!
  const x = crafted(A.save(dDoc), HOSTILE, [{ action: 'del', obj: '_root', key: 'status', pred: [opIdAt(saved, 'status'), `500@${HOSTILE}`] }])
  return { d, x }
}

describe('third review of op-refs (replicas): rebuild without the queue', function () {
  this.timeout(120_000)
  const opened = closedAfterEach()

  it("probe: an honest queued change that a hostile's rebuild wiped comes back with anti-entropy from the peer that holds it", async () => {
    const hub = new LoopbackHub()
    const { replica: peer, orders: pOrders } = await ordersReplica(opened, hub, 'peer')
    await pOrders.put('o1', { status: 'new' })
    await pOrders.update('o1', (o) => void (o['y'] = 'y'))
    await pOrders.update('o1', (o) => void (o['c'] = 'c'))
    const all = A.getAllChanges(A.load<State>(await savedDoc(peer, 'orders', 'o1')))
    const c = all.at(-1)!
    // The victim joins after those writes (no gossip of them): it gets the first change, then C alone.
    const { replica: victim, orders: vOrders } = await ordersReplica(opened, hub, 'victim')
    const at = ordersFrom(victim, 'o1')
    expect(await at('peer', all[0]!)).to.equal('applied')
    expect(await vOrders.get('o1')).to.deep.equal({ status: 'new' })
    const savedBase = await savedDoc(victim, 'orders', 'o1')
    const { d, x } = trigger(savedBase)
    // C comes before Y (out of order): acknowledged, stored while it waits.
    expect(await at('peer', c)).to.equal('applied')
    expect(await at('evil', x)).to.equal('applied')
    expect(await at('evil', d)).to.equal('applied') // the rebuild: X and C dropped, stored whole
    await reloadEntity(victim, 'orders', 'o1')
    const afterRebuild = await vOrders.get('o1')
    console.log(`      after the rebuild, from the store: ${JSON.stringify(afterRebuild)}`)
    await victim.sync()
    await victim.sync()
    expect(await vOrders.get('o1')).to.deep.equal({ status: 'new', q: 1, y: 'y', c: 'c' })
  })

  it('HOLE 2 (honest acknowledged write lost, medium): C, acknowledged "applied" by the victim while it waited for Y, is gone once a hostile triggers a rebuild; a Y pushed alone afterwards does not bring it back (only anti-entropy from a peer still holding C does)', async () => {
    const hub = new LoopbackHub()
    const { replica: victim, orders: vOrders } = await ordersReplica(opened, hub, 'victim')
    await vOrders.put('o1', { status: 'new' })
    const savedBase = await savedDoc(victim, 'orders', 'o1')
    // A client's Y then C, delivered C first (its Y push lost or delayed); the client is then gone.
    const yDoc = A.change(A.load<State>(savedBase, { actor: '0c'.repeat(16) }), { time: 0 }, (o) => void (o['y'] = 'y'))
    const y = A.getLastLocalChange(yDoc)!
    const c = A.getLastLocalChange(A.change(A.clone(yDoc), { time: 0 }, (o) => void (o['c'] = 'c')))!
    const at = ordersFrom(victim, 'o1')
    const { d, x } = trigger(savedBase)
    expect(await at('client', c)).to.equal('applied')
    expect(await at('evil', x)).to.equal('applied')
    expect(await at('evil', d)).to.equal('applied')
    expect(await at('client', y)).to.equal('applied') // the delayed Y arrives
    await reloadEntity(victim, 'orders', 'o1')
    // Should hold: C, taken and acknowledged, applies once Y comes.
    expect(await vOrders.get('o1')).to.deep.equal({ status: 'new', q: 1, y: 'y', c: 'c' })
  })
})
