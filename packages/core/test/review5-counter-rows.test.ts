/**
 * Fifth review of signed counter rows: "no holder's numbers go down" judged per change against
 * its own causal past (counter-rows.ts rowsVerdict `steps`, replication/row-guard.ts
 * causalSteps, BackendHistory.readAt/headsOf, apply.ts), after review-…review4-counter-rows.
 * Each "HOLE n: …" test names a hole of the code under review (each was watched fail there);
 * "probe: …" tests held. Fixed: HOLE 1 and 2 (take-backs the per-change rule let through: a
 * delete naming an op outside the change's past, now refused by the Automerge backend for every
 * collection, automerge/src/op-refs.ts; a value hidden in every view, every removed row must be
 * removed in view), 4 and 4b (intermediate rows checked one by one: judged per change, the first
 * forged one refuses), 6 (a delete naming an op the receiver lacks poisons its document: refused
 * by op-refs.ts too), 7 (cost: the fast
 * path missed most live pushes; the apply re-read every value), 5 (a late joiner fed a history
 * that leaves the entity absent: refused, review-provisional-overspend HOLE 5). Pending: HOLE 3
 * (the fallback past MAX_CAUSAL_STEPS changes, judged against the receiver's document).
 */
import { expect } from 'chai'
import type { Replica } from '../src/index.js'
import * as A from '@automerge/automerge'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { MAX_CAUSAL_STEPS } from '../src/replication/row-guard.js'
import { MAX_ROWS_PER_HOLDER, rowKey } from '../src/counter-rows.js'
import { putRow, rowKeyIn } from '../src/testing/index.js'
import { waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT } from './trust-helpers.js'
import { ALL, counterSuite, crafted, ctxOf, opIdAt, savedDoc, syncAll, values, type State } from './counter-helpers.js'

describe('review 5: counter take-backs judged per change (causal steps)', function () {
  this.timeout(180_000)
  const { setUp, row, twoEqualRows } = counterSuite()

  /** After a split: honest writes on both sides, ADMIN +1, SUPPORT +10, then rounds of anti-entropy. */
  async function honestAfter(r: Record<string, Replica>): Promise<number[]> {
    await syncAll(r, 4)
    await r[ADMIN]!.counter('stock').increment('s1', 1)
    await r[SUPPORT]!.counter('stock').increment('s1', 10)
    await syncAll(r, 4)
    await new Promise((res) => setTimeout(res, 300))
    await syncAll(r, 2)
    return values(r)
  }

  // ---------------------------------------------------------------------------------------------
  // Holes
  // ---------------------------------------------------------------------------------------------

  it("HOLE 1: a change's delete op may name (pred) a row its dependencies do not hold: Automerge takes it, the row is gone from every replica's document, but the value at its dependencies and with it both lack the row — so the per-change rule sees nothing go down. A member undoes ADMIN's decrement (deletes ADMIN's row v2, puts back its v1)", async () => {
    const { r } = await setUp()
    const base1 = await savedDoc(r[ORDERS]!, 'stock', 's1') // ADMIN's v1 (inc 100)
    await r[ADMIN]!.counter('stock').decrement('s1', 30) // ADMIN's v2 (inc 100, dec 30) replaces v1
    for (const n of ALL) await waitFor(async () => (await r[n]!.counter('stock').value('s1')) === 70, `${n} sees 70`)
    const doc2 = await savedDoc(r[ORDERS]!, 'stock', 's1')
    const k1 = rowKeyIn(A.load<State>(base1), ADMIN, 1)
    const v1 = String(A.load<State>(base1)[k1])
    const k2 = rowKeyIn(A.load<State>(doc2), ADMIN, 2)
    // On a fork at base1 (where v1 is, v2 is not): put v1 back (an ordinary op), then a delete of
    // v2 whose pred names v2's op — which this change's dependencies do not hold.
    const change = crafted(base1, '07'.repeat(16), [
      { action: 'set', obj: '_root', key: k1, value: v1, pred: [opIdAt(base1, k1)] },
      { action: 'del', obj: '_root', key: k2, pred: [opIdAt(doc2, k2)] },
    ])
    const results = []
    for (const n of [ADMIN, SUPPORT]) results.push(await applyRemoteDelta(ctxOf(r[n]!), ORDERS, 'stock', 'automerge', 's1', change))
    await syncAll(r, 2)
    const seen = await values(r)
    // Refused by the Automerge backend before the counter's rules see it: a change may name only ops of its own past (op-refs.ts).
    expect({ results, seen }, 'refused: it names an op outside its past').to.deep.equal({ results: ['invalidDelta', 'invalidDelta'], seen: [70, 70, 70] })
  })

  it("HOLE 2: a change with no dependencies (plain Automerge, no crafted op) that sets the backend's delete flag: the value before it and with it are both 'no entity', so no step takes anything down — but its flag wins over the creator's (same op counter, a higher actor id) and the counter is deleted on every replica: all its rows gone, its value back to min", async () => {
    const { r } = await setUp()
    await r[ADMIN]!.counter('stock').decrement('s1', 30)
    for (const n of ALL) await waitFor(async () => (await r[n]!.counter('stock').value('s1')) === 70, `${n} sees 70`)
    const flag = A.getLastLocalChange(A.change(A.init<State>({ actor: 'ff'.repeat(16) }), { time: 0 }, (d) => void (d['\u0000deleted'] = true)))!
    const results = []
    for (const n of [ADMIN, SUPPORT]) results.push(await applyRemoteDelta(ctxOf(r[n]!), ORDERS, 'stock', 'automerge', 's1', flag))
    await syncAll(r, 2)
    const seen = await values(r)
    expect({ results, seen }, 'refused: it takes every row down').to.deep.equal({ results: ['forbidden', 'forbidden'], seen: [70, 70, 70] })
  })
  // Not fixed: closing it means judging every change of a delta of any size against its own past
  // (one pass over the history rather than a view per change), or senders that never send a
  // counter more than MAX_CAUSAL_STEPS changes at once while receivers refuse larger deltas.
  it.skip(`HOLE 3: the fallback past MAX_CAUSAL_STEPS is the attacker's to choose: review4's pair of concurrent deletes, the second padded with ${MAX_CAUSAL_STEPS} empty changes, reaches the replica that took the first only as one delta of ${MAX_CAUSAL_STEPS + 1} changes (anti-entropy sends all it lacks), which is judged against its document and refused on every round: the cluster splits for good`, async () => {
    const { r } = await setUp()
    const { base, k2, drop1 } = await twoEqualRows(r)
    let padded = A.load<State>(base, { actor: '02'.repeat(16) })
    padded = A.change(padded, { time: 0 }, (d) => void delete d[k2])
    for (let i = 0; i < MAX_CAUSAL_STEPS; i++) padded = A.emptyChange(padded, { time: 0 })
    const drop2 = A.saveSince(padded, A.getHeads(A.load<State>(base)))
    expect(await applyRemoteDelta(ctxOf(r[ADMIN]!), ORDERS, 'stock', 'automerge', 's1', drop1)).to.equal('applied')
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'stock', 'automerge', 's1', drop2)).to.equal('applied')
    expect(await honestAfter(r), 'every replica the same value, with both honest increments').to.deep.equal([111, 111, 111])
  })
  /** Every signature check `name`'s counter guard makes from now on, counted. */
  function countVerifies(replica: Replica): { count: number } {
    const guard = ctxOf(replica).counterGuard('stock')!
    const verify = guard.signer.verify.bind(guard.signer)
    const seen = { count: 0 }
    ;(guard.signer as { verify: typeof verify }).verify = (peer, data, signature) => (seen.count++, verify(peer, data, signature))
    return seen
  }

  /** A delta on `base` of `pairs` pairs of changes, each adding `rows` forged rows (signed with ORDERS's key) of each member, then deleting them. */
  function addedThenDeleted(base: Uint8Array, pairs: number, rows: number, sign: (holder: string, version: number) => string): Uint8Array {
    let doc = A.load<State>(base, { actor: '05'.repeat(16) })
    let version = 100
    for (let p = 0; p < pairs; p++) {
      const forged = ALL.flatMap((holder) =>
        Array.from({ length: rows }, () => {
          const value = sign(holder, version++)
          return { key: rowKey(holder, version - 1, value), value }
        }),
      )
      doc = A.change(doc, { time: 0 }, (d) => {
        for (const f of forged) d[f.key] = new A.ImmutableString(f.value)
      })
      doc = A.change(doc, { time: 0 }, (d) => {
        for (const f of forged) delete d[f.key]
      })
    }
    return A.saveSince(doc, A.getHeads(A.load<State>(base)))
  }

  it(`HOLE 4: rows that only a delta's intermediate values hold (added by one of its changes, deleted by the next) are all signature-checked, one by one, and a forged one refuses nothing: ${MAX_CAUSAL_STEPS} changes adding ${MAX_ROWS_PER_HOLDER} forged rows of each member and deleting them make every receiver verify 384 signatures per delta (no cost to the sender: any bytes do), where a change carrying forged rows costs one verify`, async () => {
    const { r } = await setUp()
    const base = await savedDoc(r[ORDERS]!, 'stock', 's1')
    const delta = addedThenDeleted(base, MAX_CAUSAL_STEPS / 2, MAX_ROWS_PER_HOLDER, (holder, version) => row(ORDERS, holder, 's1', { version, inc: 1 }))
    const verifies = countVerifies(r[SUPPORT]!)
    const started = performance.now()
    const result = await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'stock', 'automerge', 's1', delta)
    const ms = Math.round(performance.now() - started)
    expect({ result, verifies: verifies.count }, `${ms} ms`).to.deep.equal({ result: 'forbidden', verifies: 1 })
  })
  // Fixed: a change (here: a delta, in the fallback) that writes a counter entity and leaves it absent is refused (review-provisional-overspend, HOLE 5).
  it(`HOLE 5: a replica that holds none of a counter id (a late joiner; here one cut off since the id was made) judges a delta of more than ${MAX_CAUSAL_STEPS} changes against nothing: ORDERS sends it the id's history with HOLE 2's delete flag, which it takes — the counter is deleted there, refused everywhere else, and the replica stays apart for good`, async () => {
    const { r, hub } = await setUp()
    hub.partition([SUPPORT], [ADMIN, ORDERS])
    for (let i = 0; i < MAX_CAUSAL_STEPS + 8; i++) await r[ADMIN]!.counter('stock').increment('s2', 1)
    await waitFor(async () => (await r[ORDERS]!.counter('stock').value('s2')) === MAX_CAUSAL_STEPS + 8, 'ORDERS sees s2')
    const history = A.load<State>(await savedDoc(r[ORDERS]!, 'stock', 's2'))
    const flag = A.getLastLocalChange(A.change(A.init<State>({ actor: 'ff'.repeat(16) }), { time: 0 }, (d) => void (d['\u0000deleted'] = true)))!
    const [poisoned] = A.applyChanges(history, [flag])
    // With ADMIN's signed heads, as ORDERS relays them (stored with the changes it took).
    const ctx = ctxOf(r[ORDERS]!)
    const headed = await ctx.heads!.outgoing(ctx.backends.get('automerge')!, 'stock', 's2', A.save(poisoned), 'all', SUPPORT)
    const result = await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'stock', 'automerge', 's2', headed)
    hub.heal()
    await syncAll(r, 4)
    await r[ADMIN]!.counter('stock').increment('s2', 1)
    await syncAll(r, 4)
    const seen = await values(r, 's2')
    expect({ result, seen }, 'SUPPORT took it (applied) and shows 0').to.deep.include({
      seen: [MAX_CAUSAL_STEPS + 9, MAX_CAUSAL_STEPS + 9, MAX_CAUSAL_STEPS + 9],
    })
  })
  // ---------------------------------------------------------------------------------------------
  // Probes
  // ---------------------------------------------------------------------------------------------

  it("probe: review4's pair of concurrent deletes relayed together in one delta to SUPPORT and one by one, in the other order, to ADMIN: every replica takes both and shows the same value", async () => {
    const { r } = await setUp()
    const { base, drop1, drop2 } = await twoEqualRows(r)
    const [both] = A.applyChanges(A.load<State>(base), [drop1, drop2])
    const together = A.saveSince(both, A.getHeads(A.load<State>(base)))
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'stock', 'automerge', 's1', together)).to.equal('applied')
    expect(await applyRemoteDelta(ctxOf(r[ADMIN]!), ORDERS, 'stock', 'automerge', 's1', drop2)).to.equal('applied')
    expect(await applyRemoteDelta(ctxOf(r[ADMIN]!), ORDERS, 'stock', 'automerge', 's1', drop1)).to.equal('applied')
    expect(await honestAfter(r)).to.deep.equal([111, 111, 111])
  })

  it('probe: the same pair applied at once on one replica (both judged ahead on the same document, on the fast path; the second re-judged at apply on a changed one, on the view path): both taken, as one by one', async () => {
    const { r } = await setUp()
    const { drop1, drop2 } = await twoEqualRows(r)
    const results = await Promise.all([drop1, drop2].map((d) => applyRemoteDelta(ctxOf(r[ADMIN]!), ORDERS, 'stock', 'automerge', 's1', d)))
    expect(results).to.deep.equal(['applied', 'applied'])
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'stock', 'automerge', 's1', drop2)).to.equal('applied')
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'stock', 'automerge', 's1', drop1)).to.equal('applied')
    expect(await honestAfter(r)).to.deep.equal([111, 111, 111])
  })

  it("HOLE 7 (cost): an honest live push on the receiver's heads leaves the fast path whenever its writer's previous change is no head (Automerge adds it to the change's dependencies; the fast path wanted them equal to the heads): ADMIN's +1 after ORDERS's write reads 2 values at other heads ahead and 2 again at apply; a delta of two concurrent changes reads its 3 values twice. Now: none for the push, 3 once (the apply reuses what was read ahead while the document has not moved)", async () => {
    const { r } = await setUp()
    const { base, drop1, drop2 } = await twoEqualRows(r)
    const [both] = A.applyChanges(A.load<State>(base), [drop1, drop2])
    const history = ctxOf(r[SUPPORT]!).backends.get('automerge')!.history!
    const readAt = history.readAt!.bind(history)
    let reads = 0
    ;(history as { readAt: typeof readAt }).readAt = (doc, heads) => (reads++, readAt(doc, heads))
    try {
      await r[ADMIN]!.counter('stock').increment('s1', 1)
      await waitFor(async () => (await r[SUPPORT]!.counter('stock').value('s1')) === 102, 'SUPPORT sees ADMIN +1')
      expect(reads, 'live push').to.equal(0)
      expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'stock', 'automerge', 's1', A.saveSince(both, A.getHeads(A.load<State>(base))))).to.equal(
        'applied',
      )
      expect(reads, 'two changes on an older document').to.equal(3)
      expect(await r[SUPPORT]!.counter('stock').value('s1')).to.equal(101)
    } finally {
      ;(history as { readAt: typeof readAt }).readAt = readAt
    }
  })

  it(`probe: HOLE 1's and HOLE 2's changes padded past MAX_CAUSAL_STEPS (${MAX_CAUSAL_STEPS} empty changes on top) fall back to the receiver's document, which refuses them too`, async () => {
    const { r } = await setUp()
    const base1 = await savedDoc(r[ORDERS]!, 'stock', 's1')
    await r[ADMIN]!.counter('stock').decrement('s1', 30)
    for (const n of ALL) await waitFor(async () => (await r[n]!.counter('stock').value('s1')) === 70, `${n} sees 70`)
    const doc2 = await savedDoc(r[ORDERS]!, 'stock', 's1')
    const k1 = rowKeyIn(A.load<State>(base1), ADMIN, 1)
    const k2 = rowKeyIn(A.load<State>(doc2), ADMIN, 2)
    const change = crafted(base1, '07'.repeat(16), [
      { action: 'set', obj: '_root', key: k1, value: String(A.load<State>(base1)[k1]), pred: [opIdAt(base1, k1)] },
      { action: 'del', obj: '_root', key: k2, pred: [opIdAt(doc2, k2)] },
    ])
    let undo = A.applyChanges(A.load<State>(doc2, { actor: '08'.repeat(16) }), [change])[0]
    for (let i = 0; i < MAX_CAUSAL_STEPS; i++) undo = A.emptyChange(undo, { time: 0 })
    let wipe = A.change(A.init<State>({ actor: 'ff'.repeat(16) }), { time: 0 }, (d) => void (d['\u0000deleted'] = true))
    for (let i = 0; i < MAX_CAUSAL_STEPS; i++) wipe = A.emptyChange(wipe, { time: 0 })
    // The undo names an op outside its past: the backend refuses it first (op-refs.ts).
    const deltas: [Uint8Array, string][] = [
      [A.saveSince(undo, A.getHeads(A.load<State>(doc2))), 'invalidDelta'],
      [A.save(wipe), 'forbidden'],
    ]
    for (const [delta, reason] of deltas) {
      for (const n of [ADMIN, SUPPORT]) expect(await applyRemoteDelta(ctxOf(r[n]!), ORDERS, 'stock', 'automerge', 's1', delta)).to.equal(reason)
    }
    expect(await values(r)).to.deep.equal([70, 70, 70])
  })

  it("HOLE 6: a change whose delete names (pred) an op the receiver does not hold yet — the next op of ADMIN's actor, which anyone can predict — is taken by a replica that lacks it (nothing visible goes; a lone change on its heads); once there, Automerge can never apply ADMIN's change that makes that op ('missing ops'): the replica stays apart for good, and ADMIN's later writes never reach it", async () => {
    const { r, hub } = await setUp()
    const base1 = await savedDoc(r[ORDERS]!, 'stock', 's1')
    hub.partition([SUPPORT], [ADMIN, ORDERS])
    await r[ADMIN]!.counter('stock').decrement('s1', 30)
    await waitFor(async () => (await r[ORDERS]!.counter('stock').value('s1')) === 70, 'ORDERS sees 70')
    const doc2 = await savedDoc(r[ORDERS]!, 'stock', 's1')
    const k2 = rowKeyIn(A.load<State>(doc2), ADMIN, 2)
    const change = crafted(base1, '07'.repeat(16), [{ action: 'del', obj: '_root', key: k2, pred: [opIdAt(doc2, k2)] }])
    const result = await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'stock', 'automerge', 's1', change)
    hub.heal()
    await syncAll(r, 4)
    await r[ADMIN]!.counter('stock').decrement('s1', 1)
    await syncAll(r, 4)
    const seen = await values(r)
    // Refused by the Automerge backend: a change may name only ops of its own past (op-refs.ts).
    expect({ result, seen }, 'refused; every replica 69').to.deep.equal({ result: 'invalidDelta', seen: [69, 69, 69] })
  })

  it("probe: a change that deletes the holder's highest row and one that puts it back, in one delta: the first takes the numbers down in its own past and refuses the delta, as it is refused alone; delete and re-put in one change is no take-back", async () => {
    const { r } = await setUp()
    const doc = await savedDoc(r[ORDERS]!, 'stock', 's1')
    const k1 = rowKeyIn(A.load<State>(doc), ADMIN, 1)
    const value = String(A.load<State>(doc)[k1])
    const del = crafted(doc, '09'.repeat(16), [{ action: 'del', obj: '_root', key: k1, pred: [opIdAt(doc, k1)] }])
    const [deleted] = A.applyChanges(A.load<State>(doc), [del])
    const put = crafted(A.save(deleted), '0a'.repeat(16), [{ action: 'set', obj: '_root', key: k1, value, pred: [] }])
    const [both] = A.applyChanges(deleted, [put])
    const same = crafted(doc, '0b'.repeat(16), [
      { action: 'del', obj: '_root', key: k1, pred: [opIdAt(doc, k1)] },
      { action: 'set', obj: '_root', key: k1, value, pred: [] },
    ])
    const at = (delta: Uint8Array) => applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'stock', 'automerge', 's1', delta)
    expect(await at(A.saveSince(both, A.getHeads(A.load<State>(doc))))).to.equal('forbidden')
    expect(await at(del)).to.equal('forbidden')
    expect(await at(same)).to.equal('applied')
    expect(await r[SUPPORT]!.counter('stock').value('s1')).to.equal(100)
  })

  it('probe: a change that waits for its sibling (its dependency) is taken later, alone or with it, alike', async () => {
    const { r } = await setUp()
    const base = await savedDoc(r[ORDERS]!, 'stock', 's1')
    let doc = A.load<State>(base, { actor: '0c'.repeat(16) })
    doc = A.change(doc, { time: 0 }, (d) => void putRow(d, ORDERS, 1, row(ORDERS, ORDERS, 's1', { version: 1, inc: 1 })))
    const first = A.getLastLocalChange(doc)!
    const k = rowKeyIn(doc, ORDERS, 1)
    doc = A.change(doc, { time: 0 }, (d) => {
      delete d[k]
      putRow(d, ORDERS, 2, row(ORDERS, ORDERS, 's1', { version: 2, inc: 2 }))
    })
    const second = A.getLastLocalChange(doc)!
    const at = (n: string, delta: Uint8Array) => applyRemoteDelta(ctxOf(r[n]!), ORDERS, 'stock', 'automerge', 's1', delta)
    expect(await at(ADMIN, second)).to.equal('later')
    expect(await at(ADMIN, first)).to.equal('applied')
    expect(await at(ADMIN, second)).to.equal('applied')
    expect(await at(SUPPORT, A.saveSince(doc, A.getHeads(A.load<State>(base))))).to.equal('applied')
    await syncAll(r, 2)
    await waitFor(async () => (await values(r)).every((v) => v === 102), 'every replica 102')
  })

  it('HOLE 4b: 2,000 forged rows of one holder that one change adds and the next deletes cost 2,000 verifies and are taken (now: refused with no verify, more than MAX_ROWS_PER_HOLDER in one change)', async () => {
    const { r } = await setUp()
    const base = await savedDoc(r[ORDERS]!, 'stock', 's1')
    const delta = addedThenDeleted(base, 1, 700, (holder, version) => row(ORDERS, holder, 's1', { version, inc: 1 }))
    const verifies = countVerifies(r[SUPPORT]!)
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'stock', 'automerge', 's1', delta)).to.equal('forbidden')
    expect(verifies.count).to.equal(0)
  })
})
