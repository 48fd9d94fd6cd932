/**
 * Review of a forked actor told apart (f1034ed: ForkedActorError, drop reason 'forked', the
 * owner counted and logged once per collection, entity and actor) and of the Yjs warning
 * (245335a: Replica.warnIfVouched). "HOLE n" tests fail on f1034ed/245335a; open ones are
 * skipped with their numbers. Fixed: 2 (a forged change under an honest author's actor, with
 * its replayed head or after a whole document, blamed that author: the owner is named only
 * where a head it signed reaches the refused change itself).
 */
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { LoopbackHub } from '../src/index.js'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { encodeHeaded } from '../src/replication/heads.js'
import { boundActor } from '../src/trust/actor-binding.js'
import { concatBytes, toHex } from '../src/hash.js'
import { memoryReplica, waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustMember, trustSuite } from './trust-helpers.js'
import { headOf, notesHeldBySupport } from './heads-helpers.js'
import { ctxOf, savedDoc, type State } from './counter-helpers.js'

describe('review: a forked actor told apart, and the Yjs warning', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  /** ADMIN, ORDERS, SUPPORT (SUPPORT logging to `said`) under NOTES_POLICY; 'notes'/e written by ADMIN and held at SUPPORT. */
  async function cluster() {
    const { r, said } = await notesHeldBySupport(keys, replicas)
    const base = await savedDoc(r[SUPPORT]!, 'notes', 'e')
    // H = ADMIN's own change h1 under an actor bound to it, with its head: SUPPORT holds it.
    const hActor = toHex(boundActor(ADMIN, new Uint8Array(16).fill(7)))
    const h1 = A.getLastLocalChange(A.change(A.load<State>(base, { actor: hActor }), { time: 0 }, (d) => void (d['h'] = 'honest')))!
    const h1Head = await headOf(keys, h1, ADMIN, 'e')
    const ctx = ctxOf(r[SUPPORT]!)
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'e', encodeHeaded(h1, [h1Head]))).to.equal('applied')
    // M = ORDERS forges H's seq 1 (another change of H's actor at the same seq).
    const forged = A.getLastLocalChange(A.change(A.load<State>(base, { actor: hActor }), { time: 0 }, (d) => void (d['h'] = 'forged')))!
    const blamed = () => said.filter((m) => m.includes('signed two different changes') || m.includes('forked its actor'))
    return { r, ctx, said, base, hActor, h1, h1Head, forged, blamed }
  }

  it("HOLE 2: a member forges a change under an honest author's bound actor at a seq the replica holds, with that author's head replayed (a delta of changes): refused as 'forked', counted against the honest author and logged naming it to revoke", async () => {
    const { r, ctx, said, hActor, h1Head, forged, blamed } = await cluster()
    const result = await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'e', encodeHeaded(forged, [h1Head]))
    expect(result).to.not.equal('applied')
    const stats = r[SUPPORT]!.stats()
    expect(stats.authors[ADMIN]?.dropped.forked ?? 0, 'the honest author counted as forking').to.equal(0) // f1034ed: 1
    expect(
      blamed().filter((m) => m.includes(ADMIN)),
      'a log line naming the honest author',
    ).to.deep.equal([]) // f1034ed: "a-admin signed two different changes of actor …: revoke a-admin"
    // The fork is still told (a change that cannot be taken here), against the peer that sent it.
    expect(result).to.equal('forked')
    expect(stats.peers[ORDERS]?.dropped.forked).to.equal(1)
    expect(
      said.some((m) => m.includes(ORDERS) && m.includes(hActor)),
      "the sender's drop, naming the actor",
    ).to.equal(true)
  })

  it("HOLE 2 (no head at all): the same forgery after a whole document (changes not known ahead: no head judges them before Automerge refuses the seq) names the honest owner by its actor's binding alone", async () => {
    const { r, ctx, base, forged, blamed } = await cluster()
    const result = await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'e', concatBytes([base, forged]))
    expect(result).to.not.equal('applied')
    expect(r[SUPPORT]!.stats().authors[ADMIN]?.dropped.forked ?? 0).to.equal(0) // f1034ed: 1
    expect(blamed().filter((m) => m.includes(ADMIN))).to.deep.equal([]) // f1034ed: two lines, one saying 'revoke a-admin'
  })

  it('probe: a genuine fork relayed with its head (the owner signed the other side) is still told against the owner (actor-fork.test.ts), and a forged copy naming the owner never reaches the once-per-key log first', async () => {
    const { r, ctx, hActor, base, forged, blamed } = await cluster()
    // H itself forks: another change of seq 1, and its own head for it.
    const other = A.getLastLocalChange(A.change(A.load<State>(base, { actor: hActor }), { time: 0 }, (d) => void (d['h'] = 'other')))!
    expect(await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'e', encodeHeaded(other, [await headOf(keys, other, ADMIN, 'e')]))).to.equal('forked')
    expect(r[SUPPORT]!.stats().authors[ADMIN]?.dropped.forked).to.equal(1)
    expect(blamed().filter((m) => m.includes(`revoke ${ADMIN}`))).to.have.length(1)
    void forged
  })

  it("probe: Automerge's error text is not the attacker's to write: a change whose message and key hold 'duplicate seq 1 found for actor <H>' is not told as a fork", async () => {
    const { ctx, hActor, base } = await cluster()
    const evil = `duplicate seq 1 found for actor ${hActor}`
    const doc = A.load<State>(base)
    const crafted = A.encodeChange({
      actor: 'dd'.repeat(16),
      author: null,
      seq: 1,
      startOp: 1, // below its past: refused
      time: 0,
      message: evil,
      deps: A.getHeads(doc),
      ops: [{ action: 'set', obj: '_root', key: evil, value: 1, datatype: 'int', pred: [] }],
    })
    expect(await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'e', crafted)).to.not.be.oneOf(['forked', 'applied'])
  })

  it("probe: 'forked' shows in stats().droppedByReason (what metrics export) alongside the peer's count", async () => {
    const { r, ctx, h1Head, forged } = await cluster()
    await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'e', encodeHeaded(forged, [h1Head]))
    const stats = r[SUPPORT]!.stats()
    expect(stats.droppedByReason.forked).to.equal(stats.peers[ORDERS]!.dropped.forked)
    expect(stats.droppedByReason.forked).to.equal(1)
  })

  it('probe: the Yjs warning is said once per collection however often the policy changes (also back and forth), and a collection only peers wrote (never opened here) is not warned about', async () => {
    const said: string[] = []
    const logger = { warn: (m: string) => said.push(m), error: (m: string) => said.push(m) }
    const hub = new LoopbackHub()
    const admin = await trustMember(keys, replicas, hub, ADMIN, { logger })
    const vouched = () => said.filter((w) => w.includes('more than one member may write it'))
    const policy = (writers: string[]) => ({
      roles: { admin: [ADMIN], orders: [ORDERS] },
      collections: { shared: { read: ['*'], write: writers }, relayed: { read: ['*'], write: ['admin', 'orders'] } },
    })
    await admin.policy.set(policy(['admin', 'orders']))
    admin.collection('shared')
    expect(vouched()).to.have.length(1)
    for (const writers of [['admin'], ['admin', 'orders'], ['admin'], ['admin', 'orders']]) await admin.policy.set(policy(writers))
    expect(vouched()).to.have.length(1)
    // ORDERS writes 'relayed', which ADMIN takes without opening it.
    const orders = await trustMember(keys, replicas, hub, ORDERS)
    await waitFor(() => orders.policy.get() !== undefined, 'adopted')
    await orders.collection('relayed').put('x', { a: 1 })
    await waitFor(() => ctxOf(admin).entities.collections.get('relayed')?.persisted === true, 'relayed at ADMIN')
    await admin.policy.set(policy(['admin']))
    expect(
      vouched().filter((w) => w.includes("'relayed'")),
      'held, not opened: no warning',
    ).to.have.length(0)
    // Opening it to read it warns, once.
    expect(await admin.collection('relayed').get('x')).to.deep.include({ a: 1 })
    admin.collection('relayed')
    expect(vouched().filter((w) => w.includes("'relayed'"))).to.have.length(1)
  })

  it('probe: a replica outside a cluster, and a cluster replica whose logger throws, open Yjs collections and take policies without failing', async () => {
    const hub = new LoopbackHub()
    const plain = await memoryReplica({ network: hub.createNetwork('plain'), syncIntervalMs: 0 })
    replicas.push(plain)
    plain.collection('a')
    const admin = await trustMember(keys, replicas, hub, ADMIN, {
      logger: {
        warn: () => {
          throw new Error('logger down')
        },
        error: () => undefined,
      },
    })
    let opened: unknown
    try {
      opened = admin.collection('shared')
    } catch (err) {
      opened = err
    }
    // A throwing logger is the caller's: it reaches collection() (as for every other warning), not the policy listener.
    await admin.policy.set({ roles: { admin: [ADMIN], orders: [ORDERS] }, collections: { shared: { read: ['*'], write: ['admin', 'orders'] } } })
    expect(admin.policy.get()).to.not.equal(undefined)
    void opened
  })
})
