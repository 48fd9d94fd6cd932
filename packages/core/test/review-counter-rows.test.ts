/**
 * Review of signed counter rows (counter-rows.ts, row-guard.ts): an attacker that is a member
 * allowed to write the counter's collection, long histories and restarts.
 * Each "HOLE n: …" test names a hole the code under review had (each was watched fail there) and
 * passes since the fixes — where the fix refuses the forgery on receipt, the test waits for that
 * refusal instead of the forgery's arrival. HOLE 12 is a documented limit (pending). "probe: …"
 * tests held from the start.
 */
import { expect } from 'chai'
import { memoryLevelStore } from '@convergent/level'
import { automergeBackend } from '@convergent/automerge'
import { yjsBackend } from '@convergent/yjs'
import { LoopbackHub, Replica, type PolicyDocument } from '../src/index.js'
import { encodeRowBody, rowValue } from '../src/counter-rows.js'
import { silentLogger } from '../src/logger.js'
import { asForger, putRow, rowKeyIn, rowNames } from '../src/testing/index.js'
import { tempDir, waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustCluster } from './trust-helpers.js'
import { ALL, codeOf, counterSuite, diskMember, refusedBy, STOCK_POLICY as POLICY, syncAll, values, type State } from './counter-helpers.js'

describe('review: signed counter rows under attack', function () {
  this.timeout(120_000)
  const { keys, replicas, setUp, row } = counterSuite()

  // ---------------------------------------------------------------------------------------------
  // Holes
  // ---------------------------------------------------------------------------------------------

  it("HOLE 1: unsigned 'p|<victim>|<attacker>' written before the victim's first signed row on an id is signed into that row: the attacker takes rights it was never given and the value goes below min", async () => {
    const { r } = await setUp()
    // A fresh id: ADMIN has no signed row on it yet. ORDERS writes the development-mode key.
    await r[ORDERS]!.collection<State>('stock').put('s2', { [`p|${ADMIN}|${ORDERS}`]: 1000 })
    // Keys of the unsigned layout pass the guard (a counter from development mode keeps them) and are never counted.
    await waitFor(async () => (await r[ADMIN]!.collection<State>('stock').get('s2')) !== undefined, 'forgery arrives')
    // ADMIN stocks 10 units of s2: its first signed row carries "ADMIN gave ORDERS 1000".
    await r[ADMIN]!.counter('stock').increment('s2', 10)
    await syncAll(r)
    // ORDERS never held more than 0 rights on s2 honestly: its 1000-decrement must be refused.
    const spent = await codeOf(r[ORDERS]!.counter('stock').decrement('s2', 1000))
    await syncAll(r)
    expect({ spent, values: await values(r, 's2') }).to.deep.equal({ spent: 'ERR_INSUFFICIENT_RIGHTS', values: [10, 10, 10] })
  })

  it("HOLE 2: an unsigned entry that no signed row can carry ('n|<victim>' = 0.5) makes the victim's first signed row unreadable: its own counter throws TypeError on every read and its write is lost everywhere", async () => {
    const { r } = await setUp()
    await r[ORDERS]!.collection<State>('stock').put('s2', { [`n|${ADMIN}`]: 0.5 })
    await waitFor(async () => (await r[ADMIN]!.collection<State>('stock').get('s2')) !== undefined, 'forgery arrives')
    const inc = await codeOf(r[ADMIN]!.counter('stock').increment('s2', 10))
    const read = await codeOf(r[ADMIN]!.counter('stock').value('s2'))
    await syncAll(r)
    const seen = await Promise.all([ORDERS, SUPPORT].map((n) => r[n]!.counter('stock').value('s2')))
    expect({ inc, read, seen }).to.deep.equal({ inc: undefined, read: undefined, seen: [10, 10] })
  })

  it('HOLE 3: a member signs its own row spending rights it does not hold (dec 1000): every honest replica counts it and shows a value below min', async () => {
    const { r } = await setUp()
    await r[ORDERS]!.collection<State>('stock').update('s1', (s) => void putRow(s, ORDERS, 1, row(ORDERS, ORDERS, 's1', { version: 1, dec: 1000 })))
    await syncAll(r)
    const shown = await values(r, 's1', [ADMIN, SUPPORT])
    for (const v of shown) expect(v, 'value on an honest replica').to.be.at.least(0)
  })

  it("HOLE 4: a row of a holder that is no member at all (any key pair: on libp2p every peer id names its key) is counted: a writer relays a fresh identity's over-spending row", async () => {
    const { r } = await setUp()
    const sybil = 'z-sybil' // a fresh identity, named in no policy
    keys.key(sybil) // libp2p: verifyPeerSignature takes the key from the peer id itself
    await r[ORDERS]!.collection<State>('stock').update('s1', (s) => void putRow(s, sybil, 1, row(sybil, sybil, 's1', { version: 1, dec: 500 })))
    await syncAll(r)
    const shown = await r[ADMIN]!.counter('stock').inspect('s1')
    expect(shown.value, 'value on ADMIN').to.equal(100)
    expect(shown.rights).to.not.have.property(sybil)
  })

  it("HOLE 5: a member signs its own row with another min: every honest replica's writes on that id fail for ever (ERR_INVALID_ARGUMENT), and the row can never be taken back", async () => {
    const { r } = await setUp()
    await r[ORDERS]!.collection<State>('stock').update('s1', (s) => void putRow(s, ORDERS, 1, row(ORDERS, ORDERS, 's1', { version: 1 })))
    await syncAll(r)
    const codes = [await codeOf(r[ADMIN]!.counter('stock').decrement('s1', 1)), await codeOf(r[SUPPORT]!.counter('stock').increment('s1', 1))]
    expect(codes).to.deep.equal([undefined, undefined])
  })

  it("HOLE 6: a writer puts garbage on the victim's NEXT row keys (r|victim|2..60, op ids above the victim's) in a change the victim has not seen: replicas that took it first refuse every later write of the victim, and the victim refuses theirs (permanent divergence)", async () => {
    const { hub, r } = await setUp()
    hub.partition([ADMIN], [ORDERS, SUPPORT]) // or: the forger simply never sends its change to ADMIN
    const forger = r[ORDERS]!.collection<State>('stock')
    // Raise the forger's op counter above ADMIN's next writes, then put garbage at r|ADMIN|2..60.
    await forger.update('s1', (s) => {
      for (let i = 0; i < 200; i++) s[`junk${i}`] = i
    })
    await forger.update('s1', (s) => {
      for (let i = 0; i < 200; i++) delete s[`junk${i}`]
      for (let v = 2; v <= 60; v++) putRow(s, ADMIN, v, 'garbage.AAAA')
    })
    await refusedBy(r, SUPPORT)
    expect(await r[SUPPORT]!.counter('stock').value('s1')).to.equal(100) // harmless so far: ADMIN's row 1 still counts
    // ADMIN sells 10 (its row 2), without the forger's change; then the network heals.
    await r[ADMIN]!.counter('stock').decrement('s1', 10)
    hub.heal()
    await syncAll(r, 3)
    // Both keep working: ADMIN sells 5 more twice, SUPPORT stocks 1.
    await r[ADMIN]!.counter('stock').decrement('s1', 5)
    await r[ADMIN]!.counter('stock').decrement('s1', 5)
    await r[SUPPORT]!.counter('stock').increment('s1', 1)
    await syncAll(r, 4)
    expect(await values(r, 's1', [ADMIN, SUPPORT])).to.deep.equal([81, 81])
  })

  it("HOLE 7: after a restart, a read checks at most 256 rows: with forged rows sorted between two holders, value() counts a spender's row but not the row that funded it, and shows a value below min", async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const { hub, r } = await trustCluster(keys, [ADMIN, ORDERS], replicas)
      // SUPPORT on disk, on the same hub as the others.
      const openSupport = (h: LoopbackHub) => diskMember(keys, dir, SUPPORT, h)
      let support = asForger(await openSupport(hub))
      r[SUPPORT] = support
      await r[ADMIN]!.policy.set(POLICY)
      await waitFor(() => r[ORDERS]!.policy.get() !== undefined && support.policy.get() !== undefined, 'adopted')
      // ORDERS stocks 100 and hands all of it to ADMIN, which sells it all: value 0.
      await r[ORDERS]!.counter('stock').increment('s1', 100)
      await r[ORDERS]!.counter('stock').transfer('s1', ADMIN, 100)
      await waitFor(async () => (await r[ADMIN]!.counter('stock').rights('s1')) === 100, 'ADMIN holds 100')
      await r[ADMIN]!.counter('stock').decrement('s1', 100)
      // 300 unsigned "rows" of made-up holders that sort between a-admin and b-orders, in SUPPORT's
      // own store (peers refuse them: only its own writes put them there).
      // (value() of a counter id not here yet is 0 too: wait for the entity itself.) A counter takes
      // changes in causal order only: a push that overtook the one it depends on (a loaded full run)
      // waits for anti-entropy, which no timer runs here — so this replica asks.
      await waitFor(async () => {
        if ((await support.collection<State>('stock').get('s1')) !== undefined && (await support.counter('stock').value('s1')) === 0) return true
        await support.sync().catch(() => undefined)
        return false
      }, 'SUPPORT holds s1 and shows 0')
      for (let b = 0; b < 2; b++) {
        await support.collection<State>('stock').update('s1', (s) => {
          for (let i = 0; i < 150; i++) putRow(s, `a-z${String(b * 150 + i).padStart(4, '0')}`, 1, 'x.AA')
        })
      }
      await waitFor(async () => {
        await support.sync()
        return (
          Object.keys((await support.collection<State>('stock', { backend: 'automerge' }).get('s1')) ?? {}).length === 302 &&
          (await support.counter('stock').value('s1')) === 0
        )
      }, 'SUPPORT holds everything and shows 0')
      await support.close()
      support = await openSupport(new LoopbackHub()) // alone: nothing arrives that would check the rows first
      replicas.push(support)
      const after = await support.counter('stock').value('s1')
      const rightsAfter = await support.counter('stock').rights('s1', ADMIN)
      expect({ value: after, adminRights: rightsAfter }).to.deep.equal({ value: 0, adminRights: 0 })
    } finally {
      await cleanup()
    }
  })

  it('HOLE 8: a writer sending ids full of rows with bad signatures makes each receiver check one signature per change, not one per row, and nothing of them is kept', async () => {
    const { r } = await setUp()
    const body = encodeRowBody({ version: 1, inc: 1, dec: 0, out: {} })
    const bogus = rowValue(body, new Uint8Array(64).fill(9)) // decodes as a row: checking it costs a real verify
    const forger = r[ORDERS]!.collection<State>('stock')
    const before = keys.verifies
    for (const id of ['j1', 'j2']) {
      for (let b = 0; b < 26; b++) {
        await forger.update(
          id,
          (s) => {
            // Rows of members (ADMIN, SUPPORT) in a made-up version each: the holder check passes, the signature does not.
            for (let i = 0; i < 196; i++) putRow(s, i % 2 === 0 ? ADMIN : SUPPORT, b * 196 + i + 1, bogus)
          },
          { upsert: true },
        )
      }
    }
    await refusedBy(r, ADMIN)
    await syncAll(r)
    const verifies = keys.verifies - before
    // 52 signed pushes to 2 receivers (a verify each) and at most one row check per change and round.
    expect(verifies, 'signature checks for 52 changes of 196 forged rows each').to.be.below(800)
    for (const id of ['j1', 'j2']) expect(await r[ADMIN]!.collection<State>('stock').get(id), id).to.equal(undefined)
  })

  it("HOLE 9: the guard only covers collections this replica opened as counters: a replica that takes a forger's change before it calls counter() (here: ADMIN's row deleted, garbage on ADMIN's next keys) never counts ADMIN again and is cut off from ADMIN for good — no partition needed", async () => {
    const { r } = await setUp([ADMIN, ORDERS])
    const forger = r[ORDERS]!.collection<State>('stock')
    await forger.update('s1', (s) => {
      for (let i = 0; i < 200; i++) s[`junk${i}`] = i
    })
    await forger.update('s1', (s) => {
      for (let i = 0; i < 200; i++) delete s[`junk${i}`]
      delete s[rowKeyIn(s, ADMIN, 1)]
      for (let v = 2; v <= 60; v++) putRow(s, ADMIN, v, 'garbage.AAAA')
    })
    await syncAll(r)
    expect(await r[ADMIN]!.counter('stock').value('s1')).to.equal(100) // refused where the guard runs
    // SUPPORT (it only listed the stock so far) now opens the counter and stocks 5; ADMIN sells 2.
    await r[SUPPORT]!.counter('stock').increment('s1', 5)
    await r[ADMIN]!.counter('stock').decrement('s1', 1)
    await r[ADMIN]!.counter('stock').decrement('s1', 1)
    await syncAll(r, 4)
    expect(await values(r, 's1', [ADMIN, SUPPORT])).to.deep.equal([103, 103])
  })

  it('HOLE 10 (honest path): a holder that ever gave rights to more than 1,024 peers signs a row no one can read: its own counter then throws TypeError on every call, and every other replica refuses that write and all its later ones', async function () {
    this.timeout(300_000)
    const many = Array.from({ length: 1025 }, (_, i) => `p${String(i).padStart(5, '0')}`)
    const policy: PolicyDocument = { ...POLICY, roles: { ...POLICY.roles, orders: [ORDERS, ...many] } }
    const { r } = await setUp(ALL, policy)
    const stock = r[ADMIN]!.counter('stock')
    await stock.increment('s1', 1000)
    const failed: string[] = []
    // 1,025 signed transfers, 64 at a time (a tick signs them together; one after another took
    // ~100–150 s of the suite's time for the same row of 1,025 holders).
    for (let i = 0; i < many.length; i += 64) {
      const codes = await Promise.all(many.slice(i, i + 64).map((p) => codeOf(stock.transfer('s1', p, 1))))
      codes.forEach((code, j) => code !== undefined && failed.push(`${many[i + j]}: ${code}`))
    }
    const read = await codeOf(stock.value('s1'))
    await syncAll(r)
    expect({ failed, read, lastSeenBySupport: await r[SUPPORT]!.counter('stock').rights('s1', many.at(-1)) }).to.deep.equal({
      failed: [],
      read: undefined,
      lastSeenBySupport: 1,
    })
  })

  it("HOLE 11: one id holding more row keys than the verdict cache (10,000), taken where the guard did not run: the replica's own writes on it always fail with ERR_TIMEOUT and its reads never count the real rows", async () => {
    const { r } = await setUp([ADMIN, ORDERS])
    await r[ORDERS]!.collection<State>('stock').update('s1', (s) => {
      for (let i = 0; i < 13_000; i++) putRow(s, `0g${String(i).padStart(5, '0')}`, 1, 'x.AA')
    })
    await refusedBy(r, SUPPORT)
    const inc = await codeOf(r[SUPPORT]!.counter('stock').increment('s1', 1))
    const seen = await r[SUPPORT]!.counter('stock').value('s1')
    expect({ inc, seen }).to.deep.equal({ inc: undefined, seen: 101 })
  })

  // Not fixed: a documented limit (README, Counter). Kept pending with the numbers it measures.
  it.skip('HOLE 12 (scale, honest path): every signed write keeps ~75 bytes of signature and row in the Automerge history for ever (~1.7 with unsigned rows): a counter stops reaching fresh replicas 44x sooner (here maxDeltaBytes 96 KiB, 2,000 sales)', async () => {
    const limits = { maxDeltaBytes: 96 * 1024 }
    const { hub, r } = await trustCluster(keys, [ADMIN], replicas, { options: () => ({ limits }) })
    const stock = r[ADMIN]!.counter('stock')
    await stock.increment('s1', 2000)
    for (let i = 0; i < 2000; i++) await stock.decrement('s1', 1)
    // A fresh replica joins and asks for everything.
    const late = await Replica.open({
      store: memoryLevelStore(),
      backends: [yjsBackend(), automergeBackend()],
      network: hub.createNetwork(ORDERS),
      trust: keys.trust(ORDERS, [ADMIN]),
      syncIntervalMs: 0,
      logger: silentLogger,
      limits,
    })
    replicas.push(late)
    const counter = late.counter('stock')
    for (let i = 0; i < 5; i++) await late.sync().catch(() => undefined)
    expect(await late.collection<State>('stock').get('s1'), 'the counter reached the fresh replica').to.not.equal(undefined)
    expect(await counter.value('s1')).to.equal(0)
  })

  // ---------------------------------------------------------------------------------------------
  // Probes that held
  // ---------------------------------------------------------------------------------------------

  it('probe (control for HOLE 12): in development mode the same 2,000 sales under the same maxDeltaBytes reach a fresh replica', async () => {
    const limits = { maxDeltaBytes: 96 * 1024 }
    const hub = new LoopbackHub()
    const open = (id: string) =>
      Replica.open({
        store: memoryLevelStore(),
        backends: [yjsBackend(), automergeBackend()],
        network: hub.createNetwork(id),
        syncIntervalMs: 0,
        logger: silentLogger,
        limits,
      })
    const a = await open(ADMIN)
    replicas.push(a)
    const stock = a.counter('stock')
    await stock.increment('s1', 2000)
    for (let i = 0; i < 2000; i++) await stock.decrement('s1', 1)
    const late = await open(ORDERS)
    replicas.push(late)
    const counter = late.counter('stock')
    for (let i = 0; i < 5; i++) await late.sync().catch(() => undefined)
    expect(await late.collection<State>('stock').get('s1')).to.not.equal(undefined)
    expect(await counter.value('s1')).to.equal(0)
  })

  it('probe: many concurrent decrements, transfers and rights requests on one id converge, never below min, no ERR_TIMEOUT', async () => {
    const { r } = await setUp()
    const admin = r[ADMIN]!.counter('stock')
    const orders = r[ORDERS]!.counter('stock')
    const support = r[SUPPORT]!.counter('stock')
    const results = await Promise.allSettled([
      ...Array.from({ length: 40 }, () => admin.decrement('s1', 1)),
      ...Array.from({ length: 5 }, () => admin.transfer('s1', ORDERS, 2)),
      ...Array.from({ length: 10 }, () => orders.decrement('s1', 1, { waitMs: 5000 })),
      ...Array.from({ length: 10 }, () => support.decrement('s1', 1, { waitMs: 5000 })),
      ...Array.from({ length: 10 }, () => admin.increment('s1', 1)),
    ])
    const failed = results.flatMap((x) => (x.status === 'rejected' ? [(x.reason as { code?: string }).code] : []))
    expect(failed).to.deep.equal([])
    await syncAll(r, 3)
    expect(await values(r)).to.deep.equal([50, 50, 50]) // 100 + 10 − 40 − 10 − 10
    const inspected = await admin.inspect('s1')
    expect(Object.values(inspected.rights).every((n) => n >= 0)).to.equal(true)
  })

  it('probe: back-to-back signed writes arrive by gossip alone (no anti-entropy round), in order', async () => {
    const { r } = await setUp()
    const admin = r[ADMIN]!.counter('stock')
    for (let i = 0; i < 30; i++) await admin.decrement('s1', 1)
    await Promise.all(Array.from({ length: 20 }, () => admin.decrement('s1', 1)))
    for (const n of [ORDERS, SUPPORT]) await waitFor(async () => (await r[n]!.counter('stock').value('s1')) === 50, `${n} sees 50 by gossip`, 5000)
  })

  it('probe: partitioned spending converges after heal; each side only spends its rights', async () => {
    const { hub, r } = await setUp()
    await r[ADMIN]!.counter('stock').transfer('s1', ORDERS, 30)
    await r[ADMIN]!.counter('stock').transfer('s1', SUPPORT, 30)
    await syncAll(r)
    hub.partition([ADMIN], [ORDERS])
    hub.partition([SUPPORT], [ORDERS])
    hub.partition([ADMIN], [SUPPORT])
    await r[ADMIN]!.counter('stock').decrement('s1', 40)
    await r[ORDERS]!.counter('stock').decrement('s1', 30)
    await r[SUPPORT]!.counter('stock').decrement('s1', 25)
    expect(await codeOf(r[ORDERS]!.counter('stock').decrement('s1', 1))).to.equal('ERR_INSUFFICIENT_RIGHTS')
    hub.heal()
    await syncAll(r, 3)
    expect(await values(r)).to.deep.equal([5, 5, 5])
  })

  it('probe: a restart (classic-level) keeps versions going; the restarted replica signs on and the others accept', async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const { hub, r } = await trustCluster(keys, [ORDERS, SUPPORT], replicas)
      const openAdmin = () => diskMember(keys, dir, ADMIN, hub)
      let admin = await openAdmin()
      r[ADMIN] = admin
      await admin.policy.set(POLICY)
      await waitFor(() => r[ORDERS]!.policy.get() !== undefined && r[SUPPORT]!.policy.get() !== undefined, 'adopted')
      await admin.counter('stock').increment('s1', 100)
      await admin.counter('stock').decrement('s1', 10)
      await admin.close()
      admin = await openAdmin()
      replicas.push(admin)
      r[ADMIN] = admin
      expect(await admin.counter('stock').decrement('s1', 5)).to.equal(85)
      expect(rowNames(await admin.collection<State>('stock').get('s1'))).to.deep.equal([`${ADMIN}|3`])
      await syncAll(r, 2)
      expect(await values(r)).to.deep.equal([85, 85, 85])
    } finally {
      await cleanup()
    }
  })

  it("probe: garbage on a holder's far-future key, a number on its next key, a '__proto__' recipient: counted nowhere, cleared by the holder's next write, no crash", async () => {
    const { r } = await setUp()
    await r[ORDERS]!.collection<State>('stock').update('s1', (s) => {
      putRow(s, ADMIN, 9_007_199_254_740_991, 'garbage.AAAA')
      putRow(s, ADMIN, 2, 42)
      putRow(s, ORDERS, 1, row(ORDERS, ORDERS, 's1', { version: 1, inc: 3, out: { ['__proto__']: 1, constructor: 1 } }))
    })
    await refusedBy(r, ADMIN)
    await syncAll(r)
    // Refused whole by the others; the forger's own replica counts its own valid row and nothing else.
    for (const n of ALL) {
      const seen = await r[n]!.counter('stock').inspect('s1')
      expect(seen.value, n).to.equal(n === ORDERS ? 103 : 100)
      expect(seen.rights[ADMIN], n).to.equal(100)
      expect(({} as Record<string, unknown>).polluted).to.equal(undefined)
    }
    await r[ADMIN]!.counter('stock').decrement('s1', 1)
    await syncAll(r)
    expect(await values(r, 's1', [ADMIN, SUPPORT])).to.deep.equal([99, 99])
    expect(rowNames(await r[SUPPORT]!.collection<State>('stock').get('s1'))).to.deep.equal([`${ADMIN}|2`])
  })

  it('probe: a rights request (decrement with waitMs) brings rights from the holder; a holder never gives all it has', async () => {
    const { r } = await setUp()
    expect(await r[ORDERS]!.counter('stock').decrement('s1', 20, { waitMs: 5000 })).to.equal(80)
    await syncAll(r)
    expect(await r[ADMIN]!.counter('stock').rights('s1')).to.be.above(0)
    expect(await values(r)).to.deep.equal([80, 80, 80])
  })

  it("probe: a row signed for another collection or namespace does not count; a row under a holder with '|' in its name is not read as that holder's", async () => {
    const { r } = await setUp()
    const other = row(ADMIN, ADMIN, 's1', { version: 5, inc: 1000 }, 'stock2')
    await r[ORDERS]!.collection<State>('stock').update('s1', (s) => {
      putRow(s, ADMIN, 5, other)
      putRow(s, `${ADMIN}|x`, 7, row(ADMIN, `${ADMIN}|x`, 's1', { version: 7, inc: 1000 }))
    })
    await refusedBy(r, ADMIN)
    await syncAll(r)
    expect(await values(r)).to.deep.equal([100, 100, 100])
  })
})
