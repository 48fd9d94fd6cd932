// What a writer can do with another replica's CRDT id (issue #13, item 3): put a change under
// another replica's Automerge actor and next sequence number. Automerge refuses a second change
// with the same actor and sequence ("duplicate seq"), so before signed heads every replica kept
// whichever of the two reached it first: the entity was split for good, and every later honest
// change built on the genuine one waited for ever where the forgery won. Now actors are bound to
// their peer and every change of one must come with its owner's signed head: the forgery is
// refused by every honest replica, whichever way it comes.
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { applyRemoteDelta } from '../src/replication/apply.js'
import type { PolicyDocument } from '../src/index.js'
import { waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT } from './trust-helpers.js'
import { ALL, counterSuite, ctxOf, forkChange, savedDoc, syncAll, type State } from './counter-helpers.js'

const ORDERS_POLICY: PolicyDocument = {
  roles: { admin: [ADMIN], orders: [ORDERS], support: [SUPPORT] },
  collections: { notes: { read: ['*'], write: ['admin', 'orders', 'support'] } },
}

describe('a writer forging a change under another replica’s Automerge actor', function () {
  this.timeout(60_000)
  const { cluster } = counterSuite(ORDERS_POLICY)

  it('a forged change under another replica’s actor is refused, and the replicas converge on the genuine history', async () => {
    const { r } = await cluster()
    const notes = (name: string) => r[name]!.collection<State>('notes', { backend: 'automerge' })
    await notes(ADMIN).put('n1', { text: 'one' })
    await waitFor(async () => (await notes(SUPPORT).get('n1')) !== undefined && (await notes(ORDERS).get('n1')) !== undefined, 'n1 everywhere')
    // ORDERS (a writer) forges ADMIN's next change: same actor, next sequence number.
    const base = await savedDoc(r[ADMIN]!, 'notes', 'n1')
    const last = A.getAllChanges(A.load<State>(base))
      .map((c) => A.decodeChange(c))
      .at(-1)!
    const forged = forkChange(base, last.actor, (d) => void (d.text = 'forged'))
    expect(A.decodeChange(forged).seq).to.equal(last.seq + 1)
    expect(last.actor).to.have.length(48, 'a bound actor (24 bytes)')
    // Sent bare (no head), and sent with ORDERS' own head for the actor: neither is taken.
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'notes', 'automerge', 'n1', forged)).to.not.equal('applied')
    expect((await notes(SUPPORT).get('n1'))?.text).to.equal('one')
    // ADMIN writes its genuine next change (same actor while the entity stays loaded), then more.
    await notes(ADMIN).put('n1', { text: 'two' })
    await notes(ADMIN).put('n1', { text: 'three' })
    await syncAll(r, 4)
    const seen = await Promise.all(ALL.map(async (n) => (await notes(n).get('n1'))?.text))
    expect(seen, `n1 on ${ALL.join(', ')}`).to.deep.equal(['three', 'three', 'three'])
  })
})
