// Second review of liveness (apply.ts applyHeld, a whole document while changes wait: judged as
// any other when only what waited before still waits, else taken without what waits). Attacks
// on it: honest changes lost, hostile ones taken, cost, convergence.
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { encodeHeaded } from '../src/replication/heads.js'
import { boundActor } from '../src/trust/actor-binding.js'
import { concatBytes, toHex } from '../src/hash.js'
import type { Backend } from '../src/backend.js'
import { ADMIN, ORDERS, SUPPORT, trustSuite } from './trust-helpers.js'
import { adminAheadByTwo, headOf as headOfChange, headsCluster, notes } from './heads-helpers.js'
import { ctxOf, reloadEntity, savedDoc, type State } from './counter-helpers.js'

describe('review2: liveness (whole documents while changes wait)', function () {
  this.timeout(120_000)
  const { keys, replicas } = trustSuite()
  const headed = async (change: Uint8Array, signer = ADMIN) => encodeHeaded(change, [await headOfChange(keys, change, signer)])
  const ordersActor = (fill: number) => toHex(boundActor(ORDERS, new Uint8Array(16).fill(fill)))

  /**
   * On `base` (saved): a change of ORDERS' bound actor that also depends on a change that does not
   * exist (it waits for good), and a plain change of another ORDERS actor; the whole document of
   * `base` with the plain change, followed by the waiting one — as an honest relay that holds the
   * waiting change queued sends its document (A.save writes the queue after it) — with both heads.
   */
  async function wholeWithWaitingForGood(base: Uint8Array): Promise<{ whole: Uint8Array; waiting: Uint8Array }> {
    const { hash: _hash, ...made } = A.decodeChange(
      A.getLastLocalChange(A.change(A.load<State>(base, { actor: ordersActor(9) }), { time: 0 }, (d) => void (d.tag = 'x')))!,
    )
    const waiting = A.encodeChange({ ...made, deps: [...made.deps, 'ab'.repeat(32)].sort() })
    const withO1 = A.change(A.load<State>(base, { actor: ordersActor(8) }), { time: 0 }, (d) => void (d.other = 'o1'))
    const o1 = A.getLastLocalChange(withO1)!
    const whole = encodeHeaded(concatBytes([A.save(withO1), waiting]), [await headOfChange(keys, o1, ORDERS), await headOfChange(keys, waiting, ORDERS)])
    return { whole, waiting }
  }

  it('HOLE 1: an honest change waiting here for one in flight is dropped when a whole document brings a new waiting change (a member’s, relayed by anyone): when the one it waited for comes, it is not there (lost here for good if its author is gone)', async () => {
    const { hub, r } = await headsCluster(keys, replicas, [ADMIN, ORDERS, SUPPORT])
    const { base, c1, c2 } = await adminAheadByTwo(hub, r) // ADMIN cut off from the others from here on
    const ctx = ctxOf(r[SUPPORT]!)
    // c2 overtook c1: it waits here, vouched for by ADMIN's head.
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c2))).to.equal('applied')
    // A whole document carrying a member's change that waits for good (and something new).
    const { whole } = await wholeWithWaitingForGood(base)
    expect(await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', whole)).to.equal('applied')
    expect((await notes(r[SUPPORT]!).get('n1'))?.other).to.equal('o1')
    // As stored (the document was stored whole).
    await reloadEntity(r[SUPPORT]!, 'notes', 'n1')
    // c1 comes: c2 should be released by it, as before the whole document.
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c1))).to.equal('applied')
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.equal('three')
  })

  it('a change that waits and came only inside a whole document is not kept waiting here (never judged: nothing unjudged can be released later), while what waited before still waits', async () => {
    const { hub, r } = await headsCluster(keys, replicas, [ADMIN, ORDERS, SUPPORT])
    const { base, c1, c2 } = await adminAheadByTwo(hub, r)
    const ctx = ctxOf(r[SUPPORT]!)
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c2))).to.equal('applied')
    const { whole } = await wholeWithWaitingForGood(base)
    expect(await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', whole)).to.equal('applied')
    await reloadEntity(r[SUPPORT]!, 'notes', 'n1')
    const missing = A.getMissingDeps(A.load<State>(await savedDoc(r[SUPPORT]!, 'notes', 'n1'), { allowMissingChanges: true }), [])
    expect(missing).to.not.include('ab'.repeat(32))
    expect(missing).to.include(A.decodeChange(c1).hash)
  })

  it('cost: the pending ids are read only for whole documents while something waits (two saves of the document each), never for a delta of changes', async () => {
    const { hub, r } = await headsCluster(keys, replicas, [ADMIN, ORDERS, SUPPORT])
    const { base, c1, c2 } = await adminAheadByTwo(hub, r)
    const ctx = ctxOf(r[SUPPORT]!)
    const backend = ctx.entities.collections.get('notes')!.backend as Backend & { pendingIds(doc: unknown): string[] }
    const original = backend.pendingIds.bind(backend)
    let calls = 0
    backend.pendingIds = (doc: unknown) => {
      calls++
      return original(doc)
    }
    try {
      expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c2))).to.equal('applied')
      const withO1 = A.change(A.load<State>(base, { actor: ordersActor(8) }), { time: 0 }, (d) => void (d.other = 'o1'))
      const o1 = A.getLastLocalChange(withO1)!
      // Changes while c2 waits: no pending ids read.
      expect(await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', await headed(o1, ORDERS))).to.equal('applied')
      expect(calls).to.equal(0)
      // A whole document while c2 waits: before and after.
      await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', encodeHeaded(A.save(withO1), [await headOfChange(keys, o1, ORDERS)]))
      expect(calls).to.equal(2)
      // Nothing waits any more: none.
      expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c1))).to.equal('applied')
      await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', encodeHeaded(A.save(withO1), [await headOfChange(keys, o1, ORDERS)]))
      expect(calls).to.equal(2)
    } finally {
      backend.pendingIds = original
    }
  })
})
