import { sign } from 'node:crypto'
import { expect } from 'chai'
import { LoopbackHub } from '../src/index.js'
import {
  encodeMessage,
  encodePush,
  signPush,
  encodePolicyOffer,
  decodeMessage,
  MessageType,
  encodeDeltasRequest,
  encodeRightsRequest,
} from '../src/internal.js'
import { encodePolicy, signingInput } from '../src/trust/policy.js'
import { yjsBackend } from '@convergent/yjs'
import { memoryReplica, rejectsWith, spy, startRawPeer, waitFor } from './helpers.js'
import { ADMIN, adminStockOf100, netOf, ORDERS, SUPPORT, trustCluster, trustMember, trustSuite } from './trust-helpers.js'

const POLICY = {
  roles: { admin: [ADMIN], orders: [ORDERS], support: [SUPPORT] },
  collections: {
    orders: { read: ['*'], write: ['orders', 'admin'] },
    payments: { read: ['orders'], write: ['admin'] },
    stock: { read: ['*'], write: ['orders', 'admin'] },
  },
}

describe('Trust: the signed cluster policy, read and write control', function () {
  this.timeout(30_000)
  const { keys, replicas } = trustSuite()

  const cluster = (ids: string[], options: { seen?: Map<string, Buffer[]> } = {}) =>
    trustCluster(keys, ids, replicas, {
      wrap: (id, network) => {
        const seen = options.seen?.get(id)
        return seen === undefined ? network : spy(network, { received: (data) => void seen.push(Buffer.from(data)) })
      },
    })

  it('an admin sets the policy; every replica verifies and adopts it; a non-admin cannot', async () => {
    const { r } = await cluster([ADMIN, ORDERS, SUPPORT])
    expect(r[ORDERS]!.policy.get()).to.equal(undefined)
    const adopted = await r[ADMIN]!.policy.set(POLICY)
    expect(adopted.version).to.equal(1)
    expect(adopted.signedBy).to.equal(ADMIN)
    for (const id of [ORDERS, SUPPORT]) await waitFor(() => r[id]!.policy.get()?.version === 1, `${id} adopts v1`)
    expect(r[SUPPORT]!.policy.get()!.collections.payments).to.deep.equal({ read: ['orders'], write: ['admin'] })
    await rejectsWith(r[ORDERS]!.policy.set({ roles: { orders: [ORDERS] }, collections: { '*': { read: ['*'], write: ['*'] } } }), 'ERR_FORBIDDEN')
    expect(r[ORDERS]!.policy.get()!.version).to.equal(1)
    const v2 = await r[ADMIN]!.policy.set({ ...POLICY, roles: { ...POLICY.roles, support: [] } })
    expect(v2.version).to.equal(2)
    await waitFor(() => r[ORDERS]!.policy.get()?.version === 2, 'orders adopts v2')
    await rejectsWith(r[ADMIN]!.policy.set({ roles: {}, collections: { x: { read: ['nobody'], write: [] } } }), 'ERR_INVALID_ARGUMENT')
  })

  it('a write waiting for acknowledgements that no connected peer may read says so in its ERR_ACK_TIMEOUT (only readers are asked)', async () => {
    const { r } = await cluster([ADMIN, SUPPORT])
    await r[ADMIN]!.policy.set(POLICY)
    await waitFor(() => r[SUPPORT]!.policy.get()?.version === 1, 'support adopts v1')
    await waitFor(() => r[ADMIN]!.peers().includes(SUPPORT), 'connected')
    const err = await rejectsWith(r[ADMIN]!.collection('payments').put('p-1', { amount: 5 }, { ack: { peers: 1, timeoutMs: 300 } }), 'ERR_ACK_TIMEOUT')
    expect(err.message).to.match(/0 of 1 peer\(s\) confirmed .*\(1 connected now, 0 of them allowed to read it by the cluster policy\)/)
  })

  it('forged, tampered, replayed and foreign policies are refused and counted; a late replica adopts the newest', async () => {
    const { hub, r } = await cluster([ADMIN, ORDERS])
    await r[ADMIN]!.policy.set(POLICY)
    await waitFor(() => r[ORDERS]!.policy.get()?.version === 1, 'v1')
    const evil = hub.createNetwork('e-evil')
    await startRawPeer(evil, r[ORDERS]!)
    const offer = async (bytes: Uint8Array, signedBy: string, signature: Uint8Array): Promise<void> => {
      await evil.request(ORDERS, encodePolicyOffer({ bytes, signedBy, signature }))
    }
    const open = { roles: { evil: ['e-evil'] }, collections: { '*': { read: ['*'], write: ['*'] } } }
    // Under the admin's id, signed with another key.
    const forged = encodePolicy(open, 9, 'default')
    await offer(forged, ADMIN, sign(null, signingInput(forged), keys.key('e-evil').priv))
    // The admin's real v1 signature over different bytes.
    const v1 = encodePolicy({ roles: POLICY.roles, collections: POLICY.collections }, 1, 'default')
    const realSig = sign(null, signingInput(v1), keys.key(ADMIN).priv)
    const tampered = encodePolicy(open, 1, 'default')
    await offer(tampered, ADMIN, realSig)
    // Signed by the admin's key, but for another namespace.
    const foreign = encodePolicy(open, 50, 'other')
    await offer(foreign, ADMIN, sign(null, signingInput(foreign), keys.key(ADMIN).priv))
    // Garbage bytes.
    await offer(new Uint8Array([1, 2, 3]), ADMIN, new Uint8Array(64))
    expect(r[ORDERS]!.policy.get()!.version).to.equal(1)
    expect(r[ORDERS]!.policy.get()!.roles.evil).to.equal(undefined)
    expect(r[ORDERS]!.stats().peers['e-evil']!.dropped.forbidden).to.be.greaterThan(0)

    // A replica that was away adopts the newest from whoever it meets first.
    await r[ADMIN]!.policy.set({ ...POLICY, roles: { ...POLICY.roles, orders: [ORDERS, 'd-late'] } })
    await waitFor(() => r[ORDERS]!.policy.get()?.version === 2, 'v2')
    hub.disconnect(ADMIN, ORDERS)
    const late = await memoryReplica({ network: hub.createNetwork('d-late'), trust: keys.trust('d-late', [ADMIN]) })
    replicas.push(late)
    hub.disconnect(ADMIN, 'd-late')
    await late.sync()
    expect(late.policy.get()!.version).to.equal(2)
  })

  it('the same version signed twice in a partition: every replica keeps the same one', async () => {
    const admins = ['a1', 'a2']
    const hub = new LoopbackHub({ connectOnStart: false })
    const a1 = await memoryReplica({ network: hub.createNetwork('a1'), trust: keys.trust('a1', admins) })
    const a2 = await memoryReplica({ network: hub.createNetwork('a2'), trust: keys.trust('a2', admins) })
    replicas.push(a1, a2)
    await a1.policy.set({ roles: { x: ['a1'] }, collections: {} })
    await a2.policy.set({ roles: { y: ['a2'] }, collections: {} })
    hub.connect('a1', 'a2')
    await a1.sync()
    await a2.sync()
    expect(a1.policy.get()!.version).to.equal(1)
    expect(a1.policy.get()).to.deep.equal(a2.policy.get())
  })

  it('a write the policy does not allow fails locally with ERR_FORBIDDEN and writes nothing; reads need read', async () => {
    const { r } = await cluster([ADMIN, ORDERS, SUPPORT])
    await r[ADMIN]!.policy.set(POLICY)
    await waitFor(() => r[SUPPORT]!.policy.get() !== undefined, 'adopted')
    const orders = r[SUPPORT]!.collection('orders')
    await rejectsWith(orders.put('o1', { total: 1 }), 'ERR_FORBIDDEN')
    await rejectsWith(orders.delete('o1'), 'ERR_FORBIDDEN')
    expect(await orders.get('o1')).to.equal(undefined)
    expect(() => r[SUPPORT]!.collection('payments'))
      .to.throw()
      .with.property('code', 'ERR_FORBIDDEN')
    expect(() => r[SUPPORT]!.collection('unlisted'))
      .to.throw()
      .with.property('code', 'ERR_FORBIDDEN')
    await r[ORDERS]!.collection('orders').put('o1', { total: 5 })
    await waitFor(async () => (await orders.get('o1')) !== undefined, 'support reads orders')
  })

  it('a member without write: its forged push and its anti-entropy upload are refused by every receiver; honest writes still arrive', async () => {
    const { hub, r } = await cluster([ADMIN, ORDERS])
    await r[ADMIN]!.policy.set(POLICY)
    await waitFor(() => r[ORDERS]!.policy.get() !== undefined, 'adopted')
    for (const replica of [r[ADMIN]!, r[ORDERS]!]) await replica.collection('orders').put('o-0', { total: 0 }) // subscribed to its topic
    const evil = hub.createNetwork(SUPPORT) // a real member (role support), hostile
    await startRawPeer(evil, r[ORDERS]!, ['/convergent/default/c/orders'])
    const backend = yjsBackend()
    const forged = (backend.put(backend.create(new Uint8Array(16).fill(3)), { total: 0, note: 'FORGED' }) as { delta: Uint8Array }).delta
    // Signed by its author (support), as in a cluster every push must be: refused for want of write.
    await evil.publish(
      '/convergent/default/c/orders',
      await signPush(
        'default',
        { collection: 'orders', backend: 'yjs', origin: SUPPORT, sequence: 1, entries: [['o-forged', forged]] },
        keys.trust(SUPPORT, [ADMIN]).sign,
      ),
    )
    const reply = decodeMessage(
      await evil.request(ADMIN, encodeDeltasRequest({ collection: 'orders', backend: 'yjs', entries: [['o-forged2', forged]] })),
      1 << 20,
    )
    expect(reply.type).to.equal(MessageType.Ack)
    await r[ORDERS]!.collection('orders').put('o-honest', { total: 7 })
    await waitFor(async () => (await r[ADMIN]!.collection('orders').get('o-honest')) !== undefined, 'honest write arrives')
    for (const replica of [r[ADMIN]!, r[ORDERS]!]) {
      const orders = replica.collection('orders')
      expect(await orders.get('o-forged')).to.equal(undefined)
      expect(await orders.get('o-forged2')).to.equal(undefined)
    }
    // The push at both receivers, the upload at the admin.
    await waitFor(
      () => r[ORDERS]!.stats().peers[SUPPORT]!.dropped.forbidden >= 1 && r[ADMIN]!.stats().peers[SUPPORT]!.dropped.forbidden >= 2,
      'all three counted',
    )
    // Rights requests from a member that may not write the counter.
    const rights = decodeMessage(await evil.request(ORDERS, encodeRightsRequest({ collection: 'stock', id: 's1', want: 5, version: null })), 1 << 20)
    expect(rights.type).to.equal(MessageType.Error)
  })

  it('a member without read never receives a byte of the collection, by gossip, anti-entropy or asking', async () => {
    const seen = new Map([[SUPPORT, [] as Buffer[]]])
    const { r } = await cluster([ADMIN, ORDERS, SUPPORT], { seen })
    await r[ADMIN]!.policy.set(POLICY)
    for (const id of [ORDERS, SUPPORT]) await waitFor(() => r[id]!.policy.get() !== undefined, 'adopted')
    const MARKER = 'card-4111-MARKER-7'
    await r[ADMIN]!.collection('payments').put('p1', { card: MARKER })
    await r[ADMIN]!.collection('orders').put('o1', { total: 3 })
    await waitFor(async () => (await r[ORDERS]!.collection('payments').get('p1')) !== undefined, 'orders reads payments')
    await waitFor(async () => (await r[SUPPORT]!.collection('orders').get('o1')) !== undefined, 'support reads orders')
    await r[SUPPORT]!.sync()
    await r[ORDERS]!.sync()
    // Asking directly: the collection's name in a request gets a refusal.
    const net = netOf(r[SUPPORT]!)
    for (const peer of [ADMIN, ORDERS]) {
      const reply = decodeMessage(
        await net.request(peer, encodeMessage(MessageType.RangeRequest, { c: 'payments', b: 'yjs', r: [[0, 4095]], s: 0, p: true })),
        1 << 20,
      )
      expect(reply.type).to.equal(MessageType.Error)
    }
    const all = Buffer.concat(seen.get(SUPPORT)!)
    expect(all.byteLength).to.be.greaterThan(0)
    expect(all.includes(Buffer.from(MARKER))).to.equal(false)
    // Not even its name, except in the policy (every member sees which collections exist and
    // who may read them) and in the refusals of its own requests for it.
    const visible: number[] = [MessageType.Error, MessageType.PolicyOffer, MessageType.PolicyResponse]
    const named = seen.get(SUPPORT)!.filter((b) => !visible.includes(b[2]!) && b.includes(Buffer.from('payments')))
    expect(named.map((b) => b[2])).to.deep.equal([])
  })

  it('peers the policy does not name: their gossip and requests are dropped', async () => {
    const { hub, r } = await cluster([ADMIN, ORDERS])
    await r[ADMIN]!.policy.set(POLICY)
    await waitFor(() => r[ORDERS]!.policy.get() !== undefined, 'adopted')
    await r[ORDERS]!.collection('orders').put('o-0', { total: 0 }) // subscribed to its topic
    const outsider = hub.createNetwork('x-outsider')
    await startRawPeer(outsider, r[ORDERS]!, ['/convergent/default/c/orders'])
    const reply = decodeMessage(await outsider.request(ORDERS, encodeMessage(MessageType.RootsRequest, {})), 1 << 20)
    expect(reply.type).to.equal(MessageType.Error)
    const backend = yjsBackend()
    const delta = (backend.put(backend.create(new Uint8Array(16).fill(4)), { x: 1 }) as { delta: Uint8Array }).delta
    await outsider.publish(
      '/convergent/default/c/orders',
      encodePush({ collection: 'orders', backend: 'yjs', origin: 'x-outsider', sequence: 1, entries: [['o-x', delta]] }),
    )
    await waitFor(() => (r[ORDERS]!.stats().peers['x-outsider']?.dropped.forbidden ?? 0) >= 2, 'both dropped')
    expect(await r[ORDERS]!.collection('orders').get('o-x')).to.equal(undefined)
  })

  it('revoking a writer: its earlier writes that reached a remaining writer end on every replica, its later ones on none', async () => {
    const W = 'w-revoked'
    const B = 'b-writer'
    const R = 'r-reader'
    const { hub, r } = await cluster([ADMIN, W, B, R])
    const rules = { docs: { read: ['*'], write: ['writer'] } }
    await r[ADMIN]!.policy.set({ roles: { writer: [ADMIN, W, B], reader: [R] }, collections: rules })
    for (const id of [W, B, R]) await waitFor(() => r[id]!.policy.get()?.version === 1, `${id} adopts v1`)
    for (const id of [ADMIN, B, R]) r[id]!.collection('docs') // subscribed to its gossip
    // W reaches only the admin: what it writes now reaches the others only through the admin.
    hub.disconnect(W, B)
    hub.disconnect(W, R)
    hub.disconnect(ADMIN, B)
    hub.disconnect(ADMIN, R)
    await r[W]!.collection('docs').put('before', { by: 'w' })
    await waitFor(async () => (await r[ADMIN]!.collection('docs').get('before')) !== undefined, 'the admin has it')
    // The revocation reaches B and R (from the admin) before W's write does; W, cut off, does not learn of it.
    hub.disconnect(W, ADMIN)
    hub.connect(ADMIN, B)
    hub.connect(ADMIN, R)
    await r[ADMIN]!.policy.set({ roles: { writer: [ADMIN, B], reader: [R] }, collections: rules, revoked: [W] })
    for (const id of [B, R]) await waitFor(() => r[id]!.policy.get()?.revoked?.includes(W) === true, `${id} knows W is revoked`)
    // W writes on after its revocation, and now reaches everyone.
    await r[W]!.collection('docs').put('after', { by: 'w' })
    hub.connect(W, ADMIN)
    hub.connect(W, B)
    hub.connect(W, R)
    for (const id of [ADMIN, B, R]) await r[id]!.sync()
    await r[W]!.sync().catch(() => undefined)
    for (const id of [ADMIN, B, R]) {
      const docs = r[id]!.collection('docs')
      expect(await docs.get('before'), `${id}: the write W made while it was a writer, relayed by the admin`).to.deep.equal({ by: 'w' })
      expect(await docs.get('after'), `${id}: the write W made after its revocation`).to.equal(undefined)
    }
    expect(r[B]!.stats().peers[W]?.dropped.forbidden ?? 0, "B dropped W's traffic").to.be.greaterThan(0)
  })

  it('counter rights cannot be drained by repeated requests', async () => {
    const { r } = await cluster([ADMIN, ORDERS])
    const stock = await adminStockOf100(r, POLICY)
    // ORDERS may write stock: it asks a dozen times over its own connection.
    const granted: number[] = []
    const net = netOf(r[ORDERS]!)
    for (let i = 0; i < 12; i++) {
      const reply = decodeMessage(await net.request(ADMIN, encodeRightsRequest({ collection: 'stock', id: 's1', want: 100, version: null })), 1 << 20)
      granted.push((reply.body as { g: number }).g)
    }
    const total = granted.reduce((a, b) => a + b, 0)
    expect(total).to.be.at.most(50)
    expect(await stock.rights('s1')).to.be.at.least(50)
  })
})

describe('Trust: a collection whose backend cannot carry signed heads', function () {
  this.timeout(30_000)
  const { keys, replicas } = trustSuite()

  it('in a cluster, opening a Yjs collection more than one member may write warns once that what anti-entropy relays of it is vouched for, not signed — also when a new policy makes it so; one writer, Automerge, or no cluster: no warning', async () => {
    const warnings: string[] = []
    const logger = { warn: (m: string) => warnings.push(m), error: (m: string) => warnings.push(m) }
    const vouched = () => warnings.filter((w) => w.includes('more than one member may write it') && w.includes('vouched for'))
    const hub = new LoopbackHub()
    const member = await trustMember(keys, replicas, hub, ADMIN, { logger })
    member.collection('notes') // no policy yet: every key holder may write
    member.collection('notes')
    member.collection('ledger', { backend: 'automerge' })
    expect(vouched()).to.have.length(1)
    expect(vouched()[0]).to.include("collection 'notes' uses the 'yjs' backend")
    const policy = (soloWriters: string[]) => ({
      roles: { admin: [ADMIN], orders: [ORDERS] },
      collections: {
        solo: { read: ['*'], write: soloWriters },
        shared: { read: ['*'], write: ['admin', 'orders'] },
        ledger: { read: ['*'], write: ['admin', 'orders'] },
      },
    })
    await member.policy.set(policy(['admin']))
    member.collection('solo')
    member.collection('shared')
    expect(vouched().map((w) => w.slice(0, w.indexOf(' uses')))).to.deep.equal(["collection 'notes'", "collection 'shared'"])
    await member.policy.set(policy(['admin', 'orders']))
    expect(vouched()).to.have.length(3)
    expect(vouched()[2]).to.include("collection 'solo'")
    const plain = await memoryReplica({ network: hub.createNetwork('plain'), logger, syncIntervalMs: 0 })
    replicas.push(plain)
    plain.collection('other')
    expect(vouched()).to.have.length(3)
  })
})
