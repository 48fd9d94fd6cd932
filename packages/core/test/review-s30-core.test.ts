// Review s30: attacks on today's core changes — judgeHeads(waited) (a whole document that
// releases waiting changes does not judge them again) and policy.set's checkMembers.
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { encodeHeaded } from '../src/replication/heads.js'
import { concatBytes } from '../src/hash.js'
import { LoopbackHub } from '../src/index.js'
import { waitFor } from './helpers.js'
import { memoryReplica } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustSuite } from './trust-helpers.js'
import { c3WaitingC5RefusedAtSupport, headOf as headOfChange, notes } from './heads-helpers.js'
import { savedDoc, type State } from './counter-helpers.js'

describe('review s30: waiting changes and policy members', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()
  const headOf = (change: Uint8Array, signer = ADMIN): Promise<Uint8Array> => headOfChange(keys, change, signer)

  // The seed's shape (c3 waits here, the head kept for ADMIN's actor is c3's, not held; c5, a
  // second waiting change, was not taken: once it was, and its head was the one kept): a
  // member relays the entity whole up to c3 — releasing c3 here, which judgeHeads now skips —
  // plus a change forged under ADMIN's actor at c4's seq (a fork of the change this replica has
  // never seen), with the genuine heads of c3 and c5. Skipping c3 must not let the forgery in:
  // it is the actor's newest change the document brings, and no head this replica holds covers it.
  it('holds: a fork of the missing seq, riding on a whole document that releases the waiting changes, is refused (the stored head of a still-waiting change covers nothing)', async () => {
    const { r, ctx, all, actor, c3, c4, c5 } = await c3WaitingC5RefusedAtSupport(keys, replicas)
    const [upToC3] = A.applyChanges(
      A.init<State>(),
      all.filter((c) => c !== c4 && c !== c5),
    )
    const forgedDoc = A.change(A.load<State>(A.save(upToC3), { actor }), { time: 0 }, (d) => void (d.text = 'forged'))
    const forged = A.getLastLocalChange(forgedDoc)!
    expect(A.decodeChange(forged).seq).to.equal(A.decodeChange(c4).seq)
    for (const heads of [[await headOf(c3)], [await headOf(c3), await headOf(c5)], [await headOf(c5)]]) {
      const got = await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', encodeHeaded(A.save(forgedDoc), heads))
      expect(got).to.be.oneOf(['forbidden', 'later', 'forked'])
      expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.not.equal('forged')
    }
    // As changes too (judged ahead).
    const got = await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', encodeHeaded(concatBytes([c3, forged]), [await headOf(c3), await headOf(c5)]))
    expect(got).to.not.equal('applied')
    // The genuine c4 still comes and releases c5.
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', encodeHeaded(concatBytes([c3, c4]), [await headOf(c4)]))).to.be.oneOf([
      'applied',
      'later',
    ])
    await waitFor(async () => {
      if ((await notes(r[SUPPORT]!).get('n1'))?.text === 'five') return true
      await applyRemoteDelta(
        ctx,
        ADMIN,
        'notes',
        'automerge',
        'n1',
        encodeHeaded(A.save(A.load<State>(await savedDoc(r[ADMIN]!, 'notes', 'n1'))), [await headOf(c5)]),
      )
      return (await notes(r[SUPPORT]!).get('n1'))?.text === 'five'
    }, 'five at SUPPORT')
  })

  // HOLE 3 (usability): a policy adopted before set() checked members may revoke an id that is
  // no peer id (a typo). Revocations are sticky, so policy.get() lists it in `revoked` for good,
  // and the admin's natural edit — get(), change a role, set() — is refused ever after, naming
  // an id the admin cannot remove (leaving it out of the document changes nothing: it is added back).
  it('HOLE 3 (fixed): an admin can still edit the policy it gets back (get → change a role → set) when a revocation from an older policy names no peer id', async () => {
    const hub = new LoopbackHub()
    const trust = keys.trust(ADMIN, [ADMIN]) as ReturnType<typeof keys.trust> & { isPeerId?: (id: string) => boolean }
    const admin = await memoryReplica({ network: hub.createNetwork(ADMIN), trust, syncIntervalMs: 0 })
    replicas.push(admin)
    // The previous release signed it without the check.
    await admin.policy.set({ roles: { admin: [ADMIN], orders: [ORDERS] }, collections: { notes: { read: ['*'], write: ['admin'] } }, revoked: ['b-ordres'] })
    // This release: only the test's ids are peer ids.
    trust.isPeerId = (id: string) => [ADMIN, ORDERS, SUPPORT].includes(id)
    const current = admin.policy.get()!
    expect(current.revoked).to.deep.equal(['b-ordres'])
    const next = { ...current, roles: { ...current.roles, support: [SUPPORT] } }
    await admin.policy.set(next)
    expect(admin.policy.get()?.roles.support).to.deep.equal([SUPPORT])
  })

  it('holds: leaving the old non-peer-id revocation out of the document is accepted, and it stays revoked (sticky)', async () => {
    const hub = new LoopbackHub()
    const trust = keys.trust(ADMIN, [ADMIN]) as ReturnType<typeof keys.trust> & { isPeerId?: (id: string) => boolean }
    const admin = await memoryReplica({ network: hub.createNetwork(ADMIN), trust, syncIntervalMs: 0 })
    replicas.push(admin)
    await admin.policy.set({ roles: { admin: [ADMIN] }, collections: { notes: { read: ['*'], write: ['admin'] } }, revoked: ['b-ordres'] })
    trust.isPeerId = (id: string) => [ADMIN, ORDERS, SUPPORT].includes(id)
    await admin.policy.set({ roles: { admin: [ADMIN], support: [SUPPORT] }, collections: { notes: { read: ['*'], write: ['admin'] } } })
    expect(admin.policy.get()?.revoked).to.deep.equal(['b-ordres'])
  })
})
