// Review s32: attacks on staleHeld (head-judge.ts): a held head is deleted in the batch of the
// change after which its actor's newest head names a change the document holds. Each probe checks
// that no held head is deleted while still needed — the stored newest head of its actor names a
// change the document does not hold (still waiting) — and that nothing but the right key goes.
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { encodeHeaded } from '../src/replication/heads.js'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { heldHeadKey } from '../src/trust/signed-heads.js'
import { boundActor } from '../src/trust/actor-binding.js'
import { concatBytes, toHex } from '../src/hash.js'
import type { Replica } from '../src/index.js'
import { ADMIN, ORDERS, SUPPORT, trustSuite } from './trust-helpers.js'
import { c1AppliedC3WaitingAtSupport, headOf, notes, sendTo, storeOf, holds, threeApart } from './heads-helpers.js'
import { ctxOf, forkChange, reloadEntity, savedDoc, type State } from './counter-helpers.js'

/** Once the writes of 'notes'/n1 in flight at `replica` landed. */
async function landed(replica: Replica): Promise<void> {
  const ctx = ctxOf(replica)
  const entity = await ctx.entities.acquire(ctx.entities.collections.get('notes')!, 'n1')
  const { lastWrite, headsWrite } = entity
  ctx.entities.release(entity)
  await lastWrite
  if (headsWrite !== undefined) await headsWrite
}

/** Every meta record of a replica's store, by key (hex of the bytes). */
async function metasOf(replica: Replica): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for await (const [key, bytes] of storeOf(replica).metas!('')) out.set(key, toHex(bytes))
  return out
}

/**
 * The property staleHeld must keep: for each actor, once the writes landed, a stored newest head
 * naming a change the document does not hold has a held head beside it naming one it holds.
 */
async function heldWhereNeeded(replica: Replica, actors: string[]): Promise<void> {
  const ctx = ctxOf(replica)
  await landed(replica)
  const stored = await ctx.heads!.stored('notes', 'n1', actors)
  const held = await ctx.heads!.storedHeld('notes', 'n1', actors)
  for (const actor of actors) {
    const newest = stored.get(actor)
    if (newest === undefined || (await holds(replica, newest.leaf.hash))) continue
    const beside = held.get(actor)
    expect(beside, `a held head of ${actor.slice(0, 8)}… (its newest, seq ${newest.leaf.seq}, waits)`).to.not.equal(undefined)
    expect(await holds(replica, beside!.leaf.hash), 'the held head names a change held').to.equal(true)
  }
}

describe('review s32: stale held heads (staleHeld)', function () {
  this.timeout(120_000)
  const { keys, replicas } = trustSuite()

  /** A change of `actor` on base with `changes` applied (a saved document's heads as its deps). */
  const on = (base: Uint8Array, changes: Uint8Array[]): Uint8Array => A.save(A.applyChanges(A.load<State>(base), changes)[0])
  /** `made` with an extra dependency on a change that does not exist (it waits for good). */
  const phantom = (change: Uint8Array): Uint8Array => {
    const { hash: _hash, ...made } = A.decodeChange(change)
    return A.encodeChange({ ...made, deps: [...made.deps, 'ab'.repeat(32)].sort() })
  }

  it('holds: c2 releases c3 — exactly the held key of X is deleted, no other meta record changes', async () => {
    const { r, x, c2 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
    await landed(r[SUPPORT]!)
    const before = await metasOf(r[SUPPORT]!)
    expect(await sendTo(r[SUPPORT]!, ORDERS, encodeHeaded(c2, [await headOf(keys, c2, ORDERS)]))).to.equal('applied')
    await landed(r[SUPPORT]!)
    const after = await metasOf(r[SUPPORT]!)
    const gone = [...before.keys()].filter((k) => !after.has(k))
    expect(gone).to.deep.equal([heldHeadKey('notes', 'n1', x)])
    for (const [k, v] of before) if (k !== heldHeadKey('notes', 'n1', x) && !k.startsWith(`head/notes\u0000n1\u0000${x}`)) expect(after.get(k), k).to.equal(v)
  })

  it('holds: two actors waiting (X for Y’s c2, Z for its own z2): c2 deletes X’s held head only; z2 then deletes Z’s', async () => {
    const { r, base, x, c1, c2 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
    const z = toHex(boundActor(ADMIN, new Uint8Array(16).fill(3)))
    const z1 = forkChange(base, z, (d) => void (d.tag = 'z1'))
    const z2 = forkChange(on(base, [z1]), z, (d) => void (d.tag = 'z2'))
    const z3 = forkChange(on(base, [z1, z2]), z, (d) => void (d.tag = 'z3'))
    for (const change of [z1, z3]) expect(await sendTo(r[SUPPORT]!, ADMIN, encodeHeaded(change, [await headOf(keys, change)]))).to.equal('applied')
    const ctx = ctxOf(r[SUPPORT]!)
    await heldWhereNeeded(r[SUPPORT]!, [x, z])
    expect((await ctx.heads!.storedHeld('notes', 'n1', [z])).get(z)?.leaf.hash).to.equal(A.decodeChange(z1).hash)
    expect(await sendTo(r[SUPPORT]!, ORDERS, encodeHeaded(c2, [await headOf(keys, c2, ORDERS)]))).to.equal('applied')
    await heldWhereNeeded(r[SUPPORT]!, [x, z])
    expect((await ctx.heads!.storedHeld('notes', 'n1', [x])).has(x), 'X held').to.equal(false)
    expect((await ctx.heads!.storedHeld('notes', 'n1', [z])).has(z), 'Z held').to.equal(true)
    expect(await sendTo(r[SUPPORT]!, ADMIN, encodeHeaded(z2, [await headOf(keys, z2)]))).to.equal('applied')
    await heldWhereNeeded(r[SUPPORT]!, [x, z])
    expect((await ctx.heads!.storedHeld('notes', 'n1', [z])).has(z), 'Z held after z2').to.equal(false)
    expect(await holds(r[SUPPORT]!, A.decodeChange(c1).hash)).to.equal(true)
  })

  it('holds: c5 while c3 waits is not taken (a second waiting change of X); c2 releases c3 (the held head goes), then c5 waits (for c4, with c3’s head held beside it), and c4 releases it', async () => {
    const { r, base, x, c1, c2, c3 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
    const c4 = forkChange(on(base, [c1, c2, c3]), x, (d) => void (d.text = 'four'))
    const c5 = forkChange(on(base, [c1, c2, c3, c4]), x, (d) => void (d.text = 'five'))
    expect(await sendTo(r[SUPPORT]!, ADMIN, encodeHeaded(c5, [await headOf(keys, c5)]))).to.equal('later')
    await heldWhereNeeded(r[SUPPORT]!, [x])
    expect(await sendTo(r[SUPPORT]!, ORDERS, encodeHeaded(c2, [await headOf(keys, c2, ORDERS)]))).to.equal('applied')
    expect(await holds(r[SUPPORT]!, A.decodeChange(c3).hash), 'c3 released').to.equal(true)
    await heldWhereNeeded(r[SUPPORT]!, [x])
    expect((await ctxOf(r[SUPPORT]!).heads!.storedHeld('notes', 'n1', [x])).has(x), 'no held head once c3 applied').to.equal(false)
    expect(await sendTo(r[SUPPORT]!, ADMIN, encodeHeaded(c5, [await headOf(keys, c5)]))).to.equal('applied')
    await heldWhereNeeded(r[SUPPORT]!, [x])
    expect((await ctxOf(r[SUPPORT]!).heads!.storedHeld('notes', 'n1', [x])).get(x)?.leaf.hash, 'c3’s head held beside c5’s').to.equal(A.decodeChange(c3).hash)
    // c2 and c3 with c3's head again: c5 still waiting keeps the held head.
    expect(await sendTo(r[SUPPORT]!, ORDERS, encodeHeaded(concatBytes([c2, c3]), [await headOf(keys, c2, ORDERS), await headOf(keys, c3)]))).to.be.oneOf([
      'applied',
      'duplicate',
    ])
    await heldWhereNeeded(r[SUPPORT]!, [x])
    expect(await sendTo(r[SUPPORT]!, ADMIN, encodeHeaded(c4, [await headOf(keys, c4)]))).to.equal('applied')
    await heldWhereNeeded(r[SUPPORT]!, [x])
    expect((await ctxOf(r[SUPPORT]!).heads!.storedHeld('notes', 'n1', [x])).has(x), 'held once c5 applied').to.equal(false)
  })

  it('holds: HOLE 1b’s setup (m1; m2 waits for y1; m3, which waits for good, not taken until y1 released m2): a held head stands wherever the newest waits', async () => {
    const { r } = await threeApart(keys, replicas)
    const a = toHex(boundActor(ORDERS, new Uint8Array(16).fill(9)))
    const b = toHex(boundActor(ORDERS, new Uint8Array(16).fill(8)))
    const base = await savedDoc(r[SUPPORT]!, 'notes', 'n1')
    const m1 = forkChange(base, a, (d) => void (d.text = 'm1'))
    const y1 = forkChange(base, b, (d) => void (d.tag = 'y1'))
    const m2 = forkChange(on(base, [m1, y1]), a, (d) => void (d.text = 'm2'))
    const m3 = phantom(forkChange(on(base, [m1, y1, m2]), a, (d) => void (d.tag = 'm3')))
    // m3 waits while m2 does: not taken (a second waiting change of a).
    for (const [change, expected] of [
      [m1, 'applied'],
      [m2, 'applied'],
      [m3, 'later'],
      [y1, 'applied'],
      [m3, 'applied'],
    ] as const) {
      expect(await sendTo(r[SUPPORT]!, ORDERS, encodeHeaded(change, [await headOf(keys, change, ORDERS)]))).to.equal(expected)
      await heldWhereNeeded(r[SUPPORT]!, [a, b])
    }
    expect(await holds(r[SUPPORT]!, A.decodeChange(m2).hash), 'm2 released').to.equal(true)
  })

  it('holds: a whole document that brings c2 releases c3 (the held head goes); one that also brings a new X change that waits (left out, rebuilt) too', async () => {
    for (const extra of [false, true]) {
      const { r, base, x, c1, c2, c3 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
      const c4 = phantom(forkChange(on(base, [c1, c2, c3]), x, (d) => void (d.text = 'four')))
      const doc = A.applyChanges(A.load<State>(base), extra ? [c1, c2, c3, c4] : [c1, c2, c3])[0]
      const heads = [await headOf(keys, c2, ORDERS), await headOf(keys, extra ? c4 : c3), await headOf(keys, c3)]
      const got = await sendTo(r[SUPPORT]!, ORDERS, encodeHeaded(A.save(doc), heads))
      expect(got, `extra ${extra}`).to.equal('applied')
      expect(await holds(r[SUPPORT]!, A.decodeChange(c3).hash), 'c3 released').to.equal(true)
      await heldWhereNeeded(r[SUPPORT]!, [x])
      expect((await ctxOf(r[SUPPORT]!).heads!.storedHeld('notes', 'n1', [x])).has(x), `held, extra ${extra}`).to.equal(false)
      await Promise.all(replicas.splice(0).map((rep) => rep.close().catch(() => undefined)))
    }
  })

  it('holds: a whole document that holds c3 and c4 of X queued but not c2 (c3 still waits): the held head is not deleted', async () => {
    const { r, base, x, c1, c2, c3 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
    const c4 = forkChange(on(base, [c1, c2, c3]), x, (d) => void (d.text = 'four'))
    // A peer holding c1 and its own queue c3, c4 (c2 missing there too): its document whole.
    const doc = A.applyChanges(A.load<State>(base), [c1, c3, c4])[0]
    const got = await sendTo(r[SUPPORT]!, ADMIN, encodeHeaded(A.save(doc), [await headOf(keys, c4), await headOf(keys, c1)]))
    expect(got).to.be.oneOf(['applied', 'later', 'duplicate'])
    await heldWhereNeeded(r[SUPPORT]!, [x])
  })

  it('holds: the entity reloaded from the store between (its queue with it), then c2: the held head goes, and only once c3 is held', async () => {
    const { r, x, c2, c3 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
    await landed(r[SUPPORT]!)
    await reloadEntity(r[SUPPORT]!, 'notes', 'n1')
    await heldWhereNeeded(r[SUPPORT]!, [x])
    expect(await sendTo(r[SUPPORT]!, ORDERS, encodeHeaded(c2, [await headOf(keys, c2, ORDERS)]))).to.equal('applied')
    expect(await holds(r[SUPPORT]!, A.decodeChange(c3).hash)).to.equal(true)
    await heldWhereNeeded(r[SUPPORT]!, [x])
    expect((await ctxOf(r[SUPPORT]!).heads!.storedHeld('notes', 'n1', [x])).has(x)).to.equal(false)
  })

  it('holds: deltas in flight together (c2 releasing c3, c5 of X queued behind a missing c4, local writes): the held head is there whenever X’s newest waits', async () => {
    const { r, base, x, c1, c2, c3 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
    const c4 = forkChange(on(base, [c1, c2, c3]), x, (d) => void (d.text = 'four'))
    const c5 = forkChange(on(base, [c1, c2, c3, c4]), x, (d) => void (d.text = 'five'))
    const ctx = ctxOf(r[SUPPORT]!)
    const [h2, h5] = [await headOf(keys, c2, ORDERS), await headOf(keys, c5)]
    for (const order of [0, 1]) {
      const sends = [
        () => applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', encodeHeaded(c2, [h2])),
        () => applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', encodeHeaded(c5, [h5])),
      ]
      if (order === 1) sends.reverse()
      const writes = Array.from({ length: 5 }, (_, i) => notes(r[SUPPORT]!).put('n1', { text: `local ${order} ${i}` }))
      const got = await Promise.all(sends.map((s) => s()))
      await Promise.all(writes)
      expect(
        got.every((g) => g === 'applied' || g === 'duplicate' || g === 'later'),
        got.join(),
      ).to.equal(true)
      await heldWhereNeeded(r[SUPPORT]!, [x])
    }
  })
})
