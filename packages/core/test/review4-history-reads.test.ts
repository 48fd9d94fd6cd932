/**
 * Fourth review of the history-read budget: a delta not taken is the sender's to pay
 * (6f3bf79: HistoryWork.refused, PeerBudget.refund, apply.ts restructured). Whether refunds
 * give free reads or forgive debt, whether an honest relay can be made to pay, and whether the
 * restructuring changed the apply. "HOLE n" tests fail on 6f3bf79; open ones are skipped with numbers.
 */
import { expect } from 'chai'
import { HISTORY_READS_PER_MINUTE } from '../src/replication/apply.js'
import type { ReplicationContext } from '../src/replication/context.js'
import { encodeHeaded } from '../src/replication/heads.js'
import { HistoryWork, relayedBy } from '../src/replication/history-work.js'
import { PeerBudget } from '../src/peer-budget.js'
import { ADMIN, ORDERS, SUPPORT, trustSuite } from './trust-helpers.js'
import { headOf } from './heads-helpers.js'
import { insertOnOldBase } from './old-base-helpers.js'
import { actorOf, oldBaseAtSupport, replayBehindBad } from './history-reads-helpers.js'

describe('review 4: history reads of a delta not taken', function () {
  this.timeout(120_000)
  const { keys, replicas } = trustSuite()

  const setUp = (n?: number) => oldBaseAtSupport(keys, replicas, n)

  /** 'notes' judged by the counter guard at V (as a collection declared a counter is). */
  function guarded(ctx: ReplicationContext, r: Record<string, unknown>) {
    const rows = (r[SUPPORT] as { signedRows: unknown }).signedRows
    expect(rows).to.not.equal(undefined)
    ;(ctx as unknown as { counterGuard: (c: string) => unknown }).counterGuard = () => rows
  }

  it("HOLE 1: in a counter collection, the guard's copy charges an honest author's replayed change to the author, and when the copy cannot apply (the guard says 'ok', the apply refuses) nothing gives it back: review3 HOLE 1 at half rate", async () => {
    const at = await setUp(5000)
    const { r, ctx, from, spent } = at
    guarded(ctx, r)
    const { h, hHead, sent } = await replayBehindBad(keys, at)
    // 6f3bf79: 40 refused deltas spend H's minute at V (~5,000 each, the guard's copy's), and H's own
    // delivery of h is refused as a rate. (The guard here refuses what H's change makes of 'notes',
    // a document that is no counter: not a rate.)
    expect(sent).to.equal(50)
    expect(spent(ADMIN), "H charged nothing for M's refused deltas (6f3bf79: 200,000)").to.equal(0)
    expect(
      spent(ORDERS) + spent(relayedBy(ORDERS)),
      "the guard's copy's reads and the apply's are M's (its own account: its change was refused)",
    ).to.be.at.least(HISTORY_READS_PER_MINUTE)
    expect(await from(ADMIN)(encodeHeaded(h, [hHead]))).to.not.equal('rateLimited')
  })

  /** A delta's work as the counter guard makes it at `t0`: H's change (actor 'h') read `reads` changes, settled before the guard's await. */
  function guardWorkAt(budget: PeerBudget, t0: number, reads: number): HistoryWork {
    const work = new HistoryWork(budget, t0, 'M', (actor) => (actor === 'h' ? 'H' : actor === 'm' ? 'M' : undefined), relayedBy('M'))
    work.accountOf('h').done += reads
    work.settle()
    return work
  }

  it("HOLE 2: the counter guard's refused() charges the sender at the time its work was made, before the guard's await: a window of the sender's begun meanwhile is taken for a clock set back and started afresh — its count and the debt it carries are forgotten", () => {
    const budget = new PeerBudget(HISTORY_READS_PER_MINUTE, 60_000, 1000, true)
    const t0 = 1_000_000
    // M's relay account: a window begun a minute ago.
    budget.take(relayedBy('M'), t0 - 59_990, 1)
    // D1 (guard's copy) reads 5,000 of H's at t0, then awaits the rows' checks …
    const work = guardWorkAt(budget, t0, 5000)
    // … meanwhile (20 ms later: a new minute) M's other deltas read 300,000 on its relay account: 100,000 owed.
    const t1 = t0 + 20
    budget.take(relayedBy('M'), t1, 300_000)
    expect(budget.left(relayedBy('M'), t1)).to.equal(0)
    // D1's guard verdict: refused. Its 5,000 are M's (the guard gives the time now) …
    work.refused(t1)
    // 6f3bf79: M's relay window restarted at t0 with 5,000: 195,000 left now, the 300,000 and the debt gone.
    expect(budget.left(relayedBy('M'), t1), "M's relay account still spent").to.equal(0)
    expect(HISTORY_READS_PER_MINUTE - budget.left(relayedBy('M'), t1 + 60_000), 'and still owes into the next minute').to.be.at.least(100_000)
  })

  it("HOLE 3: a refund across a window turn gives back, from the author's new minute, reads charged in the old one (which the turn already forgot): the author's new minute is longer by them", () => {
    const budget = new PeerBudget(HISTORY_READS_PER_MINUTE, 60_000, 1000, true)
    const t0 = 1_000_000
    budget.take('H', t0 - 59_990, 1)
    const work = guardWorkAt(budget, t0, 5000) // H: 5,001 in its old window
    // H's own delivery 20 ms later, in a new minute: 10,000 (nothing owed from the old one).
    const t1 = t0 + 20
    budget.take('H', t1, 10_000)
    work.refused(t1)
    // 6f3bf79: H's new window lowered to 5,000 — 5,000 read in it for nothing.
    expect(HISTORY_READS_PER_MINUTE - budget.left('H', t1), "H's new minute: what it read in it").to.equal(10_000)
  })

  it("HOLE 2 (through the apply): M relays H's change in a counter collection while a minute of its relay account turns during the guard's await; the guard refuses it, and M's relay account is started afresh — its debt forgotten", async () => {
    const { r, ctx, base, from, spent } = await setUp(5000)
    const rows = (r[SUPPORT] as unknown as { signedRows: { check: (...a: unknown[]) => Promise<unknown> } }).signedRows
    let now = ctx.clock.now()
    const clock = Object.create(ctx.clock) as typeof ctx.clock
    clock.now = () => now
    ;(ctx as unknown as { clock: typeof ctx.clock }).clock = clock
    ctx.historyReads.take(relayedBy(ORDERS), now, 1)
    let turned = false
    const guard = Object.create(rows) as typeof rows
    guard.check = async (...a: unknown[]) => {
      if (!turned) {
        turned = true
        // During the guard's await: a new minute, and M's other deltas read 300,000 on its relay account.
        now += 60_001
        ctx.historyReads.take(relayedBy(ORDERS), now, 300_000)
      }
      return rows.check(...a)
    }
    ;(ctx as unknown as { counterGuard: (c: string) => unknown }).counterGuard = () => guard
    const h = insertOnOldBase(base, actorOf(ADMIN, 2), 8)
    const result = await from(ORDERS)(encodeHeaded(h, [await headOf(keys, h, ADMIN, 'e')]))
    expect(turned).to.equal(true)
    expect(result).to.not.equal('applied')
    // 6f3bf79: 0 — the window restarted at the time the guard's work was made, a minute back.
    expect(spent(relayedBy(ORDERS)), "M's relay account spent").to.equal(HISTORY_READS_PER_MINUTE)
    expect(spent(ADMIN)).to.equal(0)
  })

  it.skip("HOLE 4 (open, design): a member's own change that an honest relay took and this replica refuses for a reason the relay did not cause (a verdict that differs here: the counter guard's, standing in) is read again on every round of anti-entropy, each time given back to the member and charged to the relay's relay account", async () => {
    const { r, ctx, base, from, spent } = await setUp(5000)
    guarded(ctx, r) // refuses what M's change makes of 'notes' (no counter): 'forbidden' here, taken at the relay
    const m1 = insertOnOldBase(base, actorOf(ORDERS, 1), 7)
    const relayed = encodeHeaded(m1, [await headOf(keys, m1, ORDERS, 'e')])
    for (let round = 0; round < 10; round++) expect(await from(ADMIN)(relayed)).to.equal('forbidden')
    // Measured: 6f3bf79 and with the fixes here: M 0, R's relay account 50,010 (5,001 a round:
    // the guard's copy's reads); on 6f3bf79's parent M paid them (50,010), R nothing until M's
    // minute was out (then R's relay account by the fallback, HOLE 11 of review2).
    expect(spent(ORDERS), 'the member whose change is refused').to.be.at.least(50_000)
    expect(spent(relayedBy(ADMIN)), "the honest relay's relay account").to.equal(0)
  })

  it('probe: a refund to an account whose window was cleared (maxPeers) gives nothing back, and the sender is still charged', () => {
    const budget = new PeerBudget(HISTORY_READS_PER_MINUTE, 60_000, 2, true)
    const work = guardWorkAt(budget, 1_000_000, 5000)
    budget.take('x', 1_000_001, 1) // a third peer: the windows cleared
    budget.take('H', 1_000_002, 7) // H's new window
    work.refused(1_000_003)
    // (The sender's new window clears them again here, maxPeers 2: H's 7 forgotten, nothing given back below it.)
    expect(HISTORY_READS_PER_MINUTE - budget.left('H', 1_000_003)).to.be.at.most(7)
    expect(HISTORY_READS_PER_MINUTE - budget.left(relayedBy('M'), 1_000_003)).to.equal(5000)
  })

  it('probe: a delta that brings nothing new (its change held already) charges no one, nor moves anything', async () => {
    const { from, spent, base } = await setUp(5000)
    const h = insertOnOldBase(base, actorOf(ADMIN, 2), 8)
    const headed = encodeHeaded(h, [await headOf(keys, h, ADMIN, 'e')])
    expect(await from(ADMIN)(headed)).to.equal('applied')
    const [a, rm, m] = [spent(ADMIN), spent(relayedBy(ORDERS)), spent(ORDERS)]
    for (let i = 0; i < 5; i++) expect(await from(ORDERS)(headed)).to.equal('duplicate')
    expect([spent(ADMIN), spent(relayedBy(ORDERS)), spent(ORDERS)]).to.deep.equal([a, rm, m])
  })
})
