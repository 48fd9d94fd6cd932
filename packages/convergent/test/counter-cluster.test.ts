// Counters in a cluster on real libp2p nodes (TCP on 127.0.0.1, classic-level on disk): every
// row is signed by its holder's peer key. A writer of the counter running its own code — it
// writes the counter's collection directly — cannot take another holder's rights on any
// replica, by gossip or by anti-entropy, and cannot drain them with rights requests.
import { expect } from 'chai'
import { encodeRowBody, rowValue } from '@convergent/core/internal'
import { asForger, putRow, rowKeyIn, rowNames } from '@convergent/core/testing'
import { isConvergentError, type Replica } from '../src/index.js'
import { libp2pReplicas, startCluster, waitFor } from './helpers.js'

type State = Record<string, unknown>

describe('Counters in a cluster over real libp2p: signed rows', function () {
  this.timeout(60_000)
  const suite = libp2pReplicas('convergent-counter-')

  it("a writer forging or taking back another's row is ignored or refused by every replica; rights cannot be drained", async function () {
    const { adminId, admin, members } = await startCluster(suite, 2)
    const orders = asForger(members[0]!) // writes the counter's document with its own code
    const inventory = members[1]!
    await waitFor(() => admin.peers().length === 2 && inventory.peers().length === 2, 'all connected')
    await admin.policy.set({
      roles: { admin: [adminId], orders: [orders.peerId], inventory: [inventory.peerId] },
      collections: { stock: { read: ['*'], write: ['admin', 'orders', 'inventory'] } },
    })
    await waitFor(() => orders.policy.get() !== undefined && inventory.policy.get() !== undefined, 'adopted')
    const everyone = [admin, orders, inventory]
    const converge = async (what: string, ok: (r: Replica) => Promise<boolean>) => {
      for (const r of everyone)
        await waitFor(async () => {
          if (await ok(r)) return true
          await r.sync()
          return false
        }, `${what} on ${r.peerId}`)
    }
    await admin.counter('stock').increment('sku', 100)
    await converge('100 arrives', async (r) => (await r.counter('stock').value('sku')) === 100)
    expect(rowNames(await admin.collection<State>('stock').get('sku'))).to.deep.equal([`${adminId}|1`])

    // ORDERS writes ADMIN's next row giving it all 100 rights (with a signature ADMIN never made),
    // and the unsigned keys that would do the same in development mode.
    const body = encodeRowBody({ version: 2, inc: 100, dec: 0, out: { [orders.peerId]: 100 } })
    await orders.collection<State>('stock').update('sku', (s) => {
      putRow(s, adminId, 2, rowValue(body, new Uint8Array(64).fill(1)))
      s[`p|${adminId}|${orders.peerId}`] = 100
    })
    // … and deletes ADMIN's row on another id (a take-back, refused on receipt).
    await admin.counter('stock').increment('sku2', 50)
    await converge('sku2 arrives', async (r) => (await r.counter('stock').value('sku2')) === 50)
    await orders.collection<State>('stock').update('sku2', (s) => void delete s[rowKeyIn(s, adminId, 1)])
    for (const r of [admin, inventory]) {
      await waitFor(async () => {
        await r.sync()
        return (r.stats().peers[orders.peerId]?.dropped.forbidden ?? 0) > 0
      }, `the take-back is refused by ${r.peerId}`)
      expect(await r.counter('stock').value('sku2')).to.equal(50)
      expect(await r.counter('stock').inspect('sku')).to.deep.equal({ value: 100, rights: { [adminId]: 100 } })
    }
    try {
      await orders.counter('stock').decrement('sku', 1)
      expect.fail('orders spent rights it was never given')
    } catch (err) {
      expect(isConvergentError(err, 'ERR_INSUFFICIENT_RIGHTS'), String(err)).to.equal(true)
    }

    // Honest rights requests: a dozen of them from INVENTORY never take ADMIN below what INVENTORY holds.
    for (let i = 0; i < 12; i++) await inventory.counter('stock').decrement('sku', 1, { waitMs: 2000 })
    for (const r of [admin, inventory]) await waitFor(async () => (await r.counter('stock').value('sku')) === 88, `12 sold, seen by ${r.peerId}`)
    const rights = await admin.counter('stock').inspect('sku')
    expect(rights.rights[adminId]!, JSON.stringify(rights)).to.be.at.least(rights.rights[inventory.peerId] ?? 0)
    expect(Object.values(rights.rights).reduce((a, b) => a + b, 0)).to.equal(88)
  })
})
