// Review of liveness: ways a replica stops making progress with an honest peer for good, though
// both are up and connected (bad input must never stop a node converging with its honest peers).
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { encodeHeaded } from '../src/replication/heads.js'
import { boundActor } from '../src/trust/actor-binding.js'
import { toHex } from '../src/hash.js'
import type { Replica } from '../src/index.js'
import { waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustSuite } from './trust-helpers.js'
import { headOf as headOfChange, headsCluster, notes } from './heads-helpers.js'
import { ctxOf, savedDoc, type State } from './counter-helpers.js'

describe('review: liveness', function () {
  this.timeout(120_000)
  const { keys, replicas } = trustSuite()

  /**
   * A change of ORDERS' own (bound) actor on n1 as `replica` holds it, that also depends on a
   * change that does not exist, with ORDERS' signed head: it may wait (its head reaches it), and
   * waits for good. What a member with write rights sends as it likes.
   */
  async function waitingForGood(replica: Replica): Promise<Uint8Array> {
    const actor = toHex(boundActor(ORDERS, new Uint8Array(16).fill(9)))
    const base = await savedDoc(replica, 'notes', 'n1')
    const { hash: _hash, ...made } = A.decodeChange(A.getLastLocalChange(A.change(A.load<State>(base, { actor }), { time: 0 }, (d) => void (d.tag = 'x')))!)
    const change = A.encodeChange({ ...made, deps: [...made.deps, 'ab'.repeat(32)].sort() })
    return encodeHeaded(change, [await headOfChange(keys, change, ORDERS)])
  }

  /** Rounds both ways until `a` and `b` show the same n1 (at most `max`); how many it took, or undefined. */
  async function roundsToAgree(a: Replica, b: Replica, max = 6): Promise<number | undefined> {
    for (let i = 1; i <= max; i++) {
      await a.sync()
      await b.sync()
      if ((await notes(a).get('n1'))?.text === (await notes(b).get('n1'))?.text) return i
    }
    return undefined
  }

  it('HOLE 1: a member’s change that waits for good (a dependency that does not exist) keeps its receiver from ever catching up on the entity by anti-entropy (a whole document leaves it waiting: later, every round)', async () => {
    const { hub, r } = await headsCluster(keys, replicas, [ADMIN, ORDERS, SUPPORT])
    await notes(r[ADMIN]!).put('n1', { text: 'one' })
    await waitFor(async () => (await notes(r[SUPPORT]!).get('n1')) !== undefined, 'n1 at SUPPORT')
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'notes', 'automerge', 'n1', await waitingForGood(r[SUPPORT]!))).to.equal('applied')
    // SUPPORT misses ADMIN's next writes: more than compactCheckBytes (16 KiB), so they come back as a whole document.
    hub.partition([ADMIN, ORDERS], [SUPPORT])
    await waitFor(() => r[SUPPORT]!.peers().length === 0, 'SUPPORT cut off')
    for (let i = 0; i < 60; i++) await notes(r[ADMIN]!).put('n1', { text: `${i}:` + 'y'.repeat(400) })
    hub.heal()
    await waitFor(() => r[SUPPORT]!.peers().includes(ADMIN), 'healed')
    expect(await roundsToAgree(r[SUPPORT]!, r[ADMIN]!)).to.not.equal(undefined)
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.equal(`59:${'y'.repeat(400)}`)
  })

  it('a whole document that brings nothing new to a replica where a change waits is not stored again at every round', async () => {
    const { r } = await headsCluster(keys, replicas, [ADMIN, ORDERS, SUPPORT])
    await notes(r[ADMIN]!).put('n1', { text: 'one' })
    await waitFor(async () => (await notes(r[SUPPORT]!).get('n1')) !== undefined, 'n1 at SUPPORT')
    const ctx = ctxOf(r[SUPPORT]!)
    expect(await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', await waitingForGood(r[SUPPORT]!))).to.equal('applied')
    const whole = await savedDoc(r[ADMIN]!, 'notes', 'n1')
    for (let i = 0; i < 3; i++) expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', whole)).to.not.equal('applied')
  })
})
