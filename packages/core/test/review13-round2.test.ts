/**
 * Second review of signed writes (issue #13, gossip half): attacks on the fixes of 6c01b8d —
 * the replay-duplicate rule (PushProofs.stored), the per-sender budget of failed checks,
 * proofs written once, proofs dropped with their collection. Each `HOLE` was watched fail
 * against 6c01b8d; `probe` tests passed from the start (attacks tried that found no hole, kept
 * as regression guards).
 */
import { expect } from 'chai'
import { MemoryLevel } from 'memory-level'
import { classicLevelStore, LevelStore } from '@convergent/level'
import { automergeBackend } from '@convergent/automerge'
import { LoopbackHub, type TrustOptions } from '../src/index.js'
import { decodeMessage, encodeSignedPush, signPush } from '../src/internal.js'
import { checkPushProof as checkProof, decodePayload, encodeProof, proofIdOf, proofKey, proofPrefixOf } from '../src/trust/signed-push.js'
import { memoryReplica, tempDir, waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, countingYjs, ORDERS_TOPIC, deltaOf, pushOf, feedOf, trustSuite } from './trust-helpers.js'

const POLICY = {
  roles: { admin: [ADMIN], orders: [ORDERS], support: [SUPPORT] },
  collections: { orders: { read: ['*'], write: ['orders', 'admin'] } },
}
const TOPIC = ORDERS_TOPIC

describe('Signed writes under attack, round 2 (the review fixes)', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  /** `keys.trust(id)`, counting the signature checks this one replica makes. */
  function countingTrust(id: string, delayMs = 0): { trust: TrustOptions; verifies: () => number } {
    const trust = keys.trust(id, [ADMIN])
    let n = 0
    return {
      trust: {
        ...trust,
        verify: async (peer, data, signature) => {
          n++
          if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs))
          return trust.verify(peer, data, signature)
        },
      },
      verifies: () => n,
    }
  }

  /**
   * Admin (counting its verifies and applies) and orders with the policy adopted, both holding
   * 'orders', and SUPPORT — a member that may read 'orders' but not write it — as a raw peer on
   * its topic that keeps every push it receives: the hostile member.
   */
  async function withRawMember(options: { adminStore?: LevelStore; adminVerifyMs?: number } = {}) {
    const hub = new LoopbackHub()
    const counting = countingYjs()
    const adminTrust = countingTrust(ADMIN, options.adminVerifyMs)
    const ordersTrust = countingTrust(ORDERS)
    const ordersCounting = countingYjs()
    const admin = await memoryReplica({
      network: hub.createNetwork(ADMIN),
      trust: adminTrust.trust,
      backends: [counting.backend, automergeBackend()],
      ...(options.adminStore !== undefined ? { store: options.adminStore } : {}),
    })
    const orders = await memoryReplica({ network: hub.createNetwork(ORDERS), trust: ordersTrust.trust, backends: [ordersCounting.backend, automergeBackend()] })
    replicas.push(admin, orders)
    await admin.policy.set(POLICY)
    await waitFor(() => orders.policy.get() !== undefined, 'adopted')
    for (const r of [admin, orders]) await r.collection('orders').put('o-0', { total: 0 })
    const evil = hub.createNetwork(SUPPORT)
    const captured: Uint8Array[] = []
    await evil.start({
      onMessage: (topic, data) => {
        if (topic === TOPIC) captured.push(data)
      },
      onRequest: async () => new Uint8Array(),
      onPeerConnected: () => {},
      onPeerDisconnected: () => {},
    })
    evil.subscribe(TOPIC)
    await waitFor(() => admin.peers().includes(SUPPORT) && orders.peers().includes(SUPPORT), 'the member is connected')
    return {
      hub,
      admin,
      orders,
      evil,
      captured,
      adminVerifies: adminTrust.verifies,
      ordersVerifies: ordersTrust.verifies,
      adminApplies: counting.applied,
      ordersApplies: ordersCounting.applied,
    }
  }

  const settle = (ms = 200) => new Promise((r) => setTimeout(r, ms))

  // HOLE A (medium-low): the replay rule of HOLE 5 rests on the proof being STORED — and a
  // proof is stored only by a push that changed something. Where a push's changes were
  // already held, every replay is verified and applied again, without end: at its own AUTHOR
  // (a local write stores no proof of the author's own push), and at every replica that got
  // the changes another way first — by anti-entropy (a late joiner, a partition, a restart),
  // or by an earlier push. A member that may only read replays a writer's captured pushes to
  // that writer (or to a replica that caught up) and gets a verify and a full apply (up to
  // 1,024 deltas) per message, bounded by the message and entry rates alone: HOLE 5 again.
  // Fix: remember (bounded, in memory) the proofs of pushes that passed their check, whether
  // or not they changed anything; a replay of one is a duplicate.
  it('HOLE A: replays of a push whose changes the replica already held are verified and applied each time', async () => {
    const { admin, orders, evil, captured, ordersVerifies, ordersApplies, adminVerifies, adminApplies, hub } = await withRawMember()
    // 1. At the author: orders' own push, captured by the member, replayed to orders.
    await orders.collection('orders').put('o-own', { total: 7 })
    await waitFor(() => pushNaming(captured, 'o-own') !== undefined, 'the member has the push')
    const own = pushNaming(captured, 'o-own')!
    await waitFor(async () => (await feedOf(admin)).some((e) => e.id === 'o-own' && e.proof !== undefined), 'admin stored it with its proof')
    // 2. At a replica that caught up by anti-entropy: admin is cut off while orders writes.
    hub.disconnect(ADMIN, ORDERS)
    await orders.collection('orders').put('o-missed', { total: 8 })
    await waitFor(() => pushNaming(captured, 'o-missed') !== undefined, 'the member has the second push')
    const missed = pushNaming(captured, 'o-missed')!
    hub.heal()
    await waitFor(async () => (await admin.collection('orders').get('o-missed')) !== undefined, 'anti-entropy brings o-missed')
    await settle()
    const before = { ov: ordersVerifies(), oa: ordersApplies(), av: adminVerifies(), aa: adminApplies() }
    const replays = 20
    for (let i = 0; i < replays; i++) {
      await evil.publish(TOPIC, own)
      await evil.publish(TOPIC, missed)
    }
    await waitFor(
      () => (orders.stats().peers[SUPPORT]?.messagesIn ?? 0) >= 2 * replays && (admin.stats().peers[SUPPORT]?.messagesIn ?? 0) >= 2 * replays,
      'received',
    )
    await settle()
    // One check each (the first replay of a push not stored here) is the most a replay may cost.
    // Applies are counted for every delta the backend takes, so an anti-entropy round still
    // running after the heal may add one or two of its own; without the fix, 40 and 20.
    expect({ ordersVerifies: ordersVerifies() - before.ov, adminVerifies: adminVerifies() - before.av }).to.deep.equal({ ordersVerifies: 2, adminVerifies: 1 })
    expect(ordersApplies() - before.oa, 'applies at orders').to.be.at.most(4)
    expect(adminApplies() - before.aa, 'applies at admin').to.be.at.most(3)
  })

  // HOLE B (low-medium): the replay rule is checked when a push ARRIVES, but the proof it looks
  // for is remembered only when the push's first delta COMMITS. Copies that arrive in between
  // — a burst, while the replica's apply pacer is busy (64 deltas a turn, shared by every
  // message) — all pass the rule: each is verified and each of its deltas applied again.
  // A busy replica is exactly when it hurts. Fix: a push being checked is remembered at once;
  // copies arriving meanwhile wait for its verdict (and check themselves only if it failed:
  // a forged copy must not shadow the genuine one).
  it('HOLE B: copies of one push arriving while the first is still being applied are each verified and applied', async () => {
    const { admin, evil, adminVerifies, adminApplies } = await withRawMember()
    await settle() // the setup's own pushes
    const sign = keys.trust(ORDERS, [ADMIN]).sign
    const big = await signPush(
      'default',
      pushOf(
        ORDERS,
        Array.from({ length: 1024 }, (_, i): [string, Uint8Array] => [`x-${i}`, deltaOf(`x${i}`)]),
        1,
      ),
      sign,
    )
    const small = await signPush(
      'default',
      pushOf(
        ORDERS,
        Array.from({ length: 64 }, (_, i): [string, Uint8Array] => [`y-${i}`, deltaOf(`y${i}`)]),
        2,
      ),
      sign,
    )
    const before = { v: adminVerifies(), a: adminApplies() }
    const copies = 10
    await evil.publish(TOPIC, big) // keeps the pacer busy for 16 turns
    for (let i = 0; i < copies; i++) await evil.publish(TOPIC, small)
    await waitFor(async () => (await feedOf(admin)).filter((e) => e.id.startsWith('x-') || e.id.startsWith('y-')).length === 1024 + 64, 'all applied', 30_000)
    await waitFor(() => (admin.stats().peers[SUPPORT]?.messagesIn ?? 0) >= 1 + copies, 'received')
    await settle(300)
    expect({ verifies: adminVerifies() - before.v, applies: adminApplies() - before.a }).to.deep.equal({ verifies: 2, applies: 1024 + 64 })
  })

  // HOLE C (low, damaged disk): dropCollection deletes the collection's proofs by reading them
  // (Store.metas checks every record) — one damaged proof record and the scan throws
  // ERR_STORE_CORRUPT after the collection itself is gone: dropCollection rejects, every proof
  // after the damaged one stays on disk, and a retry meets the same record. Fix: the deletion
  // needs the keys only; a record that fails its check is deleted like the others.
  it('HOLE C: one damaged proof record makes dropCollection fail and leaves the proofs behind', async () => {
    const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' })
    const store = new LevelStore(db, { kind: 'memory-level' })
    const { admin, evil } = await withRawMember({ adminStore: store })
    const sign = keys.trust(ORDERS, [ADMIN]).sign
    for (let i = 0; i < 5; i++) await evil.publish(TOPIC, await signPush('default', pushOf(ORDERS, [[`d-${i}`, deltaOf(`d${i}`)]], 10 + i), sign))
    await waitFor(async () => (await feedOf(admin)).filter((e) => e.id.startsWith('d-') && e.proof !== undefined).length === 5, 'stored with proofs')
    const proofs = (await feedOf(admin)).filter((e) => e.id.startsWith('d-')).map((e) => proofKey('orders', e.proof!))
    // The disk damages one of them (the record no longer passes its checksum).
    const damaged = [...proofs].sort()[0]!
    await db.sublevel<string, Uint8Array>('meta', { keyEncoding: 'utf8', valueEncoding: 'view' }).put(damaged, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]))
    const dropped = await admin.dropCollection('orders').then(
      () => 'dropped',
      (e: unknown) => String(e),
    )
    const left: string[] = []
    for await (const [key] of db
      .sublevel<string, Uint8Array>('meta', { keyEncoding: 'utf8', valueEncoding: 'view' })
      .iterator({ gte: proofPrefixOf('orders'), lt: proofPrefixOf('orders') + '\uffff' }))
      left.push(key)
    expect({ dropped, left }).to.deep.equal({ dropped: 'dropped', left: [] })
  })

  // HOLE E (low): dropCollection deletes the collection, then its proofs — not atomically: a
  // crash (or a failed write) in between leaves every proof of it on disk (each names the ids
  // of a push), and nothing removes them unless the application drops that same name again
  // (`convergent drop` refuses: the collection no longer exists). Fix: open() finishes the
  // proof deletion of every collection recorded as dropped (the refused list, written before
  // the drop) that holds no data.
  it('HOLE E: a crash between dropping a collection and deleting its proofs leaves them on disk for good', async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const store = classicLevelStore(dir)
      const { admin, evil } = await withRawMember({ adminStore: store })
      const sign = keys.trust(ORDERS, [ADMIN]).sign
      for (let i = 0; i < 3; i++) await evil.publish(TOPIC, await signPush('default', pushOf(ORDERS, [[`e-${i}`, deltaOf(`e${i}`)]], 20 + i), sign))
      await waitFor(async () => (await feedOf(admin)).filter((e) => e.id.startsWith('e-') && e.proof !== undefined).length === 3, 'stored with proofs')
      // The process dies right after the collection is gone, before its proofs are.
      const write = store.write.bind(store)
      store.write = (ops) =>
        ops.some((op) => op.type === 'delMeta' && op.key.startsWith(proofPrefixOf('orders'))) ? Promise.reject(new Error('crash')) : write(ops)
      await admin.dropCollection('orders').catch(() => undefined)
      await admin.close()
      const reopened = await memoryReplica({ store: classicLevelStore(dir) })
      replicas.push(reopened)
      expect(reopened.collections()).to.not.include('orders')
      const left: string[] = []
      for await (const [key] of (reopened as unknown as { options: { store: LevelStore } }).options.store.metas(proofPrefixOf('orders'))) left.push(key)
      expect(left).to.deep.equal([])
    } finally {
      await cleanup()
    }
  })

  // ---- Probes: attacks tried that found no hole ----

  // The budget is taken before a check and given back when it passes: a writer interleaving
  // good and bad pushes still gets at most 10 failed checks a minute (refunds only balance its
  // own passing checks), and its good pushes are dropped unchecked once the budget is spent.
  it('probe: interleaving good and bad pushes does not stretch the budget of failed checks', async () => {
    const { admin, evil, adminVerifies } = await withRawMember()
    await settle() // the setup's own pushes
    const sign = keys.trust(ORDERS, [ADMIN]).sign
    const before = adminVerifies()
    let failed = 0
    for (let i = 0; i < 40; i++) {
      const good = await signPush('default', pushOf(ORDERS, [[`g-${i}`, deltaOf(`g${i}`)]], 100 + i), sign)
      const bad = await signPush('default', pushOf(ORDERS, [[`b-${i}`, deltaOf(`b${i}`)]], 200 + i), async () => new Uint8Array(64).fill(i))
      await evil.publish(TOPIC, good)
      await evil.publish(TOPIC, bad)
      failed++
    }
    await waitFor(() => (admin.stats().peers[SUPPORT]?.messagesIn ?? 0) >= 80, 'received')
    await settle()
    // 10 failed checks, plus the good ones sent before the budget ran out (at most 11).
    expect(adminVerifies() - before).to.be.at.most(10 + 11)
    expect(failed).to.equal(40)
  })

  // Guards the fix of HOLE B: a copy waits for the check of one under way — so a forged copy
  // (the genuine signature and payload, a delta changed) sent just before the genuine push
  // must not make it a "duplicate": the genuine one is checked once the forgery is refused.
  it('probe: a forged copy checked first does not shadow the genuine push arriving while it is checked', async () => {
    const { admin, evil } = await withRawMember({ adminVerifyMs: 50 })
    await settle()
    const genuine = await signPush('default', pushOf(ORDERS, [['s-1', deltaOf('genuine')]], 400), keys.trust(ORDERS, [ADMIN]).sign)
    const body = decodeMessage(genuine, 1 << 22).body as { p: Uint8Array; g: Uint8Array; d: Uint8Array[] }
    const forged = encodeSignedPush({ payload: body.p, signature: body.g, deltas: [deltaOf('forged')] })
    const bad0 = admin.stats().peers[SUPPORT]?.dropped.badSignature ?? 0
    await evil.publish(TOPIC, forged)
    await evil.publish(TOPIC, genuine)
    await waitFor(async () => (await feedOf(admin)).some((e) => e.id === 's-1' && e.proof !== undefined), 'the genuine push is applied')
    expect(admin.stats().peers[SUPPORT]?.dropped.badSignature).to.equal(bad0 + 1)
    expect(await admin.collection('orders').get('s-1')).to.deep.include({ note: 'genuine' })
  })

  // The replay rule must not make a replica skip for good a push it never stored: when the
  // tick that carries a push's proof fails to write, the proof is forgotten with it, and a
  // later copy of the push is checked and applied (and its proof stored) as if new.
  it('probe: a push whose write failed is applied when it comes again', async () => {
    const store = new LevelStore(new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' }), { kind: 'memory-level' })
    const { admin, evil } = await withRawMember({ adminStore: store })
    await settle()
    const push = await signPush('default', pushOf(ORDERS, [['w-1', deltaOf('w')]], 500), keys.trust(ORDERS, [ADMIN]).sign)
    const write = store.write.bind(store)
    let failed = 0
    store.write = (ops) => {
      if (failed === 0 && ops.some((op) => op.type === 'meta' && op.key.startsWith(proofPrefixOf('orders')))) {
        failed++
        return Promise.reject(new Error('the disk is full'))
      }
      return write(ops)
    }
    await evil.publish(TOPIC, push)
    await waitFor(() => (admin.stats().peers[SUPPORT]?.dropped.storeFailed ?? 0) >= 1, 'the first write failed')
    expect(await admin.collection('orders').get('w-1')).to.equal(undefined)
    await evil.publish(TOPIC, push)
    await waitFor(async () => (await feedOf(admin)).some((e) => e.id === 'w-1' && e.proof !== undefined), 'applied the second time')
  })

  // The audit looks a feed entry's proof up under the entry's own collection, and checks that the
  // signed payload names that collection, this entity and the recorded author: a proof copied
  // under another collection's key, or a feed entry pointed at another collection's proof, is
  // TAMPERED, never "verified".
  it('probe: a proof of another collection does not verify a feed entry', async () => {
    const sign = keys.trust(ORDERS, [ADMIN]).sign
    const message = await signPush('default', { ...pushOf(ORDERS, [['n-1', deltaOf('n')]], 600), collection: 'notes' }, sign)
    const body = decodeMessage(message, 1 << 22).body as { p: Uint8Array; g: Uint8Array }
    const record = encodeProof({ payload: body.p, signature: body.g })
    const id = proofIdOf(body.g)
    const verify = keys.trust(ADMIN, [ADMIN]).verify
    expect(await checkProof(record, id, { collection: 'notes', id: 'n-1', author: ORDERS }, verify)).to.deep.include({ ok: true })
    expect(await checkProof(record, id, { collection: 'orders', id: 'n-1', author: ORDERS }, verify)).to.deep.equal({
      ok: false,
      why: "signed for collection 'notes'",
    })
    expect(await checkProof(record, id, { collection: 'notes', id: 'n-2', author: ORDERS }, verify)).to.deep.include({ ok: false })
    expect(await checkProof(record, id, { collection: 'notes', id: 'n-1', author: SUPPORT }, verify)).to.deep.include({ ok: false })
    expect(await checkProof(record, '00'.repeat(16), { collection: 'notes', id: 'n-1', author: ORDERS }, verify)).to.deep.include({ ok: false })
  })

  // The budget is the SENDER's (`from`): on libp2p gossipsub's `from` is the publisher whose
  // key signed the gossipsub message (StrictSign, the default), and only members' gossip is
  // read at all. A member relaying bad signatures exhausts its own budget, never the author's
  // or another relay's: the author's own pushes still get through.
  it("probe: a member's failed checks do not spend the author's budget", async () => {
    const { admin, orders, evil } = await withRawMember()
    for (let i = 0; i < 30; i++) {
      await evil.publish(TOPIC, await signPush('default', pushOf(ORDERS, [[`f-${i}`, deltaOf('f')]], 300 + i), async () => new Uint8Array(64).fill(i)))
    }
    await waitFor(() => (admin.stats().peers[SUPPORT]?.dropped.badSignature ?? 0) >= 30, 'all refused')
    await orders.collection('orders').put('after', { total: 1 })
    await waitFor(async () => (await feedOf(admin)).some((e) => e.id === 'after' && e.proof !== undefined), 'the author still gets through')
  })
})

/** The captured signed push that carries entity `id`, if any. */
function pushNaming(captured: readonly Uint8Array[], id: string): Uint8Array | undefined {
  return captured.find((m) => {
    const body = decodeMessage(m, 1 << 22).body as { p: Uint8Array }
    return decodePayload(body.p, 1024).entries.some(([e]) => e === id)
  })
}
