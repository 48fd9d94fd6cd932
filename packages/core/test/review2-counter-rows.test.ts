/**
 * Second review of signed counter rows (counter-rows.ts, row-guard.ts, replication/apply.ts),
 * after the fixes of review-counter-rows.test.ts: a member writing the counter's collection
 * (through collection() or raw Automerge changes), long histories, restarts, and honest
 * workloads the stricter receive-path guard may now refuse.
 * Each "HOLE n: …" test names a hole the code under review had (each was watched fail there) and
 * passes since the fixes (rules that depend only on what a change carries: no min in rows, no
 * policy check on holders, a holder's numbers the field-wise maximum of its rows, concurrent
 * values under a row key refused, counter collections opened here or declared by the policy,
 * local writes peers would refuse failing with ERR_FORBIDDEN). "probe: …" tests held.
 */
import { cp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { classicLevelStore } from '@convergent/level'
import { automergeBackend } from '@convergent/automerge'
import { yjsBackend } from '@convergent/yjs'
import { LoopbackHub, Replica, type PolicyDocument } from '../src/index.js'
import { rowKey } from '../src/counter-rows.js'
import { silentLogger } from '../src/logger.js'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { putRow, rowKeyIn } from '../src/testing/index.js'
import { memoryReplica, tempDir, waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustCluster } from './trust-helpers.js'
import { ALL, codeOf, counterSuite, ctxOf, diskMember, forbidden, healThenSell, savedDoc, syncAll, values, type State } from './counter-helpers.js'

const LATE = 'd-late'
const POLICY: PolicyDocument = {
  roles: { admin: [ADMIN], orders: [ORDERS], support: [SUPPORT, LATE] },
  collections: {
    stock: { read: ['*'], write: ['admin', 'orders', 'support'], counter: true },
    notes: { read: ['*'], write: ['admin', 'orders', 'support'] },
  },
}

describe('review 2: signed counter rows', function () {
  this.timeout(120_000)
  const { keys, replicas, cluster, setUp, row } = counterSuite(POLICY)

  // ---------------------------------------------------------------------------------------------
  // Holes
  // ---------------------------------------------------------------------------------------------

  it("HOLE 1 (honest path, every Automerge collection): in a cluster a new entity of an ordinary Automerge collection, and any update of an entity with a field 'min', 'p|…' or 'n|…', is refused as 'forbidden' by every peer — the guard judges them ('may be a counter') and the apply's re-check (verdictOf) lacks the ahead check's 'not a counter' exit", async () => {
    const { r } = await cluster()
    const notes = (n: string) => r[n]!.collection<State>('notes', { backend: 'automerge' })
    await notes(ORDERS).put('n1', { title: 'hello' })
    await notes(ORDERS).put('n2', { title: 'limits', min: 3, 'p|x': 1 })
    await syncAll(r, 3)
    const got = { n1: await notes(ADMIN).get('n1'), n2: await notes(ADMIN).get('n2') }
    expect({ got, forbidden: forbidden(r[ADMIN]!, ORDERS), why: r[ADMIN]!.stats().peers[ORDERS]?.lastDrop?.message }).to.deep.equal({
      got: { n1: { title: 'hello' }, n2: { title: 'limits', min: 3, 'p|x': 1 } },
      forbidden: 0,
      why: undefined,
    })
  })

  it("HOLE 2: a writer hides a garbage value under a holder's current row key as a losing Automerge conflict (a change concurrent with the row's, lower op id): the guard judges read values only, so peers take it; the holder's next write deletes only its own op, the garbage comes into view there, and those peers refuse that write and every later one of the holder (the holder refuses theirs): split for good", async () => {
    const { hub, r } = await setUp()
    // ORDERS keeps the document as it is now (ADMIN's row 1) …
    const before = await savedDoc(r[ORDERS]!, 'stock', 's1')
    // … ADMIN sells 1 (its row 2, which deletes row 1's key and puts row 2's) …
    await r[ADMIN]!.counter('stock').decrement('s1', 1)
    for (const n of [ORDERS, SUPPORT]) await waitFor(async () => (await r[n]!.counter('stock').value('s1')) === 99, `${n} sees 99`)
    const k2 = rowKeyIn((await r[SUPPORT]!.collection<State>('stock').get('s1'))!, ADMIN, 2)
    // … and ORDERS makes, on the copy from before row 2, a change putting garbage at row 2's key:
    // concurrent with ADMIN's put, with a lower op id (one op, smallest actor), so it loses.
    const fork = A.change(A.load<State>(before, { actor: '00'.repeat(16) }), { time: 0 }, (d) => {
      d[k2] = new A.ImmutableString('garbage.AAAA')
    })
    const hidden = A.getLastLocalChange(fork)!
    // ADMIN does not get it (ORDERS never sends it there); SUPPORT is offered it. Since the fix a
    // row key holding two different values is refused: SUPPORT never holds the hidden value.
    hub.partition([ADMIN], [ORDERS, SUPPORT])
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'stock', 'automerge', 's1', hidden)).to.equal('forbidden')
    const held = A.getConflicts(A.load<State>(await savedDoc(r[SUPPORT]!, 'stock', 's1')), k2) ?? {}
    expect(Object.keys(held).length, 'SUPPORT holds no second value under row 2').to.be.at.most(1)
    expect(await r[SUPPORT]!.counter('stock').value('s1')).to.equal(99)
    // ADMIN sells 1 more (row 3: deletes row 2's key, its own op only); the network heals.
    await healThenSell(r, hub)
    expect(await values(r, 's1', [ADMIN, SUPPORT])).to.deep.equal([107, 107])
  })

  it("HOLE 3: a replica that holds a counter's collection but has not opened it as a counter (a relay) takes a member's own row signed with another min (the min is taken from the change's first row, not from the rows already there); once it opens the counter, every write of its own carries that change and the others refuse them for good", async () => {
    const { r } = await setUp([ADMIN, ORDERS]) // SUPPORT only relays 'stock' so far
    await r[ORDERS]!.collection<State>('stock').update('s1', (s) => void putRow(s, ORDERS, 1, row(ORDERS, ORDERS, 's1', { version: 1 })))
    // (Since the fix rows carry no min: the row is ORDERS' own and valid, and every replica takes it alike.)
    await waitFor(async () => {
      await r[ADMIN]!.sync().catch(() => undefined)
      return Object.keys((await r[ADMIN]!.collection<State>('stock').get('s1')) ?? {}).length === 2
    }, 'ADMIN takes the row')
    await waitFor(
      async () => Object.keys((await r[SUPPORT]!.collection<State>('stock').get('s1')) ?? {}).length === 2,
      'SUPPORT (relay) took the row', // it should not have
    ).catch(() => undefined)
    // SUPPORT now opens the counter and stocks 5.
    await r[SUPPORT]!.counter('stock').increment('s1', 5)
    await syncAll(r, 3)
    expect(await values(r, 's1', [ADMIN, SUPPORT])).to.deep.equal([105, 105])
  })

  it('HOLE 4 (honest path): once a holder has left the policy (removed from its role), no replica that lacks the counter — a new member, or one that lost the entity — can ever take it: the whole document is refused for a row of a holder that may not write now', async () => {
    const { hub, r } = await setUp()
    await r[ADMIN]!.counter('stock').transfer('s1', ORDERS, 10)
    await waitFor(async () => (await r[ORDERS]!.counter('stock').rights('s1')) === 10, 'ORDERS holds 10')
    await r[ORDERS]!.counter('stock').decrement('s1', 4)
    for (const n of [ADMIN, SUPPORT]) await waitFor(async () => (await r[n]!.counter('stock').value('s1')) === 96, `${n} sees 96`)
    // ORDERS (a shop that closed) leaves its role; a new member joins.
    await r[ADMIN]!.policy.set({ ...POLICY, roles: { admin: [ADMIN], orders: [], support: [SUPPORT, LATE] } })
    await waitFor(() => r[SUPPORT]!.policy.get()?.roles.orders?.length === 0, 'SUPPORT adopts the new policy')
    const late = await memoryReplica({ network: hub.createNetwork(LATE), trust: keys.trust(LATE, [ADMIN]) })
    replicas.push(late)
    await waitFor(() => late.policy.get() !== undefined, 'LATE adopts')
    const counter = late.counter('stock')
    for (let i = 0; i < 4; i++) await late.sync().catch(() => undefined)
    expect({ value: await counter.value('s1'), admin: await r[ADMIN]!.counter('stock').value('s1') }).to.deep.equal({ value: 96, admin: 96 })
  })

  it('HOLE 5 (honest path, upgrade): a counter written in development mode keeps its unsigned entries once the cluster is on (as the README says); no replica that lacks it — a new member — can ever take it: the guard refuses a change that "writes" the min and p|/n| keys', async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const hub = new LoopbackHub()
      const open = (trust: boolean) =>
        Replica.open({
          store: classicLevelStore(dir),
          backends: [yjsBackend(), automergeBackend()],
          network: hub.createNetwork(ADMIN),
          ...(trust ? { trust: keys.trust(ADMIN, [ADMIN]) } : {}),
          syncIntervalMs: 0,
          logger: silentLogger,
        })
      const dev = await open(false)
      await dev.counter('stock').increment('s1', 100)
      await dev.close()
      const admin = await open(true) // the cluster is turned on
      replicas.push(admin)
      await admin.policy.set(POLICY)
      await admin.counter('stock').increment('s1', 7) // ADMIN's first signed row
      const late = await memoryReplica({ network: hub.createNetwork(LATE), trust: keys.trust(LATE, [ADMIN]) })
      replicas.push(late)
      await waitFor(() => late.policy.get() !== undefined, 'LATE adopts')
      const counter = late.counter('stock')
      for (let i = 0; i < 4; i++) await late.sync().catch(() => undefined)
      expect({ late: await counter.value('s1'), admin: await admin.counter('stock').value('s1') }).to.deep.equal({ late: 7, admin: 7 })
    } finally {
      await cleanup()
    }
  })

  it("HOLE 6: a writer of an ordinary Automerge collection makes any id it likes a 'counter' by writing one row it signed for it first: every later honest write of that id is refused by every other replica (each writer's replica diverges for good); before, the writer's junk was simply overwritten", async () => {
    const { r } = await cluster()
    const notes = (n: string) => r[n]!.collection<State>('notes', { backend: 'automerge' })
    const squat: State = {}
    putRow(squat, ORDERS, 1, row(ORDERS, ORDERS, 'n1', { version: 1 }, 'notes'))
    await notes(ORDERS).put('n1', squat)
    await syncAll(r, 2)
    await notes(SUPPORT).put('n1', { title: 'from support' })
    await syncAll(r, 3)
    expect(await notes(ADMIN).get('n1')).to.deep.equal({ title: 'from support' })
  })

  it("HOLE 7 (honest path): a local write through collection() that every peer's guard refuses — delete() of a counter id, an ordinary entity kept in a counter's collection — succeeds locally: the writer's replica diverges from the rest for good, with no error", async () => {
    const { r } = await setUp()
    const stock = (n: string) => r[n]!.collection<State>('stock')
    const deleted = await codeOf(stock(ADMIN).delete('s1'))
    const meta = await codeOf(stock(SUPPORT).put('meta', { label: 'warehouse 1' }))
    await syncAll(r, 3)
    const s1 = await Promise.all(ALL.map(async (n) => (await stock(n).get('s1')) === undefined))
    const metas = await Promise.all(ALL.map(async (n) => (await stock(n).get('meta'))?.label))
    const converged = (xs: unknown[]) => xs.every((x) => x === xs[0])
    expect({ s1: deleted !== undefined || converged(s1), meta: meta !== undefined || converged(metas) }).to.deep.equal({ s1: true, meta: true })
  })

  it("HOLE 8 (restart from a damaged disk): a holder whose store lost its last row (restored from a copy) and writes that version again with other numbers is cut off for good — both ways — when the lost row had given rights a peer already spent: the view counts whichever same-version row sorts first, so the rights check finds the peer below 0 and refuses the holder's write and every later one (and the holder refuses everyone's)", async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const backup = join(dir, 'backup')
      const live = join(dir, 'live')
      const openOrders = (hub: LoopbackHub) => diskMember(keys, live, ORDERS, hub)
      const { hub, r } = await trustCluster(keys, [ADMIN, SUPPORT], replicas)
      r[ORDERS] = await openOrders(hub)
      replicas.push(r[ORDERS])
      await r[ADMIN]!.policy.set(POLICY)
      await waitFor(() => r[ORDERS]!.policy.get() !== undefined && r[SUPPORT]!.policy.get() !== undefined, 'adopted')
      await r[ADMIN]!.counter('stock').increment('s1', 100)
      await r[ADMIN]!.counter('stock').transfer('s1', ORDERS, 20)
      await waitFor(async () => (await r[ORDERS]!.counter('stock').rights('s1')) === 20, 'ORDERS holds 20')
      await r[ORDERS].counter('stock').decrement('s1', 1) // ORDERS' row 1
      await waitFor(async () => (await r[SUPPORT]!.counter('stock').value('s1')) === 99, 'SUPPORT sees 99')
      // The disk copy ORDERS will be restored from (its row 1).
      await r[ORDERS].close()
      await cp(live, backup, { recursive: true })
      r[ORDERS] = await openOrders(hub)
      replicas.push(r[ORDERS])
      // ORDERS gives SUPPORT 10 (its row 2); SUPPORT sells them.
      await r[ORDERS].counter('stock').transfer('s1', SUPPORT, 10)
      await waitFor(async () => (await r[SUPPORT]!.counter('stock').rights('s1')) === 10, 'SUPPORT holds 10')
      await r[SUPPORT]!.counter('stock').decrement('s1', 10)
      await waitFor(async () => (await r[ADMIN]!.counter('stock').value('s1')) === 89, 'ADMIN sees 89')
      const row2 = rowKeyIn((await r[ADMIN]!.collection<State>('stock').get('s1'))!, ORDERS, 2)
      // The disk is lost; ORDERS comes back from the copy, offline, and sells `n` (its row 2 again).
      // (n is picked so that the new row's key sorts before the lost one's: one in two does. Past 8
      // the holder's field-wise maximum (dec 1+n, out 10 of its 20) leaves it nothing to sell in the
      // last step, so n stays in 1..8 and falls back to 1 — the other order — once in 2^8 runs.)
      await r[ORDERS].close()
      await rm(live, { recursive: true, force: true })
      await cp(backup, live, { recursive: true })
      hub.partition([ORDERS], [ADMIN, SUPPORT])
      r[ORDERS] = await openOrders(hub)
      replicas.push(r[ORDERS])
      const n = Array.from({ length: 8 }, (_, i) => i + 1).find((k) => rowKey(ORDERS, 2, row(ORDERS, ORDERS, 's1', { version: 2, dec: 1 + k })) < row2) ?? 1
      expect(await r[ORDERS].counter('stock').decrement('s1', n)).to.equal(99 - n)
      hub.heal()
      await syncAll(r, 3)
      await r[ADMIN]!.counter('stock').decrement('s1', 1)
      await r[ORDERS].counter('stock').decrement('s1', 1)
      await syncAll(r, 3)
      const seen = await values(r)
      expect(
        seen.every((v) => v === seen[0]),
        `values ${seen.join(', ')}`,
      ).to.equal(true)
    } finally {
      await cleanup()
    }
  })

  it("HOLE 9: a member signs a newer row of its own that gives back less than an older one gave (out[victim] 10 → 0): no rule asks a holder's numbers to only grow, so it takes back rights it gave (where the victim has not spent them), and where the victim has spent them its spend and its change split the cluster for good", async () => {
    const { hub, r } = await setUp()
    await r[ADMIN]!.counter('stock').transfer('s1', ORDERS, 20)
    await waitFor(async () => (await r[ORDERS]!.counter('stock').rights('s1')) === 20, 'ORDERS holds 20')
    await r[ORDERS]!.counter('stock').transfer('s1', SUPPORT, 10) // ORDERS' row 1: out { SUPPORT: 10 }
    for (const n of ALL) await waitFor(async () => (await r[n]!.counter('stock').rights('s1', SUPPORT)) === 10, `${n}: SUPPORT holds 10`)
    hub.partition([ADMIN], [SUPPORT])
    await r[SUPPORT]!.counter('stock').decrement('s1', 10) // reaches ORDERS, not ADMIN
    // ORDERS signs its row 2 with the gift taken back.
    await r[ORDERS]!.collection<State>('stock').update('s1', (s) => {
      delete s[rowKeyIn(s, ORDERS, 1)]
      putRow(s, ORDERS, 2, row(ORDERS, ORDERS, 's1', { version: 2 }))
    })
    await waitFor(async () => (await r[ORDERS]!.counter('stock').rights('s1')) === 20, 'ORDERS counts its 20 again')
    await syncAll({ [ADMIN]: r[ADMIN]!, [ORDERS]: r[ORDERS]! })
    const taken = await r[ADMIN]!.counter('stock').rights('s1', SUPPORT)
    hub.heal()
    await syncAll(r, 3)
    await r[ADMIN]!.counter('stock').decrement('s1', 1)
    await r[SUPPORT]!.counter('stock').increment('s1', 1)
    await syncAll(r, 3)
    expect({ supportRightsOnAdmin: taken, values: await values(r, 's1', [ADMIN, SUPPORT]) }).to.deep.equal({ supportRightsOnAdmin: 10, values: [90, 90] })
  })

  // ---------------------------------------------------------------------------------------------
  // Probes that held
  // ---------------------------------------------------------------------------------------------

  it("probe (the edge of HOLE 2): a losing concurrent op holding the row's own value under a holder's key is harmless: the old row comes back into view after the holder's next write, counts for nothing, and every replica converges", async () => {
    const { hub, r } = await setUp()
    const before = await savedDoc(r[ORDERS]!, 'stock', 's1')
    await r[ADMIN]!.counter('stock').decrement('s1', 1)
    for (const n of [ORDERS, SUPPORT]) await waitFor(async () => (await r[n]!.counter('stock').value('s1')) === 99, `${n} sees 99`)
    const state = (await r[SUPPORT]!.collection<State>('stock').get('s1'))!
    const k2 = rowKeyIn(state, ADMIN, 2)
    const fork = A.change(A.load<State>(before, { actor: '00'.repeat(16) }), { time: 0 }, (d) => {
      d[k2] = new A.ImmutableString(state[k2] as string)
    })
    hub.partition([ADMIN], [ORDERS, SUPPORT])
    expect(await applyRemoteDelta(ctxOf(r[ORDERS]!), SUPPORT, 'stock', 'automerge', 's1', A.getLastLocalChange(fork)!)).to.equal('applied')
    await r[SUPPORT]!.sync()
    await healThenSell(r, hub)
    expect(await values(r)).to.deep.equal([107, 107, 107])
  })

  it('probe: a forged change whose dependency never comes (rows of other members inside) is not kept, costs no signature check, however often it is sent; the counter goes on', async () => {
    const { r } = await setUp()
    const fork0 = A.load<State>(await savedDoc(r[ORDERS]!, 'stock', 's1'), { actor: 'ab'.repeat(16) })
    const fork1 = A.change(fork0, { time: 0 }, (d) => void (d.junk = 1)) // never sent
    const fork2 = A.change(fork1, { time: 0 }, (d) => {
      delete d.junk
      for (let v = 2; v < 8; v++) d[rowKey(ADMIN, v, `x${v}.AAAA`)] = new A.ImmutableString(`x${v}.AAAA`)
    })
    const orphan = A.getLastLocalChange(fork2)!
    const verifies = keys.verifies
    const results = new Set<string>()
    for (let i = 0; i < 50; i++) results.add(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'stock', 'automerge', 's1', orphan))
    expect({ results: [...results], verifies: keys.verifies - verifies }).to.deep.equal({ results: ['later'], verifies: 0 })
    await r[ADMIN]!.counter('stock').decrement('s1', 1)
    await waitFor(async () => (await r[SUPPORT]!.counter('stock').value('s1')) === 99, 'SUPPORT goes on')
  })

  it('probe: a counter change that arrives before the one it depends on is not kept (nor, bare of its head, the one before), and the next anti-entropy round brings both', async () => {
    const { hub, r } = await setUp()
    hub.partition([ADMIN], [ORDERS, SUPPORT])
    await r[ADMIN]!.counter('stock').decrement('s1', 1)
    await r[ADMIN]!.counter('stock').decrement('s1', 1)
    const changes = A.getAllChanges(A.load<State>(await savedDoc(r[ADMIN]!, 'stock', 's1')))
    const [c1, c2] = changes.slice(-2)
    const ctx = ctxOf(r[SUPPORT]!)
    // Bare changes of ADMIN's bound actor, without its signed head: neither is kept (the second
    // would have been, before signed heads); anti-entropy brings them with their head.
    const got = [await applyRemoteDelta(ctx, ADMIN, 'stock', 'automerge', 's1', c2!), await applyRemoteDelta(ctx, ADMIN, 'stock', 'automerge', 's1', c1!)]
    expect(got).to.deep.equal(['later', 'later'])
    expect(await r[SUPPORT]!.counter('stock').value('s1')).to.equal(100)
    hub.heal()
    await r[SUPPORT]!.sync()
    expect(await r[SUPPORT]!.counter('stock').value('s1')).to.equal(98)
  })

  // Once a probe of cost with a time limit: speed is measured in bench (IDS=1 node
  // bench/dist/src/counter.js 3100: one hot id, a long history), not asserted here. What stays is
  // that a counter with a long history keeps replicating every further sale. The history is
  // made while the others are cut off and reaches them in one catch-up (~8 s): taken sale by
  // sale, each judged against the history so far, it took ~60 s of the suite.
  it("with 3,000 sales in the counter's history, each further sale still reaches the others by gossip (the guard clones the document per delta)", async () => {
    const { r, hub } = await setUp()
    const admin = r[ADMIN]!.counter('stock')
    await admin.increment('s1', 5000)
    hub.partition([ADMIN], [ORDERS, SUPPORT])
    for (let i = 0; i < 3000; i++) await admin.decrement('s1', 1)
    hub.heal()
    await r[SUPPORT]!.sync()
    await waitFor(async () => (await r[SUPPORT]!.counter('stock').value('s1')) === 2100, 'SUPPORT catches up', 60_000)
    for (let i = 0; i < 100; i++) await admin.decrement('s1', 1)
    await waitFor(async () => (await r[SUPPORT]!.counter('stock').value('s1')) === 2000, 'SUPPORT sees the 100 more', 60_000)
    expect(await r[SUPPORT]!.counter('stock').value('s1')).to.equal(2000)
  })
})
