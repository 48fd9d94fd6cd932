/**
 * Review of the policy's backend pin (CollectionRule.backend, policy-backend.test.ts): is the
 * verdict the same on every replica, whatever the order it adopted the pin and took deltas in?
 */
import { expect } from 'chai'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import type { PolicyDocument, Replica } from '../src/index.js'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { automergeDeltaOf, recordingLogger, rejectsWith, waitFor, yjsDeltaOf } from './helpers.js'
import { ctxOf } from './counter-helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustCluster, trustSuite } from './trust-helpers.js'

const POLICY: PolicyDocument = {
  roles: { all: [ADMIN, ORDERS, SUPPORT] },
  collections: { n: { read: ['*'], write: ['*'], backend: 'automerge' }, '*': { read: ['*'], write: ['*'] } },
}

const backendOf = (r: Replica, name: string) => r.status().collections.find((c) => c.name === name)?.backend

describe('review: the policy backend pin', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  async function adopt(r: Record<string, Replica>, policy: PolicyDocument, label: string): Promise<void> {
    await r[ADMIN]!.policy.set(policy)
    const version = r[ADMIN]!.policy.get()!.version
    await waitFor(() => Object.values(r).every((x) => x.policy.get()?.version === version), label)
  }

  // An application opens its collections at start, before its replica has the cluster policy
  // (a new replica gets it from its peers): the handle is a tentative default (Yjs). Once the pin
  // is adopted, its first write through that handle took the default, not the pin — persisted
  // under Yjs while every replica that opened it after the pin holds it under Automerge: the two
  // refused each other's deltas for good. The verdict depended on when the policy came.
  it('HOLE 1: a handle opened before the pin was adopted writes under the default backend, not the pinned one', async () => {
    const { r } = await trustCluster(keys, [ADMIN, ORDERS, SUPPORT], replicas)
    const early = r[SUPPORT]!.collection('n') // before any policy: a default, not written yet
    await adopt(r, POLICY, 'pin adopted')
    await early.put('e1', { v: 1 })
    expect(backendOf(r[SUPPORT]!, 'n'), 'SUPPORT holds n under the pinned backend').to.equal('automerge')
    await r[ORDERS]!.collection('n').put('e2', { v: 2 })
    await r[SUPPORT]!.sync()
    await r[ORDERS]!.sync()
    await waitFor(async () => (await r[SUPPORT]!.collection('n').get('e2')) !== undefined, 'SUPPORT takes e2')
    await waitFor(async () => (await r[ORDERS]!.collection('n').get('e1')) !== undefined, 'ORDERS takes e1')
  })

  // Measured: SUPPORT took a Yjs delta for 'n' before the pin (held, persisted); ADMIN then pins
  // 'n' to Automerge; ORDERS, opening 'n' after, holds it under Automerge. After sync rounds
  // SUPPORT lacks e2 and ORDERS lacks e1, each counting the other as backendMismatch (so the
  // ConvergentCollectionBackendMismatch alert fires). A pin cannot convert data already held
  // under another backend; the README says "one already held stays as it is", so a pin added
  // to (or changed on) a collection that exists leaves the replicas that held it before apart
  // from every replica that takes it after — a new member never gets its data. Not fixed (no
  // clean repair: the data would have to move between backends); documented in the README.
  it.skip('HOLE 2: a replica that held the collection under another backend before the pin stays apart from every replica that opens it after', async () => {
    const { r } = await trustCluster(keys, [ADMIN, ORDERS, SUPPORT], replicas)
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'n', 'yjs', 'e1', yjsDeltaOf({ v: 1 }))).to.equal('applied')
    await adopt(r, POLICY, 'pin adopted')
    await r[ORDERS]!.collection('n').put('e2', { v: 2 })
    await r[SUPPORT]!.sync()
    await r[ORDERS]!.sync()
    const held = async (x: Replica) => [await x.collection('n').get('e1'), await x.collection('n').get('e2')]
    expect(await held(r[SUPPORT]!)).to.deep.equal(await held(r[ORDERS]!))
  })

  it('HOLE 2 (logged): the replica that holds it under another backend logs an error naming the pin, once', async () => {
    const logger = recordingLogger()
    const { r } = await trustCluster(keys, [ADMIN, ORDERS, SUPPORT], replicas, { options: (id) => (id === SUPPORT ? { logger } : {}) })
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'n', 'yjs', 'e1', yjsDeltaOf({ v: 1 }))).to.equal('applied')
    await adopt(r, POLICY, 'pin adopted')
    await adopt(r, { ...POLICY, roles: { all: [ADMIN, ORDERS, SUPPORT], more: [ORDERS] } }, 'next version')
    const said = logger.lines.filter((l) =>
      l.message.includes("collection 'n' is held here with the 'yjs' backend, but the cluster policy pins it to 'automerge'"),
    )
    expect(said).to.have.length(1)
  })

  // A counter's collection is Automerge (replica.counter): a rule `counter: true` pinned to
  // another backend was signed and adopted; then counter(name) threw ERR_BACKEND_MISMATCH on
  // every replica not holding it yet, and each refused the counter's deltas — while replicas
  // that held it already kept it: the cluster split on the counter.
  it('HOLE 3: a policy pins a counter collection (counter: true) to a backend counters cannot use', async () => {
    const { r } = await trustCluster(keys, [ADMIN, ORDERS, SUPPORT], replicas)
    await rejectsWith(
      r[ADMIN]!.policy.set({ roles: POLICY.roles, collections: { stock: { read: ['*'], write: ['*'], counter: true, backend: 'yjs' } } }),
      'ERR_INVALID_ARGUMENT',
    )
  })

  // A pin naming a backend the admin's own replica does not have ('nope', a typo) was signed and
  // adopted: every replica then refused every delta for the collection and threw
  // ERR_UNKNOWN_BACKEND on collection(name) — under '*', for every collection not listed.
  it('HOLE 4: a policy pins a collection to a backend the signing replica does not have', async () => {
    const { r } = await trustCluster(keys, [ADMIN, ORDERS, SUPPORT], replicas)
    await rejectsWith(
      r[ADMIN]!.policy.set({ roles: POLICY.roles, collections: { '*': { read: ['*'], write: ['*'], backend: 'autmerge' } } }),
      'ERR_INVALID_ARGUMENT',
    )
  })

  // Worst case of the new field from a peer: an admin whose replica has a backend the others
  // lack ('nope', any name) signs a pin to it — set() there cannot refuse it. Every other
  // replica adopts the policy, refuses the collection's deltas (counted, never applied), fails
  // collection(name) with a clear error, skips it in anti-entropy, and keeps working otherwise.
  it('worst case: a pin, signed by an admin, to a backend the other replicas lack', async () => {
    const nope = Object.assign(yjsBackend(), { name: 'nope' })
    const logger = recordingLogger()
    const { r } = await trustCluster(keys, [ADMIN, ORDERS, SUPPORT], replicas, {
      options: (id) => (id === ADMIN ? { backends: [yjsBackend(), automergeBackend(), nope] } : id === SUPPORT ? { logger } : {}),
    })
    await adopt(r, { ...POLICY, collections: { ...POLICY.collections, n: { read: ['*'], write: ['*'], backend: 'nope' } } }, 'pin to nope adopted')
    expect(() => r[SUPPORT]!.collection('n')).to.throw(/No backend 'nope' on this replica/)
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'n', 'yjs', 'e1', yjsDeltaOf({ v: 1 }))).to.equal('backendMismatch')
    await r[ADMIN]!.collection('n').put('e2', { v: 2 }) // held here under 'nope'
    await r[SUPPORT]!.sync()
    expect(ctxOf(r[SUPPORT]!).entities.collections.has('n')).to.equal(false)
    expect(logger.lines.some((l) => l.message.includes("the cluster policy pins collection 'n' to backend 'nope', which this replica does not have"))).to.equal(
      true,
    )
    // Everything else still replicates.
    await r[ADMIN]!.collection('other').put('x', { v: 1 })
    await waitFor(async () => (await r[SUPPORT]!.collection('other').get('x')) !== undefined, 'other reaches SUPPORT')
  })

  it('sound: a pin changed by a later version governs only collections not held yet; one held keeps its backend and syncs', async () => {
    const { r } = await trustCluster(keys, [ADMIN, ORDERS, SUPPORT], replicas)
    await adopt(r, POLICY, 'pin adopted')
    await r[ORDERS]!.collection('n').put('e1', { v: 1 })
    await waitFor(async () => (await r[SUPPORT]!.collection('n').get('e1')) !== undefined, 'SUPPORT takes e1')
    await adopt(r, { ...POLICY, collections: { ...POLICY.collections, n: { read: ['*'], write: ['*'], backend: 'yjs' } } }, 'pin changed')
    expect(backendOf(r[SUPPORT]!, 'n')).to.equal('automerge')
    await r[SUPPORT]!.collection('n').put('e2', { v: 2 })
    await waitFor(async () => (await r[ORDERS]!.collection('n').get('e2')) !== undefined, 'ORDERS takes e2')
  })

  it('sound: a tentative default opened before the pin is switched by a pinned peer delta, and refuses the default', async () => {
    const { r } = await trustCluster(keys, [ADMIN, ORDERS, SUPPORT], replicas)
    r[SUPPORT]!.collection('n')
    await adopt(r, POLICY, 'pin adopted')
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'n', 'yjs', 'e1', yjsDeltaOf({ v: 1 }))).to.equal('backendMismatch')
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'n', 'automerge', 'e2', automergeDeltaOf(2))).to.equal('applied')
    expect(backendOf(r[SUPPORT]!, 'n')).to.equal('automerge')
  })

  it('sound: dropCollection then reopening takes the pin', async () => {
    const { r } = await trustCluster(keys, [ADMIN, ORDERS, SUPPORT], replicas)
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'n', 'yjs', 'e1', yjsDeltaOf({ v: 1 }))).to.equal('applied')
    await adopt(r, POLICY, 'pin adopted')
    await r[SUPPORT]!.dropCollection('n')
    expect(backendOf(r[SUPPORT]!, 'n')).to.equal(undefined)
    r[SUPPORT]!.collection('n')
    expect(backendOf(r[SUPPORT]!, 'n')).to.equal('automerge')
  })
})
