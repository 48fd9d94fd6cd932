/**
 * A writer that forks its own actor — two different changes under one (actor, seq), each with
 * a head it signed — parts the replicas that take each first: Automerge refuses a second change
 * of one actor and seq, so each side refuses the other's for good (review2-op-refs HOLE 6, not
 * repaired). What is asked here: the fork is told apart from a bad delta — counted as `forked`,
 * not as the honest relay's `invalidDelta`, against the actor's owner among the authors, and
 * logged once per actor and entity, naming the owner an admin can revoke.
 */
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { encodeHeaded } from '../src/replication/heads.js'
import { boundActor } from '../src/trust/actor-binding.js'
import { concatBytes, toHex } from '../src/hash.js'
import { ADMIN, ORDERS, SUPPORT, trustSuite } from './trust-helpers.js'
import { headOf, notesHeldBySupport } from './heads-helpers.js'
import { ctxOf, savedDoc, type State } from './counter-helpers.js'

describe('an actor forked by its owner (equivocation)', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  it("is counted as 'forked' against the relay that brings the other side and against the owner, and logged once naming the owner — not as the relay's invalidDelta", async () => {
    const { r, said: warnings } = await notesHeldBySupport(keys, replicas)
    // ORDERS forks its actor: h1 (seq 1), then a and b (both seq 2), each with a head it signed.
    const mine = toHex(boundActor(ORDERS, new Uint8Array(16).fill(9)))
    const base = A.load<State>(await savedDoc(r[ADMIN]!, 'notes', 'e'), { actor: mine })
    const h1doc = A.change(base, { time: 0 }, (d) => void (d['q'] = 'one'))
    const h1 = A.getLastLocalChange(h1doc)!
    const a = A.getLastLocalChange(A.change(A.clone(h1doc, { actor: mine }), { time: 0 }, (d) => void (d['r'] = 'a')))!
    const b = A.getLastLocalChange(A.change(A.clone(h1doc, { actor: mine }), { time: 0 }, (d) => void (d['s'] = 'b')))!
    const headed = async (changes: Uint8Array[]) => encodeHeaded(concatBytes(changes), [await headOf(keys, changes.at(-1)!, ORDERS, 'e')])
    // Side a to SUPPORT, side b to ADMIN, straight from ORDERS (a writer of notes).
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'notes', 'automerge', 'e', await headed([h1, a]))).to.equal('applied')
    expect(await applyRemoteDelta(ctxOf(r[ADMIN]!), ORDERS, 'notes', 'automerge', 'e', await headed([h1, b]))).to.equal('applied')
    // ADMIN's side reaches SUPPORT by anti-entropy: refused there (Automerge cannot hold both).
    await r[SUPPORT]!.sync().catch(() => undefined)
    await r[SUPPORT]!.sync().catch(() => undefined)
    const stats = r[SUPPORT]!.stats()
    expect(stats.peers[ADMIN]?.dropped.invalidDelta ?? 0, "not the relay's bad delta").to.equal(0)
    expect(stats.peers[ADMIN]?.dropped.forked ?? 0).to.be.at.least(1)
    expect(stats.authors[ORDERS]?.dropped.forked ?? 0, 'counted against the owner').to.be.at.least(1)
    const told = warnings.filter((w) => w.includes('signed two different changes') && w.includes(ORDERS))
    expect(told, 'logged once, naming the owner').to.have.length(1)
    expect(told[0]).to.include(mine)
  })
})
