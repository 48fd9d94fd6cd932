/**
 * Signed writes (issue #13 item 3, the gossip half): in a cluster every push is signed by its
 * author; receivers verify the signature and each delta's hash, accept it on the author's right
 * to write whoever relays it, store the proof beside the change feed, and — once a policy is in
 * force — drop unsigned pushes. Loopback networks with Ed25519 test keys (the libp2p tests run
 * the same over real nodes).
 */
import { expect } from 'chai'
import { LoopbackHub, type FeedEntry, type Replica } from '../src/index.js'
import { encodePush, signPush } from '../src/internal.js'
import { checkPushProof as checkProof, proofKey } from '../src/trust/signed-push.js'
import { memoryReplica, startRawPeer, waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustCluster, ORDERS_TOPIC, deltaOf, pushOf, feedOf, trustSuite } from './trust-helpers.js'

const POLICY = {
  roles: { admin: [ADMIN], orders: [ORDERS], support: [SUPPORT] },
  collections: { orders: { read: ['*'], write: ['orders', 'admin'] } },
}
const TOPIC = ORDERS_TOPIC

describe('Signed writes: pushes carry their author and signature; receivers verify and keep the proof', function () {
  this.timeout(30_000)
  const { keys, replicas } = trustSuite()

  const cluster = (ids: string[]) => trustCluster(keys, ids, replicas)

  /** A cluster of admin + orders with the policy adopted, both subscribed to 'orders', and a raw member (support) on its topic. */
  async function withRawMember() {
    const { hub, r } = await cluster([ADMIN, ORDERS])
    await r[ADMIN]!.policy.set(POLICY)
    await waitFor(() => r[ORDERS]!.policy.get() !== undefined, 'adopted')
    for (const replica of [r[ADMIN]!, r[ORDERS]!]) await replica.collection('orders').put('o-0', { total: 0 })
    const evil = hub.createNetwork(SUPPORT)
    await startRawPeer(evil, r[ADMIN]!, [TOPIC])
    await waitFor(() => r[ORDERS]!.peers().includes(SUPPORT), 'connected to orders')
    return { hub, r, evil }
  }

  /**
   * The feed entry of `id`, once it is durable: a value shows in get() as soon as it is
   * committed, its feed entry only after the tick's write (reading the feed right after get()
   * saw the value raced that write).
   */
  async function feedEntryOf(replica: Replica, id: string): Promise<FeedEntry> {
    let entry: FeedEntry | undefined
    await waitFor(async () => (entry = (await feedOf(replica)).find((e) => e.id === id)) !== undefined, `feed entry of ${id}`)
    return entry!
  }

  const verify = (peer: string, data: Uint8Array, signature: Uint8Array) => keys.trust(peer, [ADMIN]).verify(peer, data, signature)

  it("a write arrives with its author and a stored proof that verifies offline; the proof names the entity and the delta's hash", async () => {
    const { r } = await cluster([ADMIN, ORDERS])
    await r[ADMIN]!.policy.set(POLICY)
    await waitFor(() => r[ORDERS]!.policy.get() !== undefined, 'adopted')
    await r[ADMIN]!.collection('orders').put('o-0', { total: 0 })
    await waitFor(async () => (await r[ORDERS]!.collection('orders').get('o-0')) !== undefined, 'subscribed')
    await r[ORDERS]!.collection('orders').put('o-1', { total: 42 })
    await waitFor(async () => (await r[ADMIN]!.collection('orders').get('o-1')) !== undefined, 'arrives')
    const entry = await feedEntryOf(r[ADMIN]!, 'o-1')
    expect(entry).to.include({ origin: ORDERS, author: ORDERS, kind: 'remote' })
    expect(entry.proof).to.match(/^[0-9a-f]{32}$/)
    const store = (r[ADMIN] as unknown as { options: { store: { getMeta(k: string): Promise<Uint8Array | undefined> } } }).options.store
    const record = await store.getMeta(proofKey('orders', entry.proof!))
    const check = await checkProof(record, entry.proof!, { namespace: 'default', collection: 'orders', id: 'o-1', author: ORDERS }, verify)
    expect(check.ok, JSON.stringify(check)).to.equal(true)
    // The same proof does not vouch for another entity, author or collection; a flipped byte fails it.
    expect((await checkProof(record, entry.proof!, { collection: 'orders', id: 'o-2', author: ORDERS }, verify)).ok).to.equal(false)
    expect((await checkProof(record, entry.proof!, { collection: 'orders', id: 'o-1', author: ADMIN }, verify)).ok).to.equal(false)
    expect((await checkProof(record, entry.proof!, { collection: 'payments', id: 'o-1', author: ORDERS }, verify)).ok).to.equal(false)
    const flipped = new Uint8Array(record!)
    flipped[flipped.byteLength - 70]! ^= 1
    expect((await checkProof(flipped, entry.proof!, { collection: 'orders', id: 'o-1', author: ORDERS }, verify)).ok).to.equal(false)
    // The writer's own feed says 'local' (its own writes need no proof of authorship to itself).
    expect(await feedEntryOf(r[ORDERS]!, 'o-1')).to.include({ origin: 'local' })
  })

  it('a relayed signed push keeps its author: a member without write relays an orders write; the receiver credits orders', async () => {
    const { r, evil } = await withRawMember()
    const genuine = await signPush('default', pushOf(ORDERS, [['o-relayed', deltaOf('relayed')]]), keys.trust(ORDERS, [ADMIN]).sign)
    // Orders' own o-0 reaches the admin first (signed by orders, counted for it).
    await waitFor(() => (r[ADMIN]!.stats().authors[ORDERS]?.deltasApplied ?? 0) >= 1, "orders' o-0 applied at the admin")
    const before = r[ADMIN]!.stats().authors[ORDERS]!.deltasApplied
    await evil.publish(TOPIC, genuine)
    await waitFor(async () => (await r[ADMIN]!.collection('orders').get('o-relayed')) !== undefined, 'relayed write applied')
    const entry = await feedEntryOf(r[ADMIN]!, 'o-relayed')
    expect(entry.origin).to.equal(ORDERS)
    expect(entry.proof).to.be.a('string')
    // Counted for its author, though support sent it.
    expect(r[ADMIN]!.stats().authors[ORDERS]?.deltasApplied).to.equal(before + 1)
    expect(r[ADMIN]!.stats().authors[SUPPORT]).to.equal(undefined)
  })

  it('forged signed pushes are dropped and counted (badSignature / forbidden / malformed); honest writes still arrive', async () => {
    const { r, evil } = await withRawMember()
    const support = keys.trust(SUPPORT, [ADMIN]).sign
    const orders = keys.trust(ORDERS, [ADMIN]).sign
    // 1. Claims orders as author, signed with support's key.
    await evil.publish(TOPIC, await signPush('default', pushOf(ORDERS, [['f-claim', deltaOf('FORGED')]]), support))
    // 2. Support's own signature, but support may not write orders.
    await evil.publish(TOPIC, await signPush('default', pushOf(SUPPORT, [['f-own', deltaOf('FORGED')]]), support))
    // 3. A genuine orders signature over one delta, carrying another (the hash does not match).
    const genuine = await signPush('default', pushOf(ORDERS, [['f-swap', deltaOf('fine')]]), orders)
    const swapped = Buffer.from(genuine)
    const at = swapped.indexOf(Buffer.from('fine'), swapped.length - 200)
    swapped.write('FAKE', at)
    await evil.publish(TOPIC, swapped)
    // 4. A genuine signature made for another namespace.
    await evil.publish(TOPIC, await signPush('other-namespace', pushOf(ORDERS, [['f-ns', deltaOf('FORGED')]]), orders))
    // 5. Unsigned, now that a policy is in force.
    await evil.publish(TOPIC, encodePush(pushOf(ORDERS, [['f-plain', deltaOf('FORGED')]])))
    await r[ORDERS]!.collection('orders').put('o-honest', { total: 7 })
    await waitFor(async () => (await r[ADMIN]!.collection('orders').get('o-honest')) !== undefined, 'honest write arrives')
    for (const replica of [r[ADMIN]!, r[ORDERS]!]) {
      await waitFor(() => {
        const d = replica.stats().peers[SUPPORT]?.dropped
        return d !== undefined && d.badSignature >= 3 && d.forbidden >= 1 && d.malformed >= 1
      }, 'all five counted')
      const d = replica.stats().peers[SUPPORT]!.dropped
      expect({ badSignature: d.badSignature, forbidden: d.forbidden, malformed: d.malformed }).to.deep.equal({ badSignature: 3, forbidden: 1, malformed: 1 })
      // Per author: nothing. The pushes that claimed orders as author (no valid signature) and
      // support's own (support may not write 'orders', so its signature is not even checked)
      // count against nobody but the sender.
      const authors = replica.stats().authors
      expect(authors[SUPPORT]).to.equal(undefined)
      expect(authors[ORDERS]?.dropped.badSignature ?? 0).to.equal(0)
      for (const id of ['f-claim', 'f-own', 'f-swap', 'f-ns', 'f-plain']) expect(await replica.collection('orders').get(id), id).to.equal(undefined)
      expect((await feedOf(replica)).map((e) => e.id)).to.not.include.members(['f-claim', 'f-own', 'f-swap', 'f-ns', 'f-plain'])
    }
  })

  it('before any policy (bootstrap) unsigned pushes still apply; without a cluster nothing is signed', async () => {
    const hub = new LoopbackHub()
    const a = await memoryReplica({ network: hub.createNetwork('p-a') })
    const b = await memoryReplica({ network: hub.createNetwork('p-b') })
    replicas.push(a, b)
    await a.collection('orders').put('x', { n: 1 })
    await b.collection('orders').put('y', { n: 1 })
    await a.collection('orders').put('z', { n: 2 })
    await waitFor(async () => (await b.collection('orders').get('z')) !== undefined, 'dev mode push')
    const entry = await feedEntryOf(b, 'z')
    expect(entry.origin).to.equal('p-a')
    expect(entry.proof).to.equal(undefined)
    // A cluster replica before its policy takes a raw member's unsigned push.
    const { hub: hub2, r } = await cluster([ADMIN])
    await r[ADMIN]!.collection('orders').put('o-0', { total: 0 })
    const raw = hub2.createNetwork(ORDERS)
    await startRawPeer(raw, r[ADMIN]!, [TOPIC])
    await raw.publish(TOPIC, encodePush(pushOf(ORDERS, [['o-boot', deltaOf('boot')]])))
    await waitFor(async () => (await r[ADMIN]!.collection('orders').get('o-boot')) !== undefined, 'bootstrap push applied')
  })
})
