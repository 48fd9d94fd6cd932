// Review of the rule that lets a delta's changes wait here (apply.ts, ancestorsOfHeads and
// withStored): a change may wait only if its own actor's signed head reaches it through the
// changes carried, and a whole document that releases waiting changes is judged with the heads
// stored when they came. Attacks on it, and what must keep holding.
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { encodeHeaded, headed as headedDelta } from '../src/replication/heads.js'
import { boundActor } from '../src/trust/actor-binding.js'
import { signHeads } from '../src/trust/signed-heads.js'
import { concatBytes, toHex } from '../src/hash.js'
import { memoryLevelStore } from '@convergent/level'
import { LoopbackHub, type Replica, type Store } from '../src/index.js'
import { nextTimerTurn, waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustMember, trustSuite } from './trust-helpers.js'
import { adminAheadByTwo, c3WaitingC5RefusedAtSupport, headOf as headOfChange, headsCluster, notes, NOTES_POLICY } from './heads-helpers.js'
import { ctxOf, savedDoc, type State } from './counter-helpers.js'

/** A memory store whose writes can be held back (memory runs ahead of the disk meanwhile) and let go in order. */
function holdableStore(): { store: Store; hold: () => void; release: () => void; held: () => number } {
  const inner = memoryLevelStore()
  let gate: Promise<void> | undefined
  let open: (() => void) | undefined
  let waiting = 0
  const store = new Proxy(inner, {
    get(target, key, receiver) {
      if (key === 'write') {
        return async (ops: Parameters<Store['write']>[0]) => {
          if (gate !== undefined) {
            waiting++
            await gate
            waiting--
          }
          return target.write(ops)
        }
      }
      const value = Reflect.get(target, key, receiver) as unknown
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    },
  })
  return {
    store,
    hold: () => void (gate = new Promise<void>((resolve) => (open = resolve))),
    release: () => {
      gate = undefined
      open?.()
    },
    held: () => waiting,
  }
}

describe('review: changes that wait for others (signed heads)', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  const cluster = (ids: string[]) => headsCluster(keys, replicas, ids)
  const headOf = (change: Uint8Array, signer = ADMIN): Promise<Uint8Array> => headOfChange(keys, change, signer)
  const headed = async (change: Uint8Array, signer = ADMIN) => encodeHeaded(change, [await headOf(change, signer)])

  it('a push that overtook the one before it keeps its newer head stored when the older one comes (no downgrade: the relay can still vouch for it)', async () => {
    const { hub, r } = await cluster([ADMIN, SUPPORT])
    const { c1, c2 } = await adminAheadByTwo(hub, r)
    const ctx = ctxOf(r[SUPPORT]!)
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c2))).to.equal('applied')
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c1))).to.equal('applied')
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.equal('three')
    const actor = A.decodeChange(c2).actor
    // SUPPORT holds c2: the head it stores (and relays) for ADMIN's actor must cover c2, not only c1.
    expect((await ctx.heads!.stored('notes', 'n1')).get(actor)?.leaf.seq).to.equal(A.decodeChange(c2).seq)
  })

  it('an honest relay whose stored head moved on while it sent (the delta up to c1, the head of c2) is not counted a forger: the delta waits for a round (later), and c2 with its head is taken', async () => {
    const { hub, r } = await cluster([ADMIN, ORDERS, SUPPORT])
    const { c1, c2 } = await adminAheadByTwo(hub, r)
    const ctx = ctxOf(r[SUPPORT]!)
    // ORDERS relays c1 with ADMIN's verified head of c2 (the one it stored by the time it read its heads).
    expect(await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', encodeHeaded(c1, [await headOf(c2)]))).to.equal('later')
    expect(r[SUPPORT]!.stats().peers[ORDERS]?.dropped.forbidden ?? 0).to.equal(0)
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.equal('one')
    expect(await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', encodeHeaded(concatBytes([c1, c2]), [await headOf(c2)]))).to.equal('applied')
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.equal('three')
  })

  it('a forged change never waits here by riding on a whole document while the entity already has a change waiting', async () => {
    const { hub, r } = await cluster([ADMIN, ORDERS, SUPPORT])
    const { base, c1, c2 } = await adminAheadByTwo(hub, r) // base: up to c0, as everyone holds it
    const adminActor = A.decodeChange(c1).actor
    const ctx = ctxOf(r[SUPPORT]!)
    // The genuine c2 overtook c1: it waits here, vouched for by its head.
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c2))).to.equal('applied')
    // ORDERS (a writer) forges c1's seq under ADMIN's actor, depending on a change of its own (o1) not sent yet …
    const ordersActor = toHex(boundActor(ORDERS, new Uint8Array(16).fill(7)))
    const withO1 = A.change(A.load<State>(base, { actor: ordersActor }), { time: 0 }, (d) => void (d.tag = 'o1'))
    const o1 = A.getLastLocalChange(withO1)!
    const forged = A.getLastLocalChange(A.change(A.load<State>(A.save(withO1), { actor: adminActor }), { time: 0 }, (d) => void (d.text = 'forged')))!
    expect(A.decodeChange(forged).seq).to.equal(A.decodeChange(c1).seq)
    // … and sends it after a whole document (no pre-judgement): it must not be left waiting here.
    const sent = await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', encodeHeaded(concatBytes([base, forged]), []))
    expect(sent).to.not.equal('applied')
    // Then o1, its own change with its own head: were the forgery waiting, it would apply now …
    expect(await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', await headed(o1, ORDERS))).to.equal('applied')
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.not.equal('forged')
    // … and the genuine c1 (same actor and seq) would be refused forever.
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c1))).to.equal('applied')
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.equal('three')
  })

  it('an honest relay’s whole document that applies but leaves a change waiting is not refused (the waiting change’s stored head is not the only head that counts)', async () => {
    const { hub, r } = await cluster([ADMIN, ORDERS, SUPPORT])
    await notes(r[ADMIN]!).put('n1', { text: 'one' })
    await waitFor(async () => (await notes(r[SUPPORT]!).get('n1')) !== undefined && (await notes(r[ORDERS]!).get('n1')) !== undefined, 'n1 everywhere')
    hub.partition([ADMIN, ORDERS], [SUPPORT])
    await notes(r[ADMIN]!).put('n1', { text: 'two' }) // c1
    await waitFor(async () => (await notes(r[ORDERS]!).get('n1'))?.text === 'two', 'c1 at ORDERS')
    await notes(r[ORDERS]!).put('n1', { text: 'two', tag: 'x' }) // x, after c1
    await waitFor(async () => (await notes(r[ADMIN]!).get('n1'))?.tag === 'x', 'x at ADMIN')
    await notes(r[ADMIN]!).put('n1', { text: 'three', tag: 'x' }) // c2, after x
    const all = A.getAllChanges(A.load<State>(await savedDoc(r[ADMIN]!, 'notes', 'n1')))
    const c2 = all.at(-1)!
    const adminActor = A.decodeChange(c2).actor
    const x = all.findLast((c) => A.decodeChange(c).actor !== adminActor)!
    const c1 = all.at(-2) === x ? all.at(-3)! : all.at(-2)!
    expect(A.decodeChange(c1).actor).to.equal(adminActor)
    expect(A.decodeChange(c2).deps).to.include(A.decodeChange(x).hash)
    const ctx = ctxOf(r[SUPPORT]!)
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c2))).to.equal('applied')
    // A relay that holds up to c1 (not x) sends the entity whole, with c1's head: c1 would apply and
    // c2 still wait for x. Not a forgery: at most 'later' (a whole document cannot show which waiting changes are new).
    const [upToC1] = A.applyChanges(
      A.init<State>(),
      all.filter((c) => c !== x && c !== c2),
    )
    expect(await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', encodeHeaded(A.save(upToC1), [await headOf(c1)]))).to.be.oneOf(['applied', 'later'])
    expect(r[SUPPORT]!.stats().peers[ORDERS]?.dropped.forbidden ?? 0).to.equal(0)
    // x comes (with its head; it waits for c1 if c1 is not here), then c1: c2 applies, and the head stored for
    // ADMIN's actor is still c2's (c1's older one does not replace it).
    expect(await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', await headed(x, ORDERS))).to.equal('applied')
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c1))).to.be.oneOf(['applied', 'duplicate'])
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.equal('three')
    expect((await ctx.heads!.stored('notes', 'n1')).get(adminActor)?.leaf.seq).to.equal(A.decodeChange(c2).seq)
  })

  it('the reachability walk costs time linear in the delta, not heads × changes (a writer’s own actors, each head over one long chain)', async () => {
    const { r } = await cluster([ADMIN, ORDERS, SUPPORT])
    await notes(r[ORDERS]!).put('n1', { text: 'one' })
    await waitFor(async () => (await notes(r[SUPPORT]!).get('n1')) !== undefined, 'n1 at SUPPORT')
    // One chain of N changes of an actor of ORDERS, its first waiting for a change never sent, and
    // K heads of other actors of ORDERS, each a change on top of the chain.
    const N = 20_000
    const K = 400
    const chainActor = toHex(boundActor(ORDERS, new Uint8Array(16).fill(1)))
    const chunks: Uint8Array[] = []
    let prev = 'ab'.repeat(32)
    for (let seq = 1; seq <= N; seq++) {
      const c = A.encodeChange({ actor: chainActor, author: null, seq, startOp: seq, time: 0, message: null, deps: [prev], ops: [] })
      prev = A.decodeChange(c).hash!
      chunks.push(c)
    }
    const leaves = []
    for (let k = 0; k < K; k++) {
      const actor = toHex(
        boundActor(
          ORDERS,
          new Uint8Array(16).fill(0).map((_, i) => (i === 0 ? k & 255 : i === 1 ? 1 + (k >> 8) : 9)),
        ),
      )
      const c = A.encodeChange({ actor, author: null, seq: 1, startOp: N + 1, time: 0, message: null, deps: [prev], ops: [] })
      chunks.push(c)
      leaves.push({ id: 'n1', actor, seq: 1, hash: A.decodeChange(c).hash })
    }
    const { proofs } = await signHeads({ namespace: 'default', collection: 'notes', author: ORDERS, time: 1 }, leaves, (data) =>
      keys.trust(ORDERS, [ADMIN]).sign(data),
    )
    const delta = encodeHeaded(concatBytes(chunks), proofs)
    const started = Date.now()
    const got = await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'notes', 'automerge', 'n1', delta)
    const ms = Date.now() - started
    expect(got).to.equal('later')
    expect(ms, `${ms} ms`).to.be.below(3_000)
  })

  // Found by the simulator (a cluster sweep, Automerge only, hot entities: v5-am-bighist seed 1):
  // a push that overtook the one before it waits here, its head stored in the batch of its
  // commit; a whole document that releases it, judged before that batch landed, read the
  // stored heads without it — and the honest relay was refused as a forger ('forbidden').
  it('a whole document that releases a waiting change whose head is still in a write in flight is not refused as a forgery', async () => {
    const hub = new LoopbackHub()
    const r: Record<string, Replica> = {}
    const disk = holdableStore()
    for (const id of [ADMIN, ORDERS, SUPPORT]) r[id] = await trustMember(keys, replicas, hub, id, id === SUPPORT ? { store: disk.store } : {})
    await r[ADMIN]!.policy.set(NOTES_POLICY)
    await waitFor(() => [ADMIN, ORDERS, SUPPORT].every((id) => r[id]!.policy.get() !== undefined), 'adopted')
    const { all, c1, c2 } = await adminAheadByTwo(hub, r)
    const ctx = ctxOf(r[SUPPORT]!)
    // c2 comes first (a push that overtook c1's): it waits, its head in a write held back.
    disk.hold()
    const pushed = applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c2))
    await waitFor(() => disk.held() > 0, "c2's commit is in memory, its write held")
    // A relay (ORDERS) sends the entity whole up to c1, with c1's head: c1 applies and releases c2.
    const [upToC1] = A.applyChanges(
      A.init<State>(),
      all.filter((c) => c !== c2),
    )
    const whole = applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', encodeHeaded(A.save(upToC1), [await headOf(c1)]))
    for (let i = 0; i < 5; i++) await nextTimerTurn()
    disk.release()
    expect(await pushed).to.equal('applied')
    expect(await whole).to.be.oneOf(['applied', 'later'])
    expect(r[SUPPORT]!.stats().peers[ORDERS]?.dropped.forbidden ?? 0, 'the honest relay was refused as a forger').to.equal(0)
    await waitFor(async () => (await notes(r[SUPPORT]!).get('n1'))?.text === 'three', 'c1 and c2 at SUPPORT')
  })

  // Found by the simulator (v5-am-bighist seed 4): a replica whose document holds changes queued
  // for a missing dependency sends it whole (Automerge's save holds the queue), but chose the
  // heads to send from the changes it has applied only — so a queued change of an actor with
  // none applied went without its head, and the receiver, which held the missing dependency,
  // applied it and refused the honest relay as a forger ('forbidden').
  it("a whole document that holds changes queued at its sender goes with their actors' heads (the receiver may apply them)", async () => {
    const { hub, r } = await cluster([ADMIN, ORDERS, SUPPORT])
    const { all, c1 } = await adminAheadByTwo(hub, r)
    await r[ORDERS]!.sync() // holds 'one' as SUPPORT does (from it, if gossip has not brought it)
    await waitFor(async () => (await notes(r[ORDERS]!).get('n1')) !== undefined, 'n1 at ORDERS')
    // ORDERS takes c1 and writes on top of it (o1, an actor of its own); SUPPORT, which lacks c1, queues o1.
    expect(await applyRemoteDelta(ctxOf(r[ORDERS]!), ADMIN, 'notes', 'automerge', 'n1', await headed(c1))).to.equal('applied')
    await notes(r[ORDERS]!).put('n1', { text: 'two', tag: 'o1' })
    const known = new Set(all.map((c) => A.decodeChange(c).hash))
    const o1 = A.getAllChanges(A.load<State>(await savedDoc(r[ORDERS]!, 'notes', 'n1'))).find((c) => !known.has(A.decodeChange(c).hash))!
    const sctx = ctxOf(r[SUPPORT]!)
    expect(await applyRemoteDelta(sctx, ORDERS, 'notes', 'automerge', 'n1', await headed(o1, ORDERS))).to.equal('applied')
    const col = sctx.entities.collections.get('notes')!
    const queued = await sctx.entities.acquire(col, 'n1')
    expect(col.backend.hasPending(queued.doc), 'o1 queued at SUPPORT').to.equal(true)
    sctx.entities.release(queued)
    // SUPPORT sends its document whole to ADMIN (which holds c1, not o1), as anti-entropy does past compactCheckBytes.
    const actx = ctxOf(r[ADMIN]!)
    const ae = await actx.entities.acquire(actx.entities.collections.get('notes')!, 'n1')
    const adminVersion = col.backend.version(ae.doc)
    actx.entities.release(ae)
    sctx.heads!.markReader(ADMIN)
    const e = await sctx.entities.acquire(col, 'n1')
    let sent: Uint8Array
    try {
      sent = await headedDelta(sctx, col, 'n1', A.save(e.doc as A.Doc<State>), ADMIN, { doc: e.doc, theirVersion: adminVersion })
    } finally {
      sctx.entities.release(e)
    }
    expect(await applyRemoteDelta(actx, SUPPORT, 'notes', 'automerge', 'n1', sent)).to.be.oneOf(['applied', 'later'])
    expect(r[ADMIN]!.stats().peers[SUPPORT]?.dropped.forbidden ?? 0, 'the honest relay was refused as a forger').to.equal(0)
  })

  // Found by the simulator (a cluster sweep, Automerge only: crash churn, hot entities,
  // compactAfter 4, lost requests; v8 seed 3): n1 held n0's changes 36 and 37 waiting, and
  // later ones up to 49 (38 missing), so the head stored for n0's actor was 49's — the newest
  // is kept. n3's whole document, holding up to 35 with 35's head, brought 34 and 35 and
  // released 36 and 37, while 49 still waited. Judged again as if the document had brought
  // them, 36 and 37 had no head the document holds (35 is older; 49 is not held), and the
  // honest relay was refused as a forger ('forbidden'). A change that waited here was judged
  // when it came (only one its actor's verified head reaches may wait), as a delta of changes
  // that releases it already takes it.
  it('a whole document that releases changes waiting here is not refused: the released ones were judged when they came; a second waiting change of their actor is not taken meanwhile, and comes once the first is held', async () => {
    // c3 overtook the pushes before it and waits here; c5 did too, and was not taken (a second
    // waiting change of the actor): the head stored for ADMIN's actor is c3's.
    const { r, ctx, all, actor, c2, c3, c4, c5 } = await c3WaitingC5RefusedAtSupport(keys, replicas)
    // A relay that holds up to c2 sends the entity whole with c2's head: c1 and c2 apply and
    // release c3 (which waited here).
    const [upToC2] = A.applyChanges(
      A.init<State>(),
      all.filter((c) => c !== c3 && c !== c4 && c !== c5),
    )
    const got = await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', encodeHeaded(A.save(upToC2), [await headOf(c2)]))
    expect(r[SUPPORT]!.stats().peers[ORDERS]?.dropped.forbidden ?? 0, 'the honest relay was refused as a forger').to.equal(0)
    expect(got).to.equal('applied')
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.equal('three')
    expect((await ctx.heads!.stored('notes', 'n1')).get(actor)?.leaf.seq).to.equal(A.decodeChange(c3).seq)
    // c5 again: it waits for c4 now (the actor's only waiting change); c4 comes and releases it.
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c5))).to.equal('applied')
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c4))).to.equal('applied')
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.equal('five')
  })

  it('a whole document that releases changes waiting here still has every change it brings itself judged: one under an actor of another member, without its head, is refused', async () => {
    const { hub, r } = await cluster([ADMIN, ORDERS, SUPPORT])
    await notes(r[ADMIN]!).put('n1', { text: 'zero' })
    await waitFor(async () => (await notes(r[SUPPORT]!).get('n1')) !== undefined, 'n1 at SUPPORT')
    hub.partition([ADMIN], [ORDERS, SUPPORT])
    for (const text of ['one', 'two', 'three']) await notes(r[ADMIN]!).put('n1', { text })
    const all = A.getAllChanges(A.load<State>(await savedDoc(r[ADMIN]!, 'notes', 'n1')))
    const [c2, c3] = all.slice(-2) as [Uint8Array, Uint8Array]
    const ctx = ctxOf(r[SUPPORT]!)
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c3))).to.equal('applied')
    // ORDERS sends the entity whole up to c2 (releasing c3, which waited here) with a change
    // forged under another actor of ADMIN's on top of c2, and only c2's head.
    const upToC2 = A.applyChanges(
      A.init<State>(),
      all.filter((c) => c !== c3),
    )[0]
    const otherActor = toHex(boundActor(ADMIN, new Uint8Array(16).fill(9)))
    const forgedDoc = A.change(A.load<State>(A.save(upToC2), { actor: otherActor }), { time: 0 }, (d) => void (d.text = 'forged'))
    const got = await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', encodeHeaded(A.save(forgedDoc), [await headOf(c2)]))
    expect(got).to.equal('forbidden')
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.not.equal('forged')
  })
})
