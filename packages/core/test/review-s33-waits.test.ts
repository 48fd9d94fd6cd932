// Review s33: attacks on waitsServably and applicableOf (head-judge.ts, 691fdcd): a delta that
// leaves changes waiting is taken only if the relay can then serve all it applies with a head of
// a change it holds, and an actor has at most one change waiting (the one its newest head names).
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { encodeHeaded } from '../src/replication/heads.js'
import { judgeHeadsAhead, type DeltaChange } from '../src/replication/head-judge.js'
import type { BackendHistory } from '../src/backend.js'
import type { VerifiedHead } from '../src/trust/signed-heads.js'
import { boundActor } from '../src/trust/actor-binding.js'
import { toHex } from '../src/hash.js'
import type { Replica } from '../src/index.js'
import { waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustMember, trustSuite } from './trust-helpers.js'
import { LoopbackHub } from '../src/index.js'
import { headOf, holds, notes, NOTES_POLICY, sendTo, onN1, roundsUntil, threeApart } from './heads-helpers.js'
import { ctxOf, forkChange, savedDoc, type State } from './counter-helpers.js'

describe('review s33: changes waiting (waitsServably, applicableOf)', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  const actorOf = (owner: string, fill: number): string => toHex(boundActor(owner, new Uint8Array(16).fill(fill)))
  const on = (base: Uint8Array, ...changes: Uint8Array[]): Uint8Array => A.save(A.applyChanges(A.load<State>(base), changes)[0])
  const pending = (replica: Replica): Promise<boolean> => onN1(ctxOf(replica), (backend, doc) => backend.hasPending(doc))

  // HOLE 1 (medium, for good once reached; not introduced by 691fdcd, the path around its fix):
  // waitsServably lets a member's change wait for good when its actor's earlier change is held
  // (m1 applied with its head, then m2 — waiting on a change that does not exist — with m2's):
  // the relay keeps m2's head as the newest and m1's as the held one, and sends both while its
  // queue is not empty (needed 'all'). Once the queue is emptied without m2 applying (a rebuilt
  // document: Backend.rebuilt, applyDelta's `alone`), the relay sent the heads of needed (a Map):
  // the stored newest only — m2's, naming a change no replica will ever hold — not the held one,
  // and a peer lacking m1 answered `later` to every delta of the entity from it, for good
  // (SUPPORT's own later write with them). The queue drop is made in memory here: a try to reach
  // it from the wire (12 refused queued changes of fresh actors released by one change) dropped
  // only the refused ones, so whether a member can reach it is not shown. Fixed (heads.ts
  // outgoingHeads): the held head goes beside the newest when it covers what the peer lacks.
  it('HOLE 1 (fixed): m2 waits for good, then the queue is dropped by a rebuild: the relay still serves m1 (and its own later write) to a peer lacking m1', async () => {
    const { hub, r } = await threeApart(keys, replicas)
    const support = r[SUPPORT]!
    const base = await savedDoc(support, 'notes', 'n1')
    const m = actorOf(ORDERS, 9)
    const m1 = forkChange(base, m, (d) => void (d.text = 'm1'))
    const { hash: _hash, ...made } = A.decodeChange(forkChange(on(base, m1), m, (d) => void (d.tag = 'm2')))
    const m2 = A.encodeChange({ ...made, deps: [...made.deps, 'ab'.repeat(32)].sort() })
    expect(await sendTo(support, ORDERS, encodeHeaded(m1, [await headOf(keys, m1, ORDERS)]))).to.equal('applied')
    expect(await sendTo(support, ORDERS, encodeHeaded(m2, [await headOf(keys, m2, ORDERS)]))).to.equal('applied')
    await waitFor(async () => (await ctxOf(support).heads!.storedHeld('notes', 'n1', [m])).has(m), 'm1’s head held beside m2’s')
    // The queue emptied without m2 applying, as Backend.rebuilt documents are (applyDelta's
    // `alone`: over the history-read budget, or past MAX_REBUILD_ROUNDS refused queued changes;
    // a first try here with 12 refused changes of fresh actors dropped only those). Made so in
    // memory here: the document SUPPORT serves from holds no queue, its stored heads are as they were.
    {
      const ctx = ctxOf(support)
      const col = ctx.entities.collections.get('notes')!
      const entity = await ctx.entities.acquire(col, 'n1')
      entity.doc = col.backend.withoutPending!(entity.doc)!
      ctx.entities.release(entity)
    }
    expect(await pending(support), 'the queue is gone (m2 with it)').to.equal(false)
    expect(await holds(support, A.decodeChange(m2).hash)).to.equal(false)
    await notes(support).put('n1', { text: 's1' })
    hub.heal()
    hub.partition([ORDERS], [ADMIN, SUPPORT])
    await waitFor(() => r[ADMIN]!.peers().includes(SUPPORT), 'ADMIN and SUPPORT healed')
    expect(await roundsUntil(r[ADMIN]!, support, 's1')).to.not.equal(undefined)
  })

  it('holds: a second change of an honest actor that waits is `later` while the first waits; the first released, it is taken', async () => {
    const { r } = await threeApart(keys, replicas)
    const support = r[SUPPORT]!
    const base = await savedDoc(support, 'notes', 'n1')
    const v1 = forkChange(base, actorOf(ADMIN, 5), (doc) => void (doc.tag = 'v1'))
    const w = actorOf(ORDERS, 6)
    const w1 = forkChange(on(base, v1), w, (doc) => void (doc.text = 'w1')) // waits for v1
    const w2 = forkChange(on(base, v1, w1), w, (doc) => void (doc.text = 'w2')) // in order after w1
    expect(await sendTo(support, ORDERS, encodeHeaded(w1, [await headOf(keys, w1, ORDERS)]))).to.equal('applied')
    expect(await sendTo(support, ORDERS, encodeHeaded(w2, [await headOf(keys, w2, ORDERS)])), 'w2 while w1 waits').to.equal('later')
    // A replay of w1 (a member planting it) changes nothing: it is held (queued) already.
    expect(await sendTo(support, ORDERS, encodeHeaded(v1, [await headOf(keys, v1, ADMIN)]))).to.equal('applied')
    expect(await holds(support, A.decodeChange(w1).hash), 'w1 released').to.equal(true)
    expect(await sendTo(support, ORDERS, encodeHeaded(w2, [await headOf(keys, w2, ORDERS)]))).to.equal('applied')
    expect((await notes(support).get('n1'))?.text).to.equal('w2')
  })

  // ---- cost: applicableOf on hostile deltas (judgeHeadsAhead, on a history stub) ---------------

  /** A stub history that holds `held`. */
  const stub = (held: Set<string>): BackendHistory => ({ holds: (_doc: unknown, hash: string) => held.has(hash) }) as unknown as BackendHistory
  const hex = (i: number): string => i.toString(16).padStart(64, '0')
  const headFor = (c: DeltaChange): VerifiedHead => ({ id: 'n1', actor: c.actor, seq: c.seq, hash: c.hash, author: ORDERS, record: new Uint8Array(0) })
  const from = { peer: ORDERS, headed: true, collection: 'notes', id: 'n1' }

  it('holds: a chain of 30,000 changes of one actor, each naming up to 20 others carried (the first one missing), is judged without recursion (no stack overflow) and found waiting', () => {
    const actor = actorOf(ORDERS, 1)
    const n = 30_000 // ~20 MB of dependency hashes: within maxDeltaBytes (32 MiB)
    const changes: DeltaChange[] = []
    for (let i = 0; i < n; i++) {
      const deps = i === 0 ? [hex(9_999_999)] : [hex(i - 1)]
      for (let k = 2; k <= 20 && i - k >= 0; k++) deps.push(hex(i - k))
      changes.push({ actor, seq: i + 1, hash: hex(i), deps })
    }
    const vouched = new Map([[actor, headFor(changes.at(-1)!)]])
    // Speed is the bench's, not a test's: measured ~1.2 s here (2 cores, busy), the parent commit's judge ~0.6 s.
    expect(judgeHeadsAhead(stub(new Set()), {}, changes, vouched, from, undefined)).to.equal('later') // 30,000 waiting changes of one actor
  })

  it('holds: duplicate hashes and a claimed dependency cycle do not loop; the cycle applies nothing', () => {
    const actor = actorOf(ORDERS, 1)
    const a = { actor, seq: 1, hash: hex(1), deps: [hex(2), hex(0), hex(7)] } as DeltaChange // hex(7): missing
    const b = { actor, seq: 2, hash: hex(2), deps: [hex(1), hex(1), hex(1)] } as DeltaChange
    const changes = [a, b, a, b, b]
    const vouched = new Map([[actor, headFor(b)]])
    expect(judgeHeadsAhead(stub(new Set([hex(0)])), {}, changes, vouched, from, undefined)).to.equal('later')
  })
})

describe('a push that waits starts a round with its sender (replicator.ts roundSoonWith)', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  // No scheduled rounds and none on connect: only the push that waits can start one. SUPPORT
  // misses ADMIN's push of 'one' (cut off; ORDERS takes it); healed, it gets one push of two
  // writes made in one tick, both waiting for 'one': two waiting changes of ADMIN's actor, so
  // 'later' — nothing taken (a push taken with a change left waiting starts a round too, but
  // none is taken here: push-gaps.test.ts) — and the round it starts brings all three.
  it('a push answered later brings what it lacked by a round with its sender, without a scheduled one', async () => {
    const hub = new LoopbackHub()
    const r: Record<string, Replica> = {}
    for (const id of [ADMIN, ORDERS, SUPPORT]) r[id] = await trustMember(keys, replicas, hub, id, { syncOnConnect: false })
    await r[ADMIN]!.policy.set(NOTES_POLICY)
    await waitFor(() => [ORDERS, SUPPORT].every((id) => r[id]!.policy.get() !== undefined), 'adopted')
    await notes(r[ADMIN]!).put('n1', { text: 'zero' })
    await waitFor(async () => (await notes(r[SUPPORT]!).get('n1'))?.text === 'zero' && (await notes(r[ORDERS]!).get('n1'))?.text === 'zero', 'zero everywhere')
    hub.partition([ADMIN, ORDERS], [SUPPORT])
    await waitFor(() => r[SUPPORT]!.peers().length === 0, 'cut off')
    await notes(r[ADMIN]!).put('n1', { text: 'one' })
    await waitFor(async () => (await notes(r[ORDERS]!).get('n1'))?.text === 'one', 'one pushed (at ORDERS)')
    hub.heal()
    await waitFor(() => r[SUPPORT]!.peers().length === 2, 'healed')
    const refused = (): number => r[SUPPORT]!.stats().peers[ADMIN]?.deltasDuplicate ?? 0
    const before = { refused: refused() }
    await Promise.all(['two', 'three'].map((text) => notes(r[ADMIN]!).put('n1', { text })))
    await waitFor(async () => (await notes(r[SUPPORT]!).get('n1'))?.text === 'three', 'three at SUPPORT', 10_000)
    expect(refused(), "the push of 'two' and 'three' was answered later").to.be.above(before.refused)
  })
})
