/**
 * Second review of the history-read budget (HISTORY_READS_PER_MINUTE) after reads were charged
 * to each change's author (a41c77b: HistoryWork, DeltaWork.accountOf): who a member can make
 * pay, whose changes it can keep out, and whether the budget map can be reset. Each "HOLE n"
 * fails on a41c77b; open ones are skipped with their numbers. Fixed: 7, 8 (a head's author is
 * charged only if it may write the collection under the adopted policy), 9 (a delta holding a
 * document is charged to its sender), 10 (unbound actors' reads were the relay's own), 11 (a
 * member with no budget kept out the honest changes relayed with, or built on, its own): what a
 * sender vouches for and did not write goes to its relay account (HistoryWork, relayedBy).
 */
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { HISTORY_READS_PER_MINUTE } from '../src/replication/apply.js'
import { encodeHeaded } from '../src/replication/heads.js'
import { concatBytes } from '../src/hash.js'
import { HistoryWork, relayedBy } from '../src/replication/history-work.js'
import { PeerBudget } from '../src/peer-budget.js'
import { ADMIN, ORDERS, SUPPORT, trustSuite } from './trust-helpers.js'
import { headOf } from './heads-helpers.js'
import { insertOnOldBase } from './old-base-helpers.js'
import { actorOf, hashOf, oldBaseAtSupport, op } from './history-reads-helpers.js'

describe('review 2: history reads charged per author', function () {
  this.timeout(120_000)
  const { keys, replicas } = trustSuite()

  const setUp = (n?: number) => oldBaseAtSupport(keys, replicas, n)

  it("HOLE 7: a member mints authors: heads signed with fresh keys (any key verifies on libp2p: the peer id names it) name accounts with a whole minute each, so its own spent minute stops nothing (no member check on a head's author)", async () => {
    const { ctx, base, from, spent } = await setUp()
    // M has spent its minute at R.
    ctx.historyReads.take(ORDERS, ctx.clock.now(), HISTORY_READS_PER_MINUTE)
    const own = insertOnOldBase(base, actorOf(ORDERS, 1), 5)
    expect(await from(ORDERS)(encodeHeaded(own, [await headOf(keys, own, ORDERS, 'e')]))).to.equal('rateLimited')
    // The same insert under an actor bound to a key M just made, with that key's head: charged to the new "author".
    const sybil = 'x-sybil-1' // stands for a fresh libp2p peer id; the test keyring makes its key on first use
    const change = insertOnOldBase(base, actorOf(sybil, 1), 6)
    const result = await from(ORDERS)(encodeHeaded(change, [await headOf(keys, change, sybil, 'e')]))
    expect(spent(sybil), 'reads charged to a key that is no member').to.equal(0) // a41c77b: ~300
    // What M sends and no writer's head covers is M's to vouch for, on its relay account (one
    // more minute, however many keys it makes: HistoryWork) — then refused as a rate.
    expect(result).to.equal('applied')
    expect(spent(relayedBy(ORDERS))).to.be.within(290, 320)
    ctx.historyReads.take(relayedBy(ORDERS), ctx.clock.now(), HISTORY_READS_PER_MINUTE)
    const again = insertOnOldBase(base, actorOf('x-sybil-2', 1), 7)
    expect(await from(ORDERS)(encodeHeaded(again, [await headOf(keys, again, 'x-sybil-2', 'e')]))).to.equal('rateLimited') // a41c77b: applied, read on a fresh account
    expect(spent('x-sybil-2')).to.equal(0)
  })

  it('HOLE 8: accounts for fresh keys fill the budget map (maxPeers 1000): it is cleared, and with it what every peer owes (a member in debt for a 1,000,000-change read has its minute back at once)', async () => {
    const { ctx, base, from } = await setUp(1)
    // M owes five minutes (one read of a 1,000,000-change history is work done: owed).
    ctx.historyReads.take(ORDERS, ctx.clock.now(), 5 * HISTORY_READS_PER_MINUTE)
    expect(ctx.historyReads.left(ORDERS, ctx.clock.now())).to.equal(0)
    // 1,000 cheap inserts (a read of ~1 change each: each on the one before), each under an actor of a fresh key.
    let deps = base.first
    for (let i = 0; i < 1000; i++) {
      const sybil = `x-sybil-${i}`
      const change = A.encodeChange({
        actor: actorOf(sybil, 1),
        author: null,
        seq: 1,
        startOp: base.startOp + i,
        time: 0,
        message: null,
        deps,
        ops: [op({ action: 'set', obj: base.list, elemId: base.elem, insert: true, value: i, datatype: 'int', pred: [] })],
      })
      const result = await from(ORDERS)(encodeHeaded(change, [await headOf(keys, change, sybil, 'e')]))
      if (result !== 'applied') break // fixed: the reads are M's, refused as a rate
      deps = [hashOf(change)]
    }
    expect(ctx.historyReads.left(ORDERS, ctx.clock.now()), "M's debt forgiven").to.equal(0) // a41c77b: 200,000
  })

  it("HOLE 9: a document followed by a forged change under an honest author's bound actor (and that author's old head, replayed) has its reads charged to the author before the heads refuse it", async () => {
    const { r, base, from, spent } = await setUp()
    // H (ADMIN) wrote g, an insert on the old base, with its head: R holds it, charged to H.
    const aH = actorOf(ADMIN, 3)
    const g = insertOnOldBase(base, aH, 9)
    const gHead = await headOf(keys, g, ADMIN, 'e')
    expect(await from(ADMIN)(encodeHeaded(g, [gHead]))).to.equal('applied')
    const before = spent(ADMIN)
    // M forges H's seq 2 after g (an insert naming the old list element: its judgment reads the
    // history since g), puts it in a whole document, and sends it with g's head (copied from any relay).
    const forged = A.encodeChange({
      actor: aH,
      author: null,
      seq: 2,
      startOp: base.startOp + 1,
      time: 0,
      message: null,
      deps: [hashOf(g)],
      ops: [op({ action: 'set', obj: base.list, elemId: base.elem, insert: true, value: 666, datatype: 'int', pred: [] })],
    })
    // A whole document alone is not judged (loaded as Automerge loads it); a document followed by
    // a change is, once applied — and its changes are not known ahead, so no head judges them first.
    let doc = A.load<Record<string, unknown>>(base.saved)
    ;[doc] = A.applyChanges(doc, [g])
    const result = await from(ORDERS)(encodeHeaded(concatBytes([A.save(doc), forged]), [gHead]))
    expect(r[SUPPORT]!.stats().peers[ORDERS]!.lastDrop?.message).to.contain('without a head signed by the peer that owns the actor')
    expect(result).to.equal('forbidden') // the heads refuse the forged change, once applied
    expect(spent(ADMIN) - before, "H charged for M's forgery").to.equal(0) // a41c77b: ~300
  })

  it("HOLE 10: a member's changes under an unbound actor, relayed by an honest peer, are charged to the relay's own account (HOLE 4 open for unbound actors): the relay's own edits then go refused", async () => {
    const { base, from, spent } = await setUp()
    const unbound = 'dd'.repeat(16) // 16 random bytes: not bound, vouched for by whoever relays
    expect(await from(ADMIN)(insertOnOldBase(base, unbound, 7))).to.equal('applied')
    expect(spent(ADMIN), "the relay's account, which its own bound changes use").to.equal(0) // a41c77b: ~300
    expect(spent(relayedBy(ADMIN)), 'its account for what it relays').to.be.within(290, 320)
  })

  it("HOLE 11: a member whose account is spent keeps out an honest author's change built on its change (relayed together): refused as a rate for as long as the member keeps its own account empty (before a41c77b the relay paid, and it was taken)", async () => {
    const { ctx, base, from, list } = await setUp()
    // M's insert on the old base (valid), which H took, and H's own change on top of it.
    const m = insertOnOldBase(base, actorOf(ORDERS, 1), 7)
    const h = A.encodeChange({
      actor: actorOf(ADMIN, 2),
      author: null,
      seq: 1,
      startOp: base.startOp + 1,
      time: 0,
      message: null,
      deps: [hashOf(m)],
      ops: [op({ action: 'set', obj: '_root', key: 'y', value: 1, datatype: 'int', pred: [] })],
    })
    // M keeps its own account at R empty (its own crafted deltas: what it may spend anyway).
    ctx.historyReads.take(ORDERS, ctx.clock.now(), HISTORY_READS_PER_MINUTE)
    const result = await from(ADMIN)(encodeHeaded(concatBytes([m, h]), [await headOf(keys, m, ORDERS, 'e'), await headOf(keys, h, ADMIN, 'e')]))
    expect(result, "H's change is kept out with M's").to.equal('applied') // a41c77b: rateLimited, every minute M spends its own
    expect(await list()).to.have.members([1, 7])
  })

  it("probe: a delta mixing H's change (read for) with M's (same base, reuses the read): M's change is judged on H's read, but only after H paid for its own (the per-batch cache charges who needs the read first)", async () => {
    const { base, from, spent } = await setUp()
    const h = insertOnOldBase(base, actorOf(ADMIN, 2), 8)
    const m = insertOnOldBase(base, actorOf(ORDERS, 1), 7)
    const result = await from(SUPPORT)(encodeHeaded(concatBytes([h, m]), [await headOf(keys, h, ADMIN, 'e'), await headOf(keys, m, ORDERS, 'e')]))
    expect(result).to.equal('applied')
    // One read of the ~300 since the base: charged once, to one of the two authors; never to the sender.
    expect(spent(ADMIN) + spent(ORDERS)).to.be.within(290, 320)
    expect(spent(SUPPORT)).to.equal(0)
  })

  it('probe: HistoryWork creates no budget entry for an account that read nothing (naming many actors cannot fill the map by itself), and settle() takes each once', () => {
    const budget = new PeerBudget(100, 60_000, 1000, true)
    const work = new HistoryWork(budget, 0, 'P', (actor) => (actor.startsWith('a') ? `owner-${actor}` : undefined))
    for (let i = 0; i < 5000; i++) work.accountOf(`a${i}`)
    work.accountOf('a1').done += 3
    work.accountOf('u').done += 2
    work.settle()
    work.settle()
    expect(budget.left('owner-a1', 0)).to.equal(97)
    expect(budget.left('P', 0)).to.equal(98)
    expect((budget as unknown as { windows: Map<string, unknown> }).windows.size).to.equal(2)
  })

  it('probe: short() names the account that ran out, the charged peer only when none did', () => {
    const budget = new PeerBudget(100, 60_000, 1000, true)
    const work = new HistoryWork(budget, 0, 'P', (actor) => (actor === 'x' ? 'X' : undefined))
    expect(work.short()).to.deep.equal(['P'])
    work.accountOf('x').exhausted = true
    work.accountOf('y')
    expect(work.short()).to.deep.equal(['X'])
  })
})
