/**
 * Third review of signed counter rows (counter-rows.ts rowsVerdict, replication/row-guard.ts,
 * apply.ts, the local ERR_FORBIDDEN of collection.ts, counter.ts batching), after the fixes of
 * review-counter-rows.test.ts and review2-counter-rows.test.ts.
 * Each "HOLE n: …" test names a hole of the code under review (each was watched fail there);
 * "probe: …" tests held.
 */
import { expect } from 'chai'
import type { PolicyDocument } from '../src/index.js'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { putRow } from '../src/testing/index.js'
import { waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT } from './trust-helpers.js'
import { ALL, counterSuite, ctxOf, forkChange, savedDoc, STOCK_POLICY as POLICY, syncAll, values, type State } from './counter-helpers.js'

describe('review 3: signed counter rows', function () {
  this.timeout(120_000)
  const { cluster, setUp, row } = counterSuite()

  // ---------------------------------------------------------------------------------------------
  // Holes
  // ---------------------------------------------------------------------------------------------

  it("HOLE 1: a member equivocates — two rows of one version, each spending the same 20 rights (one decrements, one gives them to SUPPORT), sent to different replicas: each is 'ok' alone, the pair is 'rights < 0', so whichever arrives first stays and the other is refused there for good; the cluster splits on the value, and every honest change built on either row (SUPPORT spending the rights) is refused on the other side for ever", async () => {
    const { r } = await setUp()
    await r[ADMIN]!.counter('stock').transfer('s1', ORDERS, 20)
    for (const n of ALL) await waitFor(async () => (await r[n]!.counter('stock').rights('s1', ORDERS)) === 20, `${n} sees ORDERS hold 20`)
    const base = await savedDoc(r[ORDERS]!, 'stock', 's1')
    const sell = forkChange(
      base,
      '01'.repeat(16),
      (d) => void putRow(d, ORDERS, 1, row(ORDERS, ORDERS, 's1', { version: 1, dec: 20, received: { [ADMIN]: 20 } })),
    )
    const give = forkChange(
      base,
      '02'.repeat(16),
      (d) => void putRow(d, ORDERS, 1, row(ORDERS, ORDERS, 's1', { version: 1, out: { [SUPPORT]: 20 }, received: { [ADMIN]: 20 } })),
    )
    expect(await applyRemoteDelta(ctxOf(r[ADMIN]!), ORDERS, 'stock', 'automerge', 's1', sell)).to.equal('applied')
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'stock', 'automerge', 's1', give)).to.equal('applied')
    // SUPPORT, honest, spends the rights it was given.
    await r[SUPPORT]!.counter('stock').decrement('s1', 5)
    await syncAll(r, 4)
    await r[ADMIN]!.counter('stock').increment('s1', 1)
    await r[SUPPORT]!.counter('stock').increment('s1', 1)
    await syncAll(r, 4)
    const seen = await values(r, 's1', [ADMIN, SUPPORT])
    expect(seen[0], `values ADMIN ${seen[0]}, SUPPORT ${seen[1]}`).to.equal(seen[1])
    // Since the fix both rows are taken everywhere (rights are judged per row, from its receipts):
    // the equivocation shows alike on every replica, ORDERS 20 below 0 (it spent its 20 twice).
    expect(await r[ADMIN]!.counter('stock').rights('s1', ORDERS)).to.equal(-20)
  })
  it("HOLE 2: the rights ≥ 0 and conflicted-key rules judge the whole document, not what a change carries: a replica that took a forger's over-spending row while 'stock' was not yet declared a counter (policy v1; a relay) and then adopts the policy that declares it refuses every later honest change of the id for good (ADMIN's increments never arrive) and its own counter writes fail with ERR_FORBIDDEN for ever", async () => {
    const v1: PolicyDocument = { ...POLICY, collections: { stock: { read: ['*'], write: ['admin', 'orders', 'support'] } } }
    const { r } = await cluster(v1)
    await r[ADMIN]!.counter('stock').increment('s1', 100)
    for (const n of [ORDERS, SUPPORT]) await waitFor(async () => (await r[n]!.collection<State>('stock').get('s1')) !== undefined, `${n} holds s1`)
    // ORDERS (no counter opened: no guard there either) signs a row of its own spending 1000 it never held.
    await r[ORDERS]!.collection<State>('stock').update('s1', (s) => void putRow(s, ORDERS, 1, row(ORDERS, ORDERS, 's1', { version: 1, dec: 1000 })))
    await waitFor(async () => Object.keys((await r[SUPPORT]!.collection<State>('stock').get('s1')) ?? {}).length === 2, 'SUPPORT took it')
    // The admin declares the counter; everyone adopts.
    await r[ADMIN]!.policy.set(POLICY)
    await waitFor(() => r[SUPPORT]!.policy.get()?.collections.stock?.counter === true, 'SUPPORT adopts v2')
    await r[ADMIN]!.counter('stock').increment('s1', 7)
    let own: string | undefined
    await r[SUPPORT]!.counter('stock')
      .increment('s1', 1)
      .catch((err: { code?: string }) => void (own = err.code))
    await syncAll(r, 4)
    const admins = (await r[SUPPORT]!.counter('stock').inspect('s1')).rights[ADMIN]
    expect({ own, adminRightsAtSupport: admins }).to.deep.equal({ own: undefined, adminRightsAtSupport: 107 })
  })

  it("probe: the holder's own row value copied by a forger as a concurrent change in another Automerge representation (a text object), delivered to a partitioned replica before the holder's row, is not taken as a second value: the holder's change and later ones still arrive there", async () => {
    const { hub, r } = await setUp()
    const before = await savedDoc(r[ORDERS]!, 'stock', 's1')
    hub.partition([ADMIN, ORDERS], [SUPPORT])
    await r[ADMIN]!.counter('stock').decrement('s1', 1) // ADMIN's row 2
    await waitFor(async () => (await r[ORDERS]!.counter('stock').value('s1')) === 99, 'ORDERS sees 99')
    const now = (await r[ORDERS]!.collection<State>('stock').get('s1'))!
    const k2 = Object.keys(now).find((k) => k.includes(`${ADMIN}|2|`))!
    const copy = forkChange(before, '00'.repeat(16), (d) => {
      d[k2] = now[k2] // a text object: the same characters
    })
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'stock', 'automerge', 's1', copy)).to.equal('applied')
    hub.heal()
    await syncAll(r, 3)
    await r[ADMIN]!.counter('stock').decrement('s1', 1)
    await syncAll(r, 3)
    expect(await values(r, 's1', [ADMIN, SUPPORT])).to.deep.equal([98, 98])
  })

  // ---------------------------------------------------------------------------------------------
  // Probes
  // ---------------------------------------------------------------------------------------------

  it('probe: concurrent decrements on two holders (one batch with ops short of rights), transfers and a rights request converge with no ERR_FORBIDDEN; close() during a batch settles every queued operation', async () => {
    const { r } = await setUp()
    const admin = r[ADMIN]!.counter('stock')
    const support = r[SUPPORT]!.counter('stock')
    await admin.transfer('s1', SUPPORT, 10)
    await waitFor(async () => (await support.rights('s1')) === 10, 'SUPPORT holds 10')
    const codes: string[] = []
    const note = (p: Promise<unknown>) =>
      p.then(
        () => 'ok',
        (err: { code?: string }) => err.code ?? 'error',
      )
    const ops = [
      ...Array.from({ length: 15 }, () => note(support.decrement('s1', 1))),
      ...Array.from({ length: 15 }, () => note(admin.decrement('s1', 1))),
      note(admin.transfer('s1', SUPPORT, 5)),
      note(support.decrement('s1', 3, { waitMs: 2000 })),
    ]
    codes.push(...(await Promise.all(ops)))
    expect(codes.filter((c) => c !== 'ok' && c !== 'ERR_INSUFFICIENT_RIGHTS')).to.deep.equal([])
    await syncAll(r, 3)
    const seen = await values(r)
    expect(
      seen.every((v) => v === seen[0] && v >= 0),
      seen.join(','),
    ).to.equal(true)
    // close() while a batch is being written: every queued operation settles.
    const pending = Array.from({ length: 10 }, () => note(admin.increment('s1', 1)))
    const closing = r[ADMIN]!.close()
    const settled = await Promise.race([Promise.all(pending), new Promise<'hang'>((res) => setTimeout(() => res('hang'), 10_000))])
    await closing
    expect(settled).to.not.equal('hang')
  })
})
