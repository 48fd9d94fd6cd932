// The read audit (issue #14, item 4), on classic-level folders on disk: reads that hand opened
// personal fields to the application are recorded — when, collection, entity, subject, fields,
// how, peer id, actor — only in collections opened with personal: { auditReads: true }; the
// log is bounded (count and age, oldest first) and survives a reopen.
import { expect } from 'chai'
import { systemClock, type Clock, type PersonalOptions, type ReadAuditEntry } from '@convergent/core'
import { open, type ReplicaWithMetrics } from '../src/index.js'
import { replicasAfterEach, waitFor } from './helpers.js'

interface Customer {
  customerId: string
  name?: string
  email?: string
  address?: unknown
}
const PERSONAL: PersonalOptions<Customer> = { subject: (c) => c.customerId, fields: ['address', 'email'] }
const AUDITED: PersonalOptions<Customer> = { ...PERSONAL, auditReads: true }

async function entriesOf(replica: ReplicaWithMetrics, options: { since?: number; collection?: string } = {}): Promise<ReadAuditEntry[]> {
  const out: ReadAuditEntry[] = []
  for await (const e of replica.readAudit(options)) out.push(e)
  return out
}

/** Entries recorded by a read are written with the next group commit: wait until `n` are stored. */
async function settled(replica: ReplicaWithMetrics, n: number): Promise<ReadAuditEntry[]> {
  await waitFor(async () => (await entriesOf(replica)).length === n, `${n} read-audit entries stored`)
  return entriesOf(replica)
}

async function personalReads(replica: ReplicaWithMetrics, collection: string): Promise<number> {
  const metric = await replica.metrics.getSingleMetric('convergent_personal_reads_total')?.get()
  return metric?.values.find((v) => v.labels.collection === collection)?.value ?? 0
}

describe('Read audit: reads of personal fields, per collection, bounded and durable', function () {
  this.timeout(60_000)
  const suite = replicasAfterEach('convergent-read-audit-')
  const folder = suite.folder

  async function start(dir: string, options: Parameters<typeof open>[0] = {}): Promise<ReplicaWithMetrics> {
    const replica = await open({ dir, network: false, logLevel: 'silent', ...options })
    suite.opened(replica)
    return replica
  }

  /** Closes the replica (closing it again after the test does nothing). */
  const stop = (replica: ReplicaWithMetrics): Promise<void> => replica.close()

  it('off by default: personal fields open, nothing is recorded (the metric still counts the reads)', async function () {
    const dir = await folder()
    const replica = await start(dir)
    const customers = replica.collection<Customer>('customers', { personal: PERSONAL })
    await customers.put('c1', { customerId: 'p-1', name: 'Ada', email: 'ada@example.com' })
    expect((await customers.get('c1', { actor: 'agent-1' }))?.email).to.equal('ada@example.com')
    for await (const _ of customers.entries()) void _
    await customers.update('c1', (c) => void (c.name = 'Ada L.'))
    await replica.collection('customers').put('c2', { customerId: 'p-2', email: 'x' }) // not declared: not sealed
    expect(await personalReads(replica, 'customers')).to.equal(3)
    await stop(replica)
    const again = await start(dir)
    expect(await entriesOf(again)).to.deep.equal([])
  })

  it('on: get, entries, update and subscribe record time, collection, id, subject, fields, via, peer id and actor', async function () {
    const dir = await folder()
    const replica = await start(dir)
    const customers = replica.collection<Customer>('customers', { personal: AUDITED })
    const t0 = Date.now()
    await customers.put('c1', { customerId: 'p-1', name: 'Ada', email: 'ada@example.com', address: { city: 'Paris' } })
    await customers.put('c2', { customerId: 'p-2', name: 'Bob' }) // no personal field present
    await customers.put('c3', { customerId: 'p-3', email: 'cy@example.com' })
    // Writes, has() and reads of an entity without personal fields are not reads of personal data.
    await customers.put('c1', { customerId: 'p-1', name: 'Ada', email: 'ada@example.com', address: { city: 'Lyon' } })
    expect(await customers.has('c1')).to.equal(true)
    await customers.get('c2', { actor: 'agent-7' })
    expect(await entriesOf(replica)).to.deep.equal([])

    expect((await customers.get('c1', { actor: 'support-agent-7' }))?.email).to.equal('ada@example.com')
    const seen: string[] = []
    for await (const [id] of customers.entries()) seen.push(id)
    expect(seen.sort()).to.deep.equal(['c1', 'c2', 'c3'])
    await customers.update('c3', (c) => void (c.name = 'Cy'), { actor: 'batch-job' })
    const events: unknown[] = []
    const unsubscribe = customers.subscribe((e) => events.push(e.value), { actor: 'dashboard' })
    customers.subscribe(() => {}, { actor: 'dashboard' }) // same actor: one entry per event
    await customers.update('c1', (c) => void (c.name = 'Ada L.'), { actor: 'support-agent-7' })
    await waitFor(() => events.length === 1, 'the subscriber is told')
    unsubscribe()

    const log = await settled(replica, 6)
    const t1 = Date.now()
    for (const e of log) {
      expect(e.time).to.be.within(t0, t1)
      expect(e.collection).to.equal('customers')
      expect(e.peer).to.equal('local')
    }
    const shape = (e: ReadAuditEntry) => [e.seq, e.via, e.id, e.subject, e.fields, e.actor]
    const byEntries = log.filter((e) => e.via === 'entries').map(shape)
    expect(log.filter((e) => e.via !== 'entries').map(shape)).to.deep.equal([
      [1, 'get', 'c1', 'p-1', ['address', 'email'], 'support-agent-7'],
      [4, 'update', 'c3', 'p-3', ['email'], 'batch-job'],
      [5, 'update', 'c1', 'p-1', ['address', 'email'], 'support-agent-7'],
      [6, 'subscribe', 'c1', 'p-1', ['address', 'email'], 'dashboard'],
    ])
    // entries(): one per entity with personal fields (c2 has none), no actor given.
    expect(byEntries.map((e) => e[2]).sort()).to.deep.equal(['c1', 'c3'])
    for (const e of byEntries) expect(e[5]).to.equal(undefined)
    expect(await entriesOf(replica, { since: 4 })).to.deep.equal(log.slice(4))
    expect(await entriesOf(replica, { collection: 'orders' })).to.deep.equal([])
    // A collection without auditReads on the same replica records nothing.
    const leads = replica.collection<Customer>('leads', { personal: PERSONAL })
    await leads.put('l1', { customerId: 'p-9', email: 'lead@example.com' })
    await leads.get('l1')
    expect(await personalReads(replica, 'leads')).to.equal(1)
    await new Promise((r) => setTimeout(r, 50))
    expect(await entriesOf(replica, { collection: 'leads' })).to.deep.equal([])
    // A bad actor is refused before anything is read.
    for (const bad of [{ actor: '' }, { actor: 7 }, { actor: 'x'.repeat(257) }]) {
      await customers.get('c1', bad as never).then(
        () => expect.fail('accepted a bad actor'),
        (err: { code?: string }) => expect(err.code).to.equal('ERR_INVALID_ARGUMENT'),
      )
    }
  })

  it('entries survive a reopen and seq goes on; the bound drops the oldest (count, then age)', async function () {
    const dir = await folder()
    let offset = 0
    const real = systemClock()
    const clock: Clock = { ...real, now: () => real.now() + offset }
    let replica = await start(dir, { clock, readAudit: { maxEntries: 3, maxAgeDays: 1 } })
    let customers = replica.collection<Customer>('customers', { personal: AUDITED })
    await customers.put('c1', { customerId: 'p-1', email: 'ada@example.com' })
    for (let i = 1; i <= 2; i++) await customers.get('c1', { actor: `a${i}` })
    await settled(replica, 2)
    await stop(replica)

    replica = await start(dir, { clock, readAudit: { maxEntries: 3, maxAgeDays: 1 } })
    expect((await entriesOf(replica)).map((e) => [e.seq, e.actor])).to.deep.equal([
      [1, 'a1'],
      [2, 'a2'],
    ])
    customers = replica.collection<Customer>('customers', { personal: AUDITED })
    for (let i = 3; i <= 5; i++) await customers.get('c1', { actor: `a${i}` })
    await waitFor(async () => (await entriesOf(replica))[0]?.seq === 3, 'the two oldest dropped')
    expect((await entriesOf(replica)).map((e) => [e.seq, e.actor])).to.deep.equal([
      [3, 'a3'],
      [4, 'a4'],
      [5, 'a5'],
    ])

    // Two days later, one more read: every entry older than a day goes.
    offset = 2 * 86_400_000
    await customers.get('c1', { actor: 'a6' })
    await waitFor(async () => (await entriesOf(replica)).length === 1, 'entries older than a day dropped')
    expect((await entriesOf(replica)).map((e) => [e.seq, e.actor])).to.deep.equal([[6, 'a6']])
    await stop(replica)

    // Opened only to look (default retention): nothing is trimmed.
    replica = await start(dir, { clock, readAudit: { maxEntries: 1, maxAgeDays: 0.0001 } })
    offset += 86_400_000
    expect((await entriesOf(replica)).map((e) => e.seq)).to.deep.equal([6])
  })

  it('refuses bad retention options and a non-boolean auditReads', async function () {
    const dir = await folder()
    for (const readAudit of [{ maxEntries: 0 }, { maxEntries: 1.5 }, { maxAgeDays: 0 }, { maxAgeDays: Number.NaN }]) {
      await open({ dir, network: false, logLevel: 'silent', readAudit }).then(
        async (r) => {
          await r.close()
          expect.fail(`accepted ${JSON.stringify(readAudit)}`)
        },
        (err: { code?: string }) => expect(err.code).to.equal('ERR_INVALID_ARGUMENT'),
      )
    }
    const replica = await start(dir)
    expect(() => replica.collection<Customer>('customers', { personal: { ...PERSONAL, auditReads: 'yes' as never } })).to.throw(/auditReads/)
  })
})
