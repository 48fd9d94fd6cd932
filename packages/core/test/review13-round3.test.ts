/**
 * Third review of signed writes (issue #13, gossip half): liveness and memory of the receive
 * path as it stands after round 2 — the per-sender check queue (PerPeerQueue), the admission
 * verdicts copies wait for, proofs and partial failures. Each `HOLE` was watched fail against
 * 99a2971; `probe` tests passed from the start (kept as regression guards).
 */
import { expect } from 'chai'
import { MemoryLevel } from 'memory-level'
import { LevelStore } from '@convergent/level'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { LoopbackHub, type TrustOptions } from '../src/index.js'
import { signPush } from '../src/internal.js'
import { proofPrefixOf } from '../src/trust/signed-push.js'
import { PerPeerQueue } from '../src/replication/per-peer-queue.js'
import { VERIFY_TIMEOUT_MS } from '../src/replication/receiver.js'
import { memoryReplica, waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, ORDERS_TOPIC, deltaOf, pushOf, trustSuite } from './trust-helpers.js'

const POLICY = {
  roles: { admin: [ADMIN], orders: [ORDERS], support: [SUPPORT] },
  collections: { orders: { read: ['*'], write: ['orders', 'admin'] } },
}
const TOPIC = ORDERS_TOPIC

describe('Signed writes under attack, round 3 (liveness and memory of the receive path)', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  /** Admin (with `verify` wrapped) and SUPPORT as a raw member publishing on the topic. */
  async function withRawMember(options: { adminStore?: LevelStore; wrapVerify?: (v: TrustOptions['verify']) => TrustOptions['verify'] } = {}) {
    const hub = new LoopbackHub()
    const trust = keys.trust(ADMIN, [ADMIN])
    const admin = await memoryReplica({
      network: hub.createNetwork(ADMIN),
      trust: options.wrapVerify === undefined ? trust : { ...trust, verify: options.wrapVerify(trust.verify.bind(trust)) },
      backends: [yjsBackend(), automergeBackend()],
      ...(options.adminStore !== undefined ? { store: options.adminStore } : {}),
    })
    replicas.push(admin)
    await admin.policy.set(POLICY)
    await admin.collection('orders').put('o-0', { total: 0 })
    const evil = hub.createNetwork(SUPPORT)
    await evil.start({ onMessage: () => {}, onRequest: async () => new Uint8Array(), onPeerConnected: () => {}, onPeerDisconnected: () => {} })
    evil.subscribe(TOPIC)
    await waitFor(() => admin.peers().includes(SUPPORT), 'the member is connected')
    await new Promise((r) => setTimeout(r, 200))
    return { admin, evil }
  }

  // HOLE 1 (low-medium): the checks of one sender run one at a time (PerPeerQueue), and a
  // check waits for TrustOptions.verify with no bound. A verify that never answers (a custom
  // TrustOptions — a key service, an HSM, a lookup of the key an RSA peer id does not carry —
  // that hangs once) stalls that sender's queue for good: every later push it relays, honest or
  // not, is never checked nor applied, and each one stays in memory (the queue's closures hold
  // the push, up to maxPushBytes) for as long as the replica runs; the copies other senders
  // relay of the hung push wait for its verdict for good too. Fix: a check that has no answer
  // within VERIFY_TIMEOUT_MS refuses the push (not counted against the sender: the fault is
  // local), so the queue moves on.
  it('HOLE 1: a verify that never answers stalls every later push of that sender for good', async () => {
    let armed = false
    let calls = 0
    const { admin, evil } = await withRawMember({
      wrapVerify: (verify) => (peer, data, signature) => (armed && ++calls === 1 ? new Promise<boolean>(() => {}) : verify(peer, data, signature)),
    })
    armed = true
    const sign = keys.trust(ORDERS, [ADMIN]).sign
    await evil.publish(TOPIC, await signPush('default', pushOf(ORDERS, [['h-1', deltaOf('hung')]], 1), sign))
    await waitFor(() => calls === 1, 'the first verify hangs')
    await evil.publish(TOPIC, await signPush('default', pushOf(ORDERS, [['h-2', deltaOf('next')]], 2), sign))
    await waitFor(async () => (await admin.collection('orders').get('h-2')) !== undefined, 'the next push is applied', VERIFY_TIMEOUT_MS + 5_000)
    // Its copy, sent again, is checked (the hung one's verdict was a refusal) and applied.
    await evil.publish(TOPIC, await signPush('default', pushOf(ORDERS, [['h-1', deltaOf('hung')]], 1), sign))
    await waitFor(async () => (await admin.collection('orders').get('h-1')) !== undefined, 'the hung push is applied when it comes again')
    expect(admin.stats().peers[SUPPORT]?.dropped.badSignature ?? 0).to.equal(1)
  })

  // HOLE 2 (low): the replay rule of round 2 reads "proof stored ⇒ the push is held". But a
  // push's deltas commit over several ticks (64 a turn; and each waits for its entity's load),
  // and the proof is written with the FIRST feed entry. When a later tick fails, receivePush
  // forgets the admission ("a replay may bring it after all") — and the replay is then refused
  // as a duplicate by PushProofs.stored(), since the proof's tick made it to disk: the deltas whose
  // write failed are skipped for good on the gossip path (only anti-entropy, from a peer that
  // may itself write the collection, brings them). Fix: a push whose apply did not reach the
  // store is remembered (bounded) as incomplete: its replays are checked and applied again.
  // Fixed that way (PushProofs: incomplete).
  it('HOLE 2: a replay of a push whose later tick failed is skipped as a duplicate (its proof made it to disk)', async () => {
    const store = new LevelStore(new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' }), { kind: 'memory-level' })
    const { admin, evil } = await withRawMember({ adminStore: store })
    const entries: [string, Uint8Array][] = []
    for (let i = 0; i < 80; i++) entries.push([`p-${i}`, deltaOf(`p${i}`)])
    const push = await signPush('default', pushOf(ORDERS, entries, 700), keys.trust(ORDERS, [ADMIN]).sign)
    const write = store.write.bind(store)
    let failed = 0
    let proofFirst = false
    store.write = (ops) => {
      const last = ops.some((op) => op.type === 'feed' && op.entry.id === 'p-79')
      const proof = ops.some((op) => op.type === 'meta' && op.key.startsWith(proofPrefixOf('orders')))
      if (failed === 0 && last && !proof) {
        failed++
        return Promise.reject(new Error('the disk is full'))
      }
      if (proof) proofFirst = true
      return write(ops)
    }
    await evil.publish(TOPIC, push)
    await waitFor(() => (admin.stats().peers[SUPPORT]?.dropped.storeFailed ?? 0) >= 1, 'the write of the last tick failed')
    expect(proofFirst, 'the proof went out in an earlier tick').to.equal(true)
    expect(await admin.collection('orders').get('p-79')).to.equal(undefined)
    await new Promise((r) => setTimeout(r, 100))
    await evil.publish(TOPIC, push)
    await waitFor(async () => (await admin.collection('orders').get('p-79')) !== undefined, 'the replay brings the delta whose write failed', 5_000)
  })

  // The queue keeps a peer's entry only while it has work, whatever its tasks did: a task that
  // throws rejects its caller only, and the next task runs.
  it('probe: a per-sender queue runs on past a task that throws, and forgets an idle sender', async () => {
    const queue = new PerPeerQueue()
    const first = queue.run('p', async () => {
      throw new Error('boom')
    })
    const second = queue.run('p', async () => 2)
    await first.then(
      () => expect.fail('should reject'),
      (err: Error) => expect(err.message).to.equal('boom'),
    )
    expect(await second).to.equal(2)
    await new Promise((r) => setTimeout(r, 0))
    expect((queue as unknown as { tails: Map<string, unknown> }).tails.size).to.equal(0)
  })
})
