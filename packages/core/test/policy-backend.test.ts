/**
 * A cluster policy that pins a collection's backend (CollectionRule.backend): a collection takes
 * the backend of the first delta a replica takes for it, so without a pin two replicas could take
 * a new collection under different backends and never sync it (review-order-refusals HOLE 2).
 */
import { expect } from 'chai'
import type { PolicyDocument } from '../src/index.js'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { automergeDeltaOf, rejectsWith, waitFor, yjsDeltaOf } from './helpers.js'
import { ctxOf } from './counter-helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustCluster, trustSuite } from './trust-helpers.js'

const POLICY: PolicyDocument = {
  roles: { all: [ADMIN, ORDERS, SUPPORT] },
  collections: { n: { read: ['*'], write: ['*'], backend: 'automerge' }, '*': { read: ['*'], write: ['*'] } },
}

describe('policy: a collection pinned to a backend', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  async function pinned() {
    const { r } = await trustCluster(keys, [ADMIN, ORDERS, SUPPORT], replicas)
    await r[ADMIN]!.policy.set(POLICY)
    await waitFor(() => Object.values(r).every((x) => x.policy.get()?.collections['n']?.backend === 'automerge'), 'adopted')
    return r
  }

  it('keeps its backend through the policy: set, adopted and read back', async () => {
    const r = await pinned()
    expect(r[SUPPORT]!.policy.get()?.collections['n']).to.deep.equal({ read: ['*'], write: ['*'], backend: 'automerge' })
    await rejectsWith(
      r[ADMIN]!.policy.set({ ...POLICY, collections: { n: { read: ['*'], write: ['*'], backend: 7 as unknown as string } } }),
      'ERR_INVALID_ARGUMENT',
    )
  })

  it('opens it with the pinned backend when the application names none, and refuses another', async () => {
    const r = await pinned()
    await r[ORDERS]!.collection('n').put('e1', { v: 1 })
    expect(r[ORDERS]!.status().collections.find((c) => c.name === 'n')?.backend).to.equal('automerge')
    expect(() => r[SUPPORT]!.collection('n', { backend: 'yjs' })).to.throw(/pins collection 'n' to backend 'automerge'/)
    // Collections it does not name keep the replica's default.
    await r[ORDERS]!.collection('other').put('x', { v: 1 })
    expect(r[ORDERS]!.status().collections.find((c) => c.name === 'other')?.backend).to.equal('yjs')
  })

  it('refuses a peer delta of another backend for it on every replica, whichever comes first: the replicas converge', async () => {
    const r = await pinned()
    // A writer sends a Yjs delta for the new collection to one replica and an Automerge one to another.
    expect(await applyRemoteDelta(ctxOf(r[ADMIN]!), ORDERS, 'n', 'yjs', 'e1', yjsDeltaOf({ v: 1 }))).to.equal('backendMismatch')
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'n', 'automerge', 'e2', automergeDeltaOf(2))).to.equal('applied')
    await r[ADMIN]!.sync()
    await waitFor(async () => (await r[ADMIN]!.collection('n').get('e2')) !== undefined, 'ADMIN takes e2 by anti-entropy')
    expect(await r[ADMIN]!.collection('n').get('e1')).to.equal(undefined)
    expect(r[ADMIN]!.stats().peers[ORDERS]?.dropped.backendMismatch).to.equal(1)
  })
})
