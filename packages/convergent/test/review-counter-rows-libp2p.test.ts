// Review of signed counter rows over real libp2p (TCP on 127.0.0.1, classic-level on disk):
// a row's signature is checked with verifyPeerSignature, which takes the key from the peer id
// itself — so ANY Ed25519 identity's row verifies, member of the cluster or not.
import { join } from 'node:path'
import { expect } from 'chai'
import { encodeRowBody, rowSigningInput, rowValue } from '@convergent/core/internal'
import { asForger, putRow, rowNames } from '@convergent/core/testing'
import { identityPeerId, loadOrCreateIdentity, signerOf } from '@convergent/libp2p'
import { libp2pReplicas, startCluster, waitFor } from './helpers.js'

type State = Record<string, unknown>

describe('review: signed counter rows over real libp2p', function () {
  this.timeout(60_000)
  const suite = libp2pReplicas('convergent-review-counter-')

  it('HOLE 4 (libp2p): a writer relays the row of a fresh identity that is in no policy and never ran, spending 500 it never held: every replica counts it and the stock goes below 0', async function () {
    const { adminId, admin, members } = await startCluster(suite, 1)
    const orders = asForger(members[0]!) // writes the counter's document with its own code
    await waitFor(() => admin.peers().length === 1 && orders.peers().length === 1, 'connected')
    await admin.policy.set({ roles: { admin: [adminId], orders: [orders.peerId] }, collections: { stock: { read: ['*'], write: ['admin', 'orders'] } } })
    await waitFor(() => orders.policy.get() !== undefined, 'adopted')
    await admin.counter('stock').increment('sku', 100)
    // A round each try: the push can go out before ORDERS has joined the counter's topic.
    await waitFor(async () => {
      await orders.sync()
      return (await orders.counter('stock').value('sku')) === 100
    }, '100 arrives')

    // A throwaway Ed25519 identity, made offline by the writer.
    const file = join(await suite.folder(), 'sybil.key')
    const sybilKey = await loadOrCreateIdentity(file)
    const sybil = (await identityPeerId(file))!
    const body = encodeRowBody({ version: 1, inc: 0, dec: 500, out: {} })
    const signature = await signerOf(sybilKey)(rowSigningInput({ namespace: 'default', collection: 'stock', id: 'sku', holder: sybil }, body))
    await orders.collection<State>('stock').update('sku', (s) => void putRow(s, sybil, 1, rowValue(body, signature)))
    await waitFor(async () => {
      await admin.sync()
      return (admin.stats().peers[orders.peerId]?.dropped.forbidden ?? 0) > 0
    }, 'ADMIN refuses the row')
    expect(rowNames(await admin.collection<State>('stock').get('sku'))).to.not.include(`${sybil}|1`)
    expect(await admin.counter('stock').value('sku'), 'stock on ADMIN').to.equal(100)
  })
})
