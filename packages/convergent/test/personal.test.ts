// Personal fields and crypto-shredding (issue #14, item 2), with classic-level on disk and a
// loopback network: personal fields are sealed before they enter the CRDT (a byte search of
// every file of every folder finds no marker), readers see plain values, a non-reader never
// receives a subject key, forget() destroys the keys on every replica — one that was offline
// too, once it reconnects — and no folder, dumped record by record, can open them again.
import { randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'chai'
import { LoopbackHub, Replica, silentLogger, type PersonalOptions } from '@convergent/core'
import { Keyring, spyNetwork } from '@convergent/core/testing'
import { decodeMessage, encodeKeysOffer, MessageType, storedSubjectKeys } from '@convergent/core/internal'
import { classicLevelStore, type LevelStore } from '@convergent/level'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { dumpCollection } from '../src/index.js'
import { BACKENDS, folderBytes, tempDir, waitFor } from './helpers.js'
import { giveKeys, takeKeys } from './personal-helpers.js'

const ADMIN = 'a-admin'
const SUPPORT = 'b-support'
const OTHER = 'c-other'
const LATE = 'd-late'
const POLICY = {
  roles: { admin: [ADMIN], support: [SUPPORT, LATE], other: [OTHER] },
  collections: {
    customers: { read: ['support'], write: ['admin'] },
    orders: { read: ['*'], write: ['admin'] },
  },
}
interface Customer {
  customerId: string
  name?: string
  email?: string
  address?: unknown
}
const PERSONAL: PersonalOptions<Customer> = { subject: (c) => c.customerId, fields: ['email', 'address'] }

interface Node {
  replica: Replica
  store: LevelStore
  dir: string
}

describe('Personal fields: sealed per subject, keys only to readers, forget() shreds them everywhere', function () {
  this.timeout(60_000)
  const keyring = new Keyring()
  let opened: Replica[] = []
  let cleanups: (() => Promise<void>)[] = []

  afterEach(async function () {
    await Promise.all(opened.map((r) => r.close()))
    opened = []
    await Promise.all(cleanups.map((c) => c()))
    cleanups = []
  })

  async function folder(): Promise<string> {
    const { dir, cleanup } = await tempDir('convergent-personal-')
    cleanups.push(cleanup)
    return dir
  }

  async function start(
    hub: LoopbackHub,
    id: string,
    options: { dir?: string; trust?: boolean; seen?: Buffer[]; atRestKey?: Uint8Array; backend?: string } = {},
  ): Promise<Node> {
    const dir = options.dir ?? (await folder())
    const store = classicLevelStore(join(dir, 'db'), options.atRestKey === undefined ? {} : { encryption: { key: options.atRestKey } })
    let network = hub.createNetwork(id)
    if (options.seen !== undefined) network = spyNetwork(network, { received: (data: Uint8Array) => void options.seen!.push(Buffer.from(data)) })
    const backends = options.backend === 'automerge' ? [automergeBackend(), yjsBackend()] : [yjsBackend(), automergeBackend()]
    const replica = await Replica.open({
      store,
      backends,
      network,
      logger: silentLogger,
      syncIntervalMs: 0,
      ...(options.trust === false ? {} : { trust: keyring.trust(id, [ADMIN]) }),
    })
    opened.push(replica)
    return { replica, store, dir }
  }

  async function close(node: Node): Promise<void> {
    await node.replica.close()
    opened = opened.filter((r) => r !== node.replica)
  }

  async function rawKeys(node: Node): Promise<Buffer[]> {
    return [...(await storedSubjectKeys(node.store)).values()].map((k) => Buffer.from(k.key))
  }

  for (const backend of BACKENDS) {
    it(`${backend}: personal fields never reach a folder in plain; a reader reads them; a non-reader never receives a key`, async function () {
      const hub = new LoopbackHub()
      const seenByOther: Buffer[] = []
      const admin = await start(hub, ADMIN, { backend })
      const support = await start(hub, SUPPORT, { backend })
      const other = await start(hub, OTHER, { seen: seenByOther, backend })
      await admin.replica.policy.set(POLICY)
      for (const n of [support, other]) await waitFor(() => n.replica.policy.get()?.version === 1, 'policy adopted')
      const customers = admin.replica.collection<Customer>('customers', { personal: PERSONAL })
      const marker = `mkr-${randomBytes(8).toString('hex')}`
      await customers.put('c1', { customerId: 'cust-42', name: 'Ada', email: `${marker}@example.com`, address: { city: `${marker}-city` } })
      await admin.replica.collection('orders').put('o1', { customer: 'c1', total: 12 })
      const raw = await customers.update('c1', (c) => {
        c.name = 'Ada L.'
      })
      expect(raw.email).to.equal(`${marker}@example.com`)
      await admin.replica.sync()
      await other.replica.sync()
      await support.replica.sync()
      // The reader reads plain values, local and replicated (get, entries, subscribe).
      const supportCustomers = support.replica.collection<Customer>('customers')
      await waitFor(async () => (await supportCustomers.get('c1'))?.email === `${marker}@example.com`, 'support reads the email')
      expect(await supportCustomers.get('c1')).to.deep.equal({
        customerId: 'cust-42',
        name: 'Ada L.',
        email: `${marker}@example.com`,
        address: { city: `${marker}-city` },
      })
      const entries: unknown[] = []
      for await (const [, v] of supportCustomers.entries()) entries.push(v)
      expect(entries).to.deep.equal([await supportCustomers.get('c1')])
      const events: unknown[] = []
      supportCustomers.subscribe((e) => events.push(e.value))
      await customers.update('c1', (c) => {
        c.address = { city: `${marker}-moved` }
      })
      await admin.replica.sync()
      await waitFor(() => events.length > 0 && JSON.stringify(events.at(-1)).includes(`${marker}-moved`), 'support is told the new address')
      expect(await other.replica.collection('orders').get('o1')).to.deep.equal({ customer: 'c1', total: 12 })
      // Only ciphertext on disk, on every replica (without encryption at rest).
      for (const n of [admin, support, other]) {
        const bytes = await folderBytes(n.dir)
        expect(bytes.includes(marker), `${n.dir} holds the marker`).to.equal(false)
        expect(bytes.includes('$sealed') || n === other, 'the sealed envelope is stored').to.equal(true)
      }
      // The non-reader holds no key and never received one (nor the collection's values).
      const keys = await rawKeys(admin)
      expect(keys).to.have.length(1)
      expect(await rawKeys(support)).to.deep.equal(keys)
      expect(await rawKeys(other)).to.deep.equal([])
      const received = Buffer.concat(seenByOther)
      expect(received.length).to.be.greaterThan(0)
      expect(received.includes(keys[0]!)).to.equal(false)
      expect(received.includes(marker)).to.equal(false)
    })
  }

  it('forget(): every replica loses the fields, an offline one once it reconnects; no folder holds the key; a re-offered key is refused', async function () {
    const hub = new LoopbackHub()
    const atRestKey = randomBytes(32)
    const admin = await start(hub, ADMIN)
    const support = await start(hub, SUPPORT, { atRestKey })
    const late = await start(hub, LATE)
    await admin.replica.policy.set(POLICY)
    for (const n of [support, late]) await waitFor(() => n.replica.policy.get()?.version === 1, 'policy adopted')
    const customers = admin.replica.collection<Customer>('customers', { personal: PERSONAL })
    const marker = `mkr-${randomBytes(8).toString('hex')}`
    const keep = `keep-${randomBytes(8).toString('hex')}`
    await customers.put('c1', { customerId: 'cust-42', name: 'Ada', email: `${marker}@example.com`, address: `${marker} street` })
    await customers.put('c2', { customerId: 'cust-7', name: 'Bob', email: `${keep}@example.com` })
    for (const n of [admin, support, late]) await n.replica.sync()
    for (const n of [support, late]) await waitFor(async () => (await n.replica.collection<Customer>('customers').get('c1'))?.email !== undefined, 'replicated')
    const keys = await rawKeys(admin)
    expect(keys).to.have.length(2)
    const forgottenKey = Buffer.from([...(await storedSubjectKeys(admin.store)).values()].find((k) => k.subject === 'cust-42')!.key)
    // Before forget: the folders' own keys open the fields (the dump works), and the late replica holds the key.
    const dumped = async (n: Node, key?: Uint8Array): Promise<string> => {
      const lines: string[] = []
      for await (const r of dumpCollection(n.dir, 'customers', key === undefined ? {} : { encryption: { key } })) lines.push(JSON.stringify(r))
      return lines.join('\n')
    }
    expect((await folderBytes(late.dir)).includes(forgottenKey)).to.equal(true)
    // The late replica goes offline; a reader may not forget; the admin forgets.
    await close(late)
    expect((await dumped(late)).includes(marker)).to.equal(true)
    const supportCustomers = support.replica.collection<Customer>('customers', { personal: PERSONAL })
    try {
      await support.replica.forget('cust-42')
      expect.fail('a reader forgot')
    } catch (err) {
      expect((err as { code?: string }).code).to.equal('ERR_FORBIDDEN')
    }
    expect(await supportCustomers.get('c1')).to.have.property('email')
    await admin.replica.forget('cust-42')
    await waitFor(async () => (await supportCustomers.get('c1'))?.email === undefined, 'support forgets (the tombstone arrives at once)')
    for (const c of [customers, supportCustomers]) {
      expect(await c.get('c1')).to.deep.equal({ customerId: 'cust-42', name: 'Ada' })
      expect((await c.get('c2'))?.email).to.equal(`${keep}@example.com`)
    }
    // The forgotten subject's personal fields cannot be written again; others can.
    try {
      await customers.put('c1', { customerId: 'cust-42', name: 'Ada', email: 'again@example.com' })
      expect.fail('wrote a forgotten subject')
    } catch (err) {
      expect((err as { code?: string }).code).to.equal('ERR_FORGOTTEN')
    }
    await customers.update('c1', (c) => {
      c.name = 'A.'
    })
    // The offline replica comes back: it takes the tombstone and destroys its key.
    const back = await start(hub, LATE, { dir: late.dir })
    await waitFor(() => back.replica.peers().length === 2, 'late reconnected')
    await back.replica.sync()
    await waitFor(async () => (await back.replica.collection<Customer>('customers').get('c1'))?.email === undefined, 'late forgets')
    expect((await back.replica.collection<Customer>('customers').get('c2'))?.email).to.equal(`${keep}@example.com`)
    // The key, offered again by a raw peer (as a stale copy would), is refused.
    const evil = hub.createNetwork(SUPPORT + '-stale')
    await evil.start({ onMessage: () => {}, onRequest: async () => new Uint8Array(), onPeerConnected: () => {}, onPeerDisconnected: () => {} })
    await waitFor(() => admin.replica.peers().includes(evil.peerId), 'raw peer connected')
    const reply = decodeMessage(await evil.request(ADMIN, encodeKeysOffer([], [{ collection: 'customers', subject: 'cust-42', key: forgottenKey }])), 1 << 20)
    expect(reply.type).to.not.equal(MessageType.KeysResponse)
    await back.replica.sync() // and a member that still had it would be refused the same way
    expect((await rawKeys(admin)).some((k) => k.equals(forgottenKey))).to.equal(false)
    await evil.stop()
    // Every folder, closed and read file by file, then reopened and dumped record by record:
    // no marker, no key bytes — with the at-rest key too.
    const nodes = [admin, support, back]
    for (const n of nodes) await close(n)
    for (const n of nodes) {
      const bytes = await folderBytes(n.dir)
      if (process.env.DEBUG_PERSONAL)
        for (const entry of await readdir(n.dir, { withFileTypes: true, recursive: true }))
          if (entry.isFile() && (await readFile(join(entry.parentPath, entry.name))).includes(forgottenKey)) console.log(nodes.indexOf(n), entry.name)
      expect(bytes.includes(forgottenKey), `${n.dir} holds the forgotten key`).to.equal(false)
      expect(bytes.includes(marker)).to.equal(false)
      const dump = await dumped(n, n === support ? atRestKey : undefined)
      expect(dump.includes(marker), `${n.dir} dump shows the marker`).to.equal(false)
      expect(dump.includes('not openable')).to.equal(true) // the sealed history is still there, shut
      expect(dump.includes(`${keep}@example.com`)).to.equal(true) // other subjects still open
    }
  })

  it('without a policy: keys reach every peer and anyone may forget; concurrent keys for one subject both open', async function () {
    const hub = new LoopbackHub()
    const a = await start(hub, 'p-a', { trust: false })
    const b = await start(hub, 'p-b', { trust: false })
    const ca = a.replica.collection<Customer>('customers', { personal: PERSONAL })
    const cb = b.replica.collection<Customer>('customers', { personal: PERSONAL })
    hub.disconnect('p-a', 'p-b')
    await ca.put('x1', { customerId: 's', email: 'one@example.com' })
    await cb.put('x2', { customerId: 's', email: 'two@example.com' })
    hub.heal()
    await waitFor(() => a.replica.peers().length === 1, 'healed')
    await a.replica.sync()
    for (const c of [ca, cb]) {
      await waitFor(async () => (await c.get('x1'))?.email === 'one@example.com' && (await c.get('x2'))?.email === 'two@example.com', 'both keys open')
    }
    expect(await rawKeys(a)).to.have.length(2)
    await b.replica.forget('s')
    await waitFor(async () => (await ca.get('x1'))?.email === undefined && (await ca.get('x2'))?.email === undefined, 'a forgets both keys')
    await waitFor(async () => (await rawKeys(a)).length === 0, 'a deletes both keys from its store') // memory goes first, the store a moment later
  })

  it('update() on a replica that does not hold the subject key keeps the sealed fields it cannot see', async function () {
    // Such a replica (the key has not arrived yet) sees the entity without its personal fields:
    // update() must not take their absence from the draft for a deletion, or one write there
    // deletes the customer's email on every replica. (put() replaces the value: see README.)
    const hub = new LoopbackHub()
    const dir = await folder()
    let node = await start(hub, 'p-solo', { dir, trust: false })
    await node.replica.collection<Customer>('customers', { personal: PERSONAL }).put('c1', { customerId: 'cust-1', name: 'Ada', email: 'ada@example.com' })
    await close(node)
    const keys = await takeKeys(dir) // as on a replica the key has not reached yet
    expect(keys, 'the key record').to.have.length(1)
    node = await start(hub, 'p-solo', { dir, trust: false })
    let customers = node.replica.collection<Customer>('customers', { personal: PERSONAL })
    expect(await customers.get('c1')).to.deep.equal({ customerId: 'cust-1', name: 'Ada' })
    const returned = await customers.update('c1', (c) => {
      c.name = 'Ada L.'
    })
    expect(returned, 'the application sees what it could read').to.deep.equal({ customerId: 'cust-1', name: 'Ada L.' })
    await close(node)

    await giveKeys(dir, keys) // the key arrives: the email is still there, under the new name
    node = await start(hub, 'p-solo', { dir, trust: false })
    customers = node.replica.collection<Customer>('customers', { personal: PERSONAL })
    expect(await customers.get('c1')).to.deep.equal({ customerId: 'cust-1', name: 'Ada L.', email: 'ada@example.com' })
  })
})
