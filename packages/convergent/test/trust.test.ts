// The cluster policy on real libp2p nodes (TCP on 127.0.0.1, classic-level on disk): an admin
// signs it with its peer key, every replica verifies and adopts it; writes and reads follow it;
// a member without read never stores a byte of the collection; a peer the policy does not name
// is disconnected and kept out.
import { join } from 'node:path'
import { expect } from 'chai'
import { createLibp2pNetwork, folderPeerId, generateClusterKey, isConvergentError, open } from '../src/index.js'
import { folderBytes, libp2pReplicas, startCluster, waitFor } from './helpers.js'

describe('open({ cluster: { key, admins } }): the signed policy over real libp2p', function () {
  this.timeout(60_000)
  const suite = libp2pReplicas('convergent-trust-')
  const { folder, start } = suite

  it('admin sets the policy; writes, reads and membership follow it on every replica', async function () {
    const {
      adminId,
      admin,
      members: [orders, support],
      dirs: [, ordersDir, supportDir],
    } = await startCluster(suite, 2)
    if (orders === undefined || support === undefined || ordersDir === undefined || supportDir === undefined) throw new Error('two members')
    await waitFor(() => admin.peers().length === 2 && support.peers().length === 2, 'all connected')

    await admin.policy.set({
      roles: { admin: [adminId], orders: [orders.peerId], support: [support.peerId] },
      collections: {
        orders: { read: ['*'], write: ['orders'] },
        payments: { read: ['orders'], write: ['admin'] },
      },
    })
    await waitFor(() => orders.policy.get()?.version === 1 && support.policy.get()?.version === 1, 'adopted everywhere')
    expect(support.policy.get()!.signedBy).to.equal(adminId)

    // Writes: allowed ones replicate, others fail locally and write nothing.
    await orders.collection('orders').put('o-1', { total: 12 })
    for (const r of [admin, support]) {
      await waitFor(async () => {
        if ((await r.collection('orders').get('o-1')) !== undefined) return true
        await r.sync()
        return false
      }, 'o-1 arrives')
    }
    try {
      await support.collection('orders').put('o-2', { total: 1 })
      expect.fail('support wrote orders')
    } catch (err) {
      expect(isConvergentError(err, 'ERR_FORBIDDEN'), String(err)).to.equal(true)
    }
    expect(await admin.collection('orders').get('o-2')).to.equal(undefined)

    // Read control: the marker reaches orders, never support's folder.
    const MARKER = 'pan-5500-0000-MARKER'
    await admin.collection('payments').put('p-1', { card: MARKER })
    await waitFor(async () => {
      if ((await orders.collection('payments').get('p-1')) !== undefined) return true
      await orders.sync()
      return false
    }, 'payments reach orders')
    await support.sync()
    await admin.sync()
    await orders.sync()
    expect(() => support.collection('payments'))
      .to.throw()
      .with.property('code', 'ERR_FORBIDDEN')
    expect((await folderBytes(ordersDir)).includes(MARKER)).to.equal(true) // the search works
    expect((await folderBytes(supportDir)).includes(MARKER)).to.equal(false)

    // Revocation of membership: support leaves the policy and is disconnected everywhere.
    await admin.policy.set({
      roles: { admin: [adminId], orders: [orders.peerId] },
      collections: { orders: { read: ['*'], write: ['orders'] }, payments: { read: ['orders'], write: ['admin'] } },
    })
    await waitFor(() => orders.policy.get()?.version === 2, 'orders adopts v2')
    await waitFor(() => !admin.peers().includes(support.peerId) && !orders.peers().includes(support.peerId), 'support disconnected')
    await orders.collection('orders').put('o-3', { total: 3 })
    await new Promise((resolve) => setTimeout(resolve, 1_000)) // support keeps redialling
    expect(admin.peers()).not.to.include(support.peerId)
    expect(await support.collection('orders').get('o-3')).to.equal(undefined)
  })

  it('a key holder the policy does not name cannot connect', async function () {
    const key = generateClusterKey()
    const adminDir = await folder()
    const adminId = await folderPeerId(adminDir)
    const admin = await start({ dir: adminDir, cluster: { key, admins: [adminId] } })
    await admin.policy.set({ roles: { admin: [adminId] }, collections: { '*': { read: ['*'], write: ['*'] } } })
    const stranger = await start({ cluster: { key, admins: [adminId] }, peers: [admin.multiaddrs[0]!] })
    await new Promise((resolve) => setTimeout(resolve, 1_500))
    expect(admin.peers()).to.deep.equal([])
    expect(stranger.peers()).to.deep.equal([])
  })

  it('folderPeerId(dir) names the peer id open({ dir }) runs as; a network built by the application takes cluster: { admins } alone', async function () {
    const key = generateClusterKey()
    const [adminDir, memberDir] = [await folder(), await folder()]
    const adminId = await folderPeerId(adminDir)
    expect(await folderPeerId(adminDir)).to.equal(adminId) // the same identity, not a new one
    const memberId = await folderPeerId(memberDir)
    const admin = await start({ dir: adminDir, cluster: { key, admins: [adminId] } })
    expect(admin.peerId).to.equal(adminId)
    // The application's own network (its gater, its settings), keyed by it: cluster carries the admins only.
    const network = await createLibp2pNetwork({
      namespace: 'default',
      clusterKey: key,
      identityFile: join(memberDir, 'peer-id.key'),
      peers: [admin.multiaddrs[0]!],
      redialMinMs: 50,
      redialMaxMs: 200,
    })
    const member = await start({ dir: memberDir, network, cluster: { admins: [adminId] } })
    expect(member.peerId).to.equal(memberId)
    await admin.policy.set({ roles: { admin: [adminId], member: [memberId] }, collections: { notes: { read: ['*'], write: ['admin'] } } })
    await waitFor(async () => {
      if (member.policy.get()?.version === 1) return true
      await member.sync()
      return false
    }, 'the member adopts the policy')
    try {
      await member.collection('notes').put('n-1', { text: 'x' })
      expect.fail('a reader wrote')
    } catch (err) {
      expect(isConvergentError(err, 'ERR_FORBIDDEN'), String(err)).to.equal(true)
    }
    // Without a network passed in, a cluster needs its key.
    try {
      await open({ dir: await folder(), cluster: { admins: [adminId] } })
      expect.fail('opened without a key')
    } catch (err) {
      expect(isConvergentError(err, 'ERR_INVALID_ARGUMENT'), String(err)).to.equal(true)
    }
  })

  it('policy.set refuses members that are not peer ids and revoking an admin (ERR_INVALID_ARGUMENT), and signs nothing', async function () {
    const key = generateClusterKey()
    const adminDir = await folder()
    const adminId = await folderPeerId(adminDir)
    const admin = await start({ dir: adminDir, cluster: { key, admins: [adminId] } })
    const rules = { '*': { read: ['*'], write: ['*'] } }
    const refused = async (doc: Parameters<typeof admin.policy.set>[0], pattern: RegExp): Promise<void> => {
      try {
        await admin.policy.set(doc)
        expect.fail('accepted')
      } catch (err) {
        expect(isConvergentError(err, 'ERR_INVALID_ARGUMENT'), String(err)).to.equal(true)
        expect((err as Error).message).to.match(pattern)
      }
    }
    // A typo would lock that member out unsaid: none of its signatures could ever verify.
    await refused({ roles: { admin: [adminId], staff: ['12D3KooWtypo'] }, collections: rules }, /role 'staff' names "12D3KooWtypo", which is not a peer id/)
    await refused({ roles: { admin: [adminId] }, collections: rules, revoked: ['nope'] }, /revoked names "nope"/)
    await refused({ roles: { admin: [adminId] }, collections: rules, revoked: [adminId] }, /admins cannot be revoked/)
    expect(admin.policy.get(), 'nothing signed').to.equal(undefined)
    const member = await folderPeerId(await folder())
    expect((await admin.policy.set({ roles: { admin: [adminId], staff: [member] }, collections: rules })).version).to.equal(1)
  })
})
