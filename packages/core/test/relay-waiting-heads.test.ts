// The liveness gap of signed heads: a relay whose newest head of an actor is that of a change
// waiting in its document (c3, waiting for another actor's c2) kept serving what it applied of
// that actor (c1) with that head, which a peer lacking c1 cannot use — it answered 'later' every
// round until the relay's queue drained. The relay now keeps, beside it, the newest head whose
// change it holds, and sends both; a receiver takes either, each judged by the same rule.
// Then: what a forger can do with the second head (nothing more than before).
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import type { ReplicationContext } from '../src/replication/context.js'
import { decodeHeaded, encodeHeaded, SignedHeads } from '../src/replication/heads.js'
import { claimOf, HELD_SUFFIX } from '../src/trust/signed-heads.js'
import { wholeStateOf } from '../src/replication/durable.js'
import { boundActor } from '../src/trust/actor-binding.js'
import { concatBytes, toHex } from '../src/hash.js'
import { ADMIN, ORDERS, SUPPORT, trustSuite } from './trust-helpers.js'
import { c1AppliedC3WaitingAtSupport, headOf, headsCluster, headsOptionsOf, notes, sendTo, sentWhole, served, versionAt } from './heads-helpers.js'
import { ctxOf, forbidden, forkChange, type State } from './counter-helpers.js'

describe('signed heads: a relay whose newest head of an actor is of a change waiting there', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  it('serves the changes of that actor it applied: a peer lacking c1 takes it from the relay (was: later, every round)', async () => {
    const { r, ctx, c1, c3 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
    const delta = await served(ctx, ORDERS, await versionAt(ctxOf(r[ORDERS]!)))
    // c1 alone goes (c3 waits), with both of X's heads: c3's, and c1's, which the relay kept.
    const { delta: bare, heads } = decodeHeaded(delta)
    expect(A.decodeChange(bare).hash).to.equal(A.decodeChange(c1).hash)
    expect(heads.map((h) => claimOf(h).leaf.hash)).to.have.members([A.decodeChange(c3).hash, A.decodeChange(c1).hash])
    expect(await sendTo(r[ORDERS]!, SUPPORT, delta)).to.equal('applied')
    expect((await notes(r[ORDERS]!).get('n1'))?.text).to.equal('one')
    // ORDERS now relays c1 with a head it holds the change of.
    const x = A.decodeChange(c1).actor
    expect((await ctxOf(r[ORDERS]!).heads!.stored('notes', 'n1')).get(x)?.leaf.hash).to.equal(A.decodeChange(c1).hash)
    expect(forbidden(r[ORDERS]!, SUPPORT)).to.equal(0)
  })

  it('keeps c1’s head beside c3’s (its held head), stored in the batch that queued c3', async () => {
    const { ctx, x, c1, c3 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
    expect((await ctx.heads!.stored('notes', 'n1', [x])).get(x)?.leaf.hash).to.equal(A.decodeChange(c3).hash)
    expect((await ctx.heads!.storedHeld('notes', 'n1', [x])).get(x)?.leaf.hash).to.equal(A.decodeChange(c1).hash)
    // Not read as a head of its own (an actor named '<x> NUL held') by a scan of the entity's heads.
    expect([...(await ctx.heads!.stored('notes', 'n1')).keys()]).to.not.include(`${x}\u0000held`)
  })

  it('serves it through a sync round too', async () => {
    const { hub, r } = await c1AppliedC3WaitingAtSupport(keys, replicas)
    hub.heal()
    hub.partition([ADMIN], [ORDERS, SUPPORT])
    await r[ORDERS]!.sync()
    expect((await notes(r[ORDERS]!).get('n1'))?.text).to.equal('one')
    expect(forbidden(r[ORDERS]!, SUPPORT)).to.equal(0)
  })

  it('serves its document whole (the queue in it): the peer takes c1, and the waiting c3 is not taken in its place', async () => {
    const { r, ctx } = await c1AppliedC3WaitingAtSupport(keys, replicas)
    const col = ctx.entities.collections.get('notes')!
    const entity = await ctx.entities.acquire(col, 'n1')
    let saved: Uint8Array
    try {
      saved = A.save(entity.doc as A.Doc<State>)
    } finally {
      ctx.entities.release(entity)
    }
    expect(await sendTo(r[ORDERS]!, SUPPORT, await sentWhole(ctx, ORDERS, saved))).to.equal('applied')
    expect((await notes(r[ORDERS]!).get('n1'))?.text).to.equal('one')
    expect(forbidden(r[ORDERS]!, SUPPORT)).to.equal(0)
  })

  it('serves all it holds of the entity (a range answer from memory: what it applied): the peer takes c1', async () => {
    const { r, ctx } = await c1AppliedC3WaitingAtSupport(keys, replicas)
    const whole = (await wholeStateOf(ctx.entities, ctx.entities.collections.get('notes')!, 'n1'))!
    expect(await sendTo(r[ORDERS]!, SUPPORT, await sentWhole(ctx, ORDERS, whole))).to.equal('applied')
    expect((await notes(r[ORDERS]!).get('n1'))?.text).to.equal('one')
  })

  it('serves its stored bytes whole (a range answer from disk: c3 in them): the peer takes c1, and c3 waits there too, vouched for by its own head', async () => {
    const { r, ctx, c2 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
    const col = ctx.entities.collections.get('notes')!
    const stored = (await ctx.entities.readStored(col, 'n1'))!
    const whole = col.backend.mergeDeltas([...(stored.snapshot === undefined ? [] : [stored.snapshot]), ...stored.deltas])
    expect(await sendTo(r[ORDERS]!, SUPPORT, await sentWhole(ctx, ORDERS, whole))).to.equal('applied')
    expect((await notes(r[ORDERS]!).get('n1'))?.text).to.equal('one')
    // c2 comes (ORDERS' own actor, with its head): c3 applies.
    expect(await sendTo(r[ORDERS]!, ORDERS, encodeHeaded(c2, [await headOf(keys, c2, ORDERS)]))).to.equal('applied')
    expect((await notes(r[ORDERS]!).get('n1'))?.text).to.equal('three')
  })

  it('once c2 releases c3 at the relay, it serves c1 to c3 with c3’s head', async () => {
    const { r, ctx, c2 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
    expect(await sendTo(r[SUPPORT]!, ORDERS, encodeHeaded(c2, [await headOf(keys, c2, ORDERS)]))).to.equal('applied')
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.equal('three')
    const delta = await served(ctx, ORDERS, await versionAt(ctxOf(r[ORDERS]!)))
    expect(await sendTo(r[ORDERS]!, SUPPORT, delta)).to.equal('applied')
    expect((await notes(r[ORDERS]!).get('n1'))?.text).to.equal('three')
  })

  it('once c2 releases c3 at the relay, its held head (c1’s) is deleted in that batch: a whole send carries c3’s head alone', async () => {
    const { r, ctx, x, c2, c3 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
    expect((await ctx.heads!.storedHeld('notes', 'n1', [x])).has(x), 'held head before').to.equal(true)
    expect(await sendTo(r[SUPPORT]!, ORDERS, encodeHeaded(c2, [await headOf(keys, c2, ORDERS)]))).to.equal('applied')
    expect((await ctx.heads!.storedHeld('notes', 'n1', [x])).has(x), 'held head after').to.equal(false)
    expect((await ctx.heads!.stored('notes', 'n1', [x])).get(x)?.leaf.hash).to.equal(A.decodeChange(c3).hash)
    // A whole send of the stored bytes carries X's head once now: c3's.
    const col = ctx.entities.collections.get('notes')!
    const stored = (await ctx.entities.readStored(col, 'n1'))!
    const whole = await sentWhole(ctx, ORDERS, col.backend.mergeDeltas([...(stored.snapshot === undefined ? [] : [stored.snapshot]), ...stored.deltas]))
    const xHeads = decodeHeaded(whole).heads.filter((h) => claimOf(h).leaf.actor === x)
    expect(xHeads.map((h) => claimOf(h).leaf.hash)).to.deep.equal([A.decodeChange(c3).hash])
  })

  describe('a forger holding both heads (c3’s and c1’s) gets nothing more in', () => {
    /** X's heads as the relay sends them with a delta of X's changes: c3's (the newest) and c1's. */
    const bothHeads = async (c1: Uint8Array, c3: Uint8Array): Promise<Uint8Array[]> => [await headOf(keys, c3), await headOf(keys, c1)]

    it('a change forged at c3’s seq on top of c1, with c1: refused as forbidden, c1 with it', async () => {
      const { r, base, x, c1, c3 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
      const forged = forkChange(A.save(A.applyChanges(A.load<State>(base), [c1])[0]), x, (d) => void (d.text = 'forged'))
      expect(A.decodeChange(forged).seq).to.equal(2)
      const got = await sendTo(r[ORDERS]!, SUPPORT, encodeHeaded(concatBytes([c1, forged]), await bothHeads(c1, c3)))
      expect(got).to.equal('forbidden')
      expect(forbidden(r[ORDERS]!, SUPPORT)).to.equal(1)
      expect((await notes(r[ORDERS]!).get('n1'))?.text).to.equal('zero')
    })

    it('a change under another actor of X’s owner (no head of it), with c1: refused as forbidden', async () => {
      const { r, base, c1, c3 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
      const other = toHex(boundActor(ADMIN, new Uint8Array(16).fill(9)))
      const forged = forkChange(A.save(A.applyChanges(A.load<State>(base), [c1])[0]), other, (d) => void (d.text = 'forged'))
      const got = await sendTo(r[ORDERS]!, SUPPORT, encodeHeaded(concatBytes([c1, forged]), await bothHeads(c1, c3)))
      expect(got).to.equal('forbidden')
      expect((await notes(r[ORDERS]!).get('n1'))?.text).to.equal('zero')
    })

    it('a change forged under an actor of the receiver (ORDERS’ Y), with c1: refused as forbidden', async () => {
      const { r, base, y, c1, c3 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
      const forged = forkChange(A.save(A.applyChanges(A.load<State>(base), [c1])[0]), y, (d) => void (d.text = 'forged'))
      const got = await sendTo(r[ORDERS]!, SUPPORT, encodeHeaded(concatBytes([c1, forged]), await bothHeads(c1, c3)))
      expect(got).to.equal('forbidden')
      expect((await notes(r[ORDERS]!).get('n1'))?.text).to.equal('zero')
    })

    it('a change forged at c3’s seq on top of c1, sent to the relay itself (c3 waits there): refused as forbidden, the held head as it was', async () => {
      const { r, ctx, base, x, c1, c2, c3 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
      const forged = forkChange(A.save(A.applyChanges(A.load<State>(base), [c1])[0]), x, (d) => void (d.text = 'forged'))
      expect(await sendTo(r[SUPPORT]!, ORDERS, encodeHeaded(forged, await bothHeads(c1, c3)))).to.equal('forbidden')
      expect((await ctx.heads!.storedHeld('notes', 'n1', [x])).get(x)?.leaf.hash).to.equal(A.decodeChange(c1).hash)
      // The genuine c3 still takes its place once c2 comes.
      expect(await sendTo(r[SUPPORT]!, ORDERS, encodeHeaded(c2, [await headOf(keys, c2, ORDERS)]))).to.equal('applied')
      expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.equal('three')
    })

    it('a fork of c1 (X at seq 1) alone: not taken, and the genuine c1 still is afterwards', async () => {
      const { r, ctx, base, x, c1, c3 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
      const fork = forkChange(base, x, (d) => void (d.text = 'forged'))
      expect(A.decodeChange(fork).seq).to.equal(1)
      const got = await sendTo(r[ORDERS]!, SUPPORT, encodeHeaded(fork, await bothHeads(c1, c3)))
      expect(got).to.not.equal('applied')
      // With c1's head alone (nothing newer to wait for), it is counted as forbidden.
      expect(await sendTo(r[ORDERS]!, SUPPORT, encodeHeaded(fork, [await headOf(keys, c1)]))).to.equal('forbidden')
      expect((await notes(r[ORDERS]!).get('n1'))?.text).to.equal('zero')
      expect(await sendTo(r[ORDERS]!, SUPPORT, await served(ctx, ORDERS, await versionAt(ctxOf(r[ORDERS]!))))).to.equal('applied')
      expect((await notes(r[ORDERS]!).get('n1'))?.text).to.equal('one')
    })

    it('a fork of c1 riding with the genuine c1 and both heads: refused (Automerge holds one change per actor and seq)', async () => {
      const { r, base, x, c1, c3 } = await c1AppliedC3WaitingAtSupport(keys, replicas)
      const fork = forkChange(base, x, (d) => void (d.text = 'forged'))
      for (const delta of [concatBytes([c1, fork]), concatBytes([fork, c1])]) {
        const got = await sendTo(r[ORDERS]!, SUPPORT, encodeHeaded(delta, await bothHeads(c1, c3)))
        expect(got, 'the fork is refused').to.equal('forked')
      }
      expect((await notes(r[ORDERS]!).get('n1'))?.text).to.equal('zero')
    })
  })

  describe('held heads are read only in collections that may hold them', function () {
    /** A SignedHeads over `ctx`'s store, as a restart makes it (nothing scanned yet). */
    const restarted = (ctx: ReplicationContext): SignedHeads => new SignedHeads(headsOptionsOf(ctx))

    it('the scan at open finds held heads an earlier run stored: that collection may hold them, another not', async () => {
      const { ctx } = await c1AppliedC3WaitingAtSupport(keys, replicas)
      const heads = restarted(ctx)
      expect([heads.mayHoldHeld('notes'), heads.mayHoldHeld('other')], 'before the scan: all may').to.deep.equal([true, true])
      await heads.checkStored()
      expect([heads.mayHoldHeld('notes'), heads.mayHoldHeld('other')]).to.deep.equal([true, false])
      heads.storingHeld('other')
      expect(heads.mayHoldHeld('other'), 'once one is stored there').to.equal(true)
    })

    it('a whole send from a collection without held heads reads none (a point read per actor saved on every entity of a catch-up)', async () => {
      const { r } = await headsCluster(keys, replicas, [ADMIN, ORDERS])
      await notes(r[ADMIN]!).put('n1', { text: 'zero' })
      const ctx = ctxOf(r[ADMIN]!)
      await ctx.heads!.checkStored()
      const col = ctx.entities.collections.get('notes')!
      const bytes = (await wholeStateOf(ctx.entities, col, 'n1', ctx.limits.maxDeltaBytes))!
      const store = headsOptionsOf(ctx).store
      const getMeta = store.getMeta.bind(store)
      let heldReads = 0
      store.getMeta = (key: string) => {
        if (key.endsWith(HELD_SUFFIX)) heldReads++
        return getMeta(key)
      }
      try {
        const heads = await sentWhole(ctx, ORDERS, bytes)
        expect(decodeHeaded(heads).heads, "the entity's head goes").to.have.length(1)
      } finally {
        store.getMeta = getMeta
      }
      expect(heldReads).to.equal(0)
    })
  })
})
