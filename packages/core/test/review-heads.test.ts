// Review of signed heads (issue #13, item 3): attacks and long histories. Each test names the
// hole it shows; a fixed hole's test passes, an open one is skipped with its description.
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { actorOwnedBy } from '../src/trust/actor-binding.js'
import type { PolicyDocument, Replica } from '../src/index.js'
import { LoopbackHub } from '../src/index.js'
import { memoryReplica, waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustSuite } from './trust-helpers.js'
import { ctxOf, savedDoc, type State } from './counter-helpers.js'

const LATE = 'd-late'
const POLICY: PolicyDocument = {
  roles: { admin: [ADMIN], orders: [ORDERS], support: [SUPPORT, LATE] },
  collections: { notes: { read: ['*'], write: ['admin', 'orders', 'support'] } },
}
const notes = (r: Replica) => r.collection<State>('notes', { backend: 'automerge' })

/** The newest change of each actor of an entity at `r` (from its whole document). */
async function actorsOf(r: Replica, id: string): Promise<Map<string, number>> {
  const doc = A.load<State>(await savedDoc(r, 'notes', id))
  const out = new Map<string, number>()
  for (const c of A.getAllChanges(doc).map((b) => A.decodeChange(b))) out.set(c.actor, Math.max(out.get(c.actor) ?? 0, c.seq))
  return out
}

describe('review: signed heads', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  async function member(hub: LoopbackHub, id: string, options: Record<string, unknown> = {}): Promise<Replica> {
    const r = await memoryReplica({ network: hub.createNetwork(id), trust: keys.trust(id, [ADMIN]), syncIntervalMs: 0, ...options })
    replicas.push(r)
    return r
  }

  it('HOLE 1: an entity reloaded (a new actor) within one push window has every actor of the author signed, and a late joiner fetching it whole takes it', async () => {
    const hub = new LoopbackHub()
    // A cache of one entity: writing n2 evicts n1, whose next write is made by a new actor.
    const admin = await member(hub, ADMIN, { cacheSize: 1, pushDelayMs: 300 })
    await admin.policy.set(POLICY)
    await notes(admin).put('n1', { text: 'a' })
    await notes(admin).put('n2', { text: 'x' })
    await notes(admin).put('n1', { text: 'b' })
    const actors = await actorsOf(admin, 'n1')
    expect(actors.size, 'n1 written by two actors of ADMIN').to.equal(2)
    await new Promise((r) => setTimeout(r, 600)) // the push window closes: heads signed
    const late = await member(hub, LATE)
    await waitFor(() => late.policy.get() !== undefined, 'LATE adopts')
    await late.sync()
    await late.sync()
    expect((await notes(late).get('n1'))?.text).to.equal('b')
    const stored = await ctxOf(admin).heads!.stored('notes', 'n1')
    for (const [actor, seq] of actors) {
      expect(actorOwnedBy(actor, ADMIN)).to.equal(true)
      expect(stored.get(actor)?.seq, `ADMIN's head of its actor ${actor}`).to.be.at.least(seq)
    }
  })
})
