import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { open, silentLogger } from '../src/index.js'
import { cli, rows, waitFor } from './helpers.js'

describe('convergent CLI', function () {
  this.timeout(60_000)
  let dir = ''

  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'convergent-cli-'))
    const replica = await open({ dir, network: false })
    const products = replica.collection('products')
    await products.put('mug', { name: 'Mug', price: 12 })
    await products.put('cup', { name: 'Cup', price: 8 })
    await products.update('mug', (p) => void (p.price = 10))
    await products.delete('cup')
    await replica.collection('orders', { backend: 'automerge' }).put('o1', { sku: 'mug', qty: 2 })
    await replica.close()
  })

  after(function () {
    rmSync(dir, { recursive: true, force: true })
  })

  it('lists collections with their backend and live entity count', async function () {
    const r = await cli('collections', dir)
    expect(r.code, r.stderr).to.equal(0)
    expect(r.stdout).to.equal('orders\tautomerge\t1 entity\nproducts\tyjs\t1 entity\n')
  })

  it('lists ids, values, one entity, and the change feed with origins', async function () {
    expect((await cli('ls', dir, 'products')).stdout).to.equal('mug\n')
    expect((await cli('ls', dir, 'products', '--values')).stdout).to.equal('["mug",{"name":"Mug","price":10}]\n')
    expect(JSON.parse((await cli('get', dir, 'orders', 'o1')).stdout)).to.deep.equal({ sku: 'mug', qty: 2 })
    const feed = (await cli('feed', dir, 'products')).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number; id: string; kind: string; origin: string })
    expect(feed.map((e) => [e.seq, e.id, e.kind, e.origin])).to.deep.equal([
      [1, 'mug', 'put', 'local'],
      [2, 'cup', 'put', 'local'],
      [3, 'mug', 'put', 'local'],
      [4, 'cup', 'delete', 'local'],
    ])
    const since = (await cli('feed', dir, 'products', '--since', '3')).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number; id: string; kind: string })
    expect(since.map((e) => [e.seq, e.id, e.kind])).to.deep.equal([[4, 'cup', 'delete']])
  })

  it('fails with one clear line: no data, unknown collection, missing entity, store in use', async function () {
    const empty = mkdtempSync(join(tmpdir(), 'convergent-cli-empty-'))
    try {
      const none = await cli('collections', empty)
      expect(none.code).to.equal(1)
      expect(none.stderr).to.match(/holds no Convergent data/)
    } finally {
      rmSync(empty, { recursive: true, force: true })
    }
    const unknown = await cli('ls', dir, 'nope')
    expect(unknown.code).to.equal(1)
    expect(unknown.stderr).to.match(/no collection 'nope'; this replica has: orders, products|no collection 'nope'; this replica has: products, orders/)
    const missing = await cli('get', dir, 'products', 'cup')
    expect(missing.code).to.equal(1)
    expect(missing.stderr).to.match(/no entity 'cup'/)

    const running = await open({ dir, network: false })
    try {
      const locked = await cli('collections', dir)
      expect(locked.code).to.equal(1)
      expect(locked.stderr).to.match(/locked/)
      expect(locked.stderr.trim().split('\n')).to.have.length(1)
    } finally {
      await running.close()
    }
  })

  it('drops a collection: gone from the folder, and refused from peers when the service opens again', async function () {
    const scratch = mkdtempSync(join(tmpdir(), 'convergent-cli-drop-'))
    try {
      const replica = await open({ dir: scratch, network: false })
      await replica.collection('junk').put('k', { v: 1 })
      await replica.collection('keep').put('k', { v: 1 })
      await replica.close()
      const r = await cli('drop', scratch, 'junk')
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout).to.equal("dropped 'junk'\n")
      expect((await cli('collections', scratch)).stdout).to.equal('keep\tyjs\t1 entity\n')
      expect((await cli('drop', scratch, 'nothing')).stderr).to.match(/no collection 'nothing'/)
    } finally {
      rmSync(scratch, { recursive: true, force: true })
    }
  })

  it('cluster-key prints a new key each time: 64 hex characters that open({ cluster: { key } }) takes', async function () {
    const [first, second] = await Promise.all([cli('cluster-key'), cli('cluster-key')])
    for (const r of [first, second]) {
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout).to.match(/^[0-9a-f]{64}\n$/)
    }
    expect(first.stdout).not.to.equal(second.stdout)
    const replica = await open({ network: false, cluster: { key: first.stdout } })
    await replica.close()
  })
})

describe('convergent audit', function () {
  this.timeout(60_000)
  let dir = ''
  let writerId = ''
  let selfId = ''

  // A real classic-level folder written by two replicas over real libp2p (127.0.0.1): the audited
  // one writes o-1 itself; the other writes o-2 and updates o-1, which arrive by gossip or sync.
  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'convergent-cli-audit-'))
    const audited = await open({ dir, logger: silentLogger, syncIntervalMs: 0, namespace: 'audit-test' })
    const writer = await open({ logger: silentLogger, syncIntervalMs: 0, namespace: 'audit-test', peers: [audited.multiaddrs[0]!] })
    try {
      selfId = audited.peerId
      writerId = writer.peerId
      await waitFor(() => audited.peers().includes(writerId) && writer.peers().includes(selfId), 'connected')
      await audited.collection('orders').put('o-1', { qty: 1 })
      await waitFor(async () => (await writer.collection('orders').get('o-1')) !== undefined || (await writer.sync(), false), 'o-1 reaches the writer')
      await writer.collection('orders').put('o-2', { qty: 2 })
      await writer.collection('orders').update('o-1', (o) => void (o.qty = 3))
      await waitFor(async () => {
        const orders = audited.collection('orders')
        if ((await orders.get('o-2')) !== undefined && (await orders.get('o-1'))?.qty === 3) return true
        await audited.sync()
        return false
      }, "the writer's changes reach the audited replica")
    } finally {
      await writer.close()
      await audited.close()
    }
  })

  after(function () {
    rmSync(dir, { recursive: true, force: true })
  })

  it('lists who changed what and when; outside a cluster with admins nothing is signed: remote changes are unsigned, vouched for by the peer that sent them', async function () {
    const r = await cli('audit', dir, 'orders')
    expect(r.code, r.stderr).to.equal(0)
    const header = r.stdout.split('\n').filter((l) => l.startsWith('#'))
    expect(header[0]).to.contain(`this replica is ${selfId}`)
    expect(header.join('\n'))
      .to.match(/re-verified here offline/)
      .and.to.match(/'unsigned: vouched by <peer>': a change anti-entropy brought \(or gossip where nothing is signed/)
      .and.to.contain('# namespace: not checked (pass --namespace)')
    expect(header.at(-1)).to.equal('# 3 changes: 0 verified, 0 TAMPERED, 2 unsigned, 1 local')
    const list = rows(r.stdout)
    expect(list.map(([seq, , id, kind, author, signature]) => [seq, id, kind, author, signature])).to.deep.equal([
      ['1', 'o-1', 'put', selfId, `local (${selfId})`],
      ['2', 'o-2', 'remote', '-', `unsigned: vouched by ${writerId}`],
      ['3', 'o-1', 'remote', '-', `unsigned: vouched by ${writerId}`],
    ])
    for (const [, time] of list) expect(Number.isNaN(Date.parse(time!))).to.equal(false)

    const one = await cli('audit', dir, 'orders', 'o-1', '--json')
    expect(one.code, one.stderr).to.equal(0)
    const entries = one.stdout
      .trim()
      .split('\n')
      .filter((l) => !l.startsWith('#'))
      .map((l) => JSON.parse(l) as { seq: number; id: string; origin: string; author: string | null; signature: string })
    expect(entries.map((e) => [e.seq, e.id, e.origin, e.author, e.signature])).to.deep.equal([
      [1, 'o-1', 'local', selfId, 'local'],
      [3, 'o-1', writerId, null, 'unsigned'],
    ])
  })

  it('an unknown collection is a clear error with a non-zero exit code; --help says what is verified', async function () {
    const unknown = await cli('audit', dir, 'payments')
    expect(unknown.code).to.equal(1)
    expect(unknown.stdout).to.equal('')
    expect(unknown.stderr.trim()).to.equal("convergent: no collection 'payments'; this replica has: orders")
    const help = await cli('audit', '--help')
    expect(help.code).to.equal(0)
    expect(help.stdout.replace(/\s+/g, ' '))
      .to.match(/exit code 1 if any entry is TAMPERED/)
      .and.to.match(/'verified': a write gossiped in a cluster with admins, signed by its author/)
      .and.to.match(/--namespace <namespace>/)
  })
})

describe('convergent audit --reads', function () {
  this.timeout(60_000)
  let dir = ''
  let keyFile = ''

  // An encrypted classic-level folder with audited reads of personal fields (and one
  // collection with personal fields whose reads are not audited).
  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'convergent-cli-reads-'))
    const key = randomBytes(32)
    keyFile = join(dir, '..', `${dir.split('/').pop()}.key`)
    writeFileSync(keyFile, key.toString('hex'), { mode: 0o600 })
    const replica = await open({ dir, network: false, logger: silentLogger, encryption: { keyFile } })
    try {
      const personal = { subject: (c: { customerId: string }) => c.customerId, fields: ['email'], auditReads: true }
      const customers = replica.collection<{ customerId: string; email?: string }>('customers', { personal })
      await customers.put('c1', { customerId: 'p-1', email: 'ada@example.com' })
      await customers.put('c2', { customerId: 'p-2', email: 'bob@example.com' })
      await customers.get('c1', { actor: 'support-agent-7' })
      await customers.get('c2')
      await customers.update('c1', (c) => void (c.email = 'ada@example.org'), { actor: 'support-agent-7' })
      const leads = replica.collection<{ customerId: string; email?: string }>('leads', { personal: { ...personal, auditReads: false } })
      await leads.put('l1', { customerId: 'p-9', email: 'lead@example.com' })
      await leads.get('l1')
      let n = 0
      for (let i = 0; i < 100 && n < 3; i++) {
        n = 0
        for await (const _ of replica.readAudit()) n++
        if (n < 3) await new Promise((r) => setTimeout(r, 10))
      }
    } finally {
      await replica.close()
    }
  })

  after(function () {
    rmSync(dir, { recursive: true, force: true })
    rmSync(keyFile, { force: true })
  })

  it('lists the reads of personal fields of a collection (or one entity) offline, on an encrypted folder', async function () {
    const r = await cli('audit', dir, 'customers', '--reads', '--key-file', keyFile)
    expect(r.code, r.stderr).to.equal(0)
    const header = r.stdout.split('\n').filter((l) => l.startsWith('#'))
    expect(header.join('\n'))
      .to.match(/pseudonym/)
      .and.to.match(/not authenticated/)
    expect(header.at(-1)).to.equal('# 3 reads')
    const list = r.stdout
      .trim()
      .split('\n')
      .filter((l) => !l.startsWith('#'))
      .map((l) => l.split('\t'))
    expect(list.map(([seq, , id, subject, fields, via, peer, actor]) => [seq, id, subject, fields, via, peer, actor])).to.deep.equal([
      ['1', 'c1', 'p-1', 'email', 'get', 'local', 'support-agent-7'],
      ['2', 'c2', 'p-2', 'email', 'get', 'local', '-'],
      ['3', 'c1', 'p-1', 'email', 'update', 'local', 'support-agent-7'],
    ])
    for (const [, time] of list) expect(Number.isNaN(Date.parse(time!))).to.equal(false)

    const one = await cli('audit', dir, 'customers', 'c1', '--reads', '--json', '--key-file', keyFile)
    expect(one.code, one.stderr).to.equal(0)
    const entries = one.stdout
      .trim()
      .split('\n')
      .filter((l) => !l.startsWith('#'))
      .map((l) => JSON.parse(l) as { seq: number; id: string; actor?: string; via: string; fields: string[]; subject: string })
    expect(entries.map((e) => [e.seq, e.id, e.subject, e.fields, e.via, e.actor])).to.deep.equal([
      [1, 'c1', 'p-1', ['email'], 'get', 'support-agent-7'],
      [3, 'c1', 'p-1', ['email'], 'update', 'support-agent-7'],
    ])
    const since = await cli('audit', dir, 'customers', '--reads', '--since', '2', '--json', '--key-file', keyFile)
    expect(
      since.stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => (JSON.parse(l) as { seq: number }).seq),
    ).to.deep.equal([3])

    // Reads of a collection that does not audit them: none; an unknown collection: an error.
    const leads = await cli('audit', dir, 'leads', '--reads', '--key-file', keyFile)
    expect(leads.code, leads.stderr).to.equal(0)
    expect(leads.stdout.trim().split('\n').at(-1)).to.equal('# 0 reads')
    const unknown = await cli('audit', dir, 'payments', '--reads', '--key-file', keyFile)
    expect(unknown.code).to.equal(1)
    expect(unknown.stderr).to.match(/no collection 'payments'/)
    // Without the key the folder does not open.
    expect((await cli('audit', dir, 'customers', '--reads')).code).to.equal(1)
  })
})
