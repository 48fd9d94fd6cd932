import { expect } from 'chai'
import { isConverged } from '../src/driver/convergence.js'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { checkInvariants } from '../src/driver/invariants.js'
import { planOrders } from '../src/driver/plan.js'
import { makeCustomers, searchFiles, type FolderSearch, type PrivacyResult } from '../src/driver/privacy.js'
import { resolveSettings, type ScenarioResult } from '../src/driver/scenario.js'
import { renderTable } from '../src/driver/table.js'
import { HttpError, Router } from '../src/services/http-server.js'
import { digestOf, stableStringify } from '../src/shared/digest.js'
import type { ServiceHandle } from '../src/driver/cluster.js'
import type { StateView } from '../src/shared/protocol.js'

describe('e-commerce building blocks', () => {
  it('routes by method and path, with parameters; 404 and 405 otherwise', () => {
    const router = new Router().on('GET', '/orders/:id', () => ({ status: 200, body: 1 })).on('POST', '/orders', () => ({ status: 201, body: 2 }))
    expect(router.match('GET', '/orders/web-1').params).to.deep.equal({ id: 'web-1' })
    expect(router.match('POST', '/orders').params).to.deep.equal({})
    expect(() => router.match('GET', '/nope'))
      .to.throw(HttpError)
      .with.property('status', 404)
    expect(() => router.match('DELETE', '/orders/x'))
      .to.throw(HttpError)
      .with.property('status', 405)
  })

  it('digests ignore key and entry order', () => {
    expect(stableStringify({ b: 1, a: [1, { d: 2, c: 3 }] })).to.equal('{"a":[1,{"c":3,"d":2}],"b":1}')
    expect(
      digestOf([
        ['x', { a: 1, b: 2 }],
        ['y', 1],
      ]),
    ).to.equal(
      digestOf([
        ['y', 1],
        ['x', { b: 2, a: 1 }],
      ]),
    )
    expect(digestOf([['x', 1]])).to.not.equal(digestOf([['x', 2]]))
  })

  it('calls services converged only when all agree, all is paid and nothing acknowledged is missing', () => {
    const state = (service: StateView['service'], over: Partial<StateView> = {}): StateView => ({
      service,
      peerId: service,
      peers: [],
      orders: { count: 2, digest: 'o' },
      payments: { count: 2, digest: 'p' },
      stock: { mug: 3 },
      unpaid: 0,
      ...over,
    })
    expect(isConverged([state('inventory'), state('orders'), state('payments')], 2)).to.equal(true)
    expect(isConverged([state('inventory'), state('orders'), state('payments')], 3)).to.equal(false)
    expect(isConverged([state('inventory'), state('orders', { stock: { mug: 2 } }), state('payments')], 2)).to.equal(false)
    expect(isConverged([state('inventory'), state('orders', { unpaid: 1 }), state('payments')], 2)).to.equal(false)
  })

  it('renders aligned tables', () => {
    const text = renderTable(
      [
        ['a', '1'],
        ['bbb', '22'],
      ],
      { align: ['left', 'right'] },
    )
    expect(text.split('\n')).to.deep.equal(['┌─────┬────┐', '│ a   │  1 │', '│ bbb │ 22 │', '└─────┴────┘'])
  })

  it('flags oversell, lost writes and leftover processes as failed invariants', () => {
    const state = (service: StateView['service']): StateView => ({
      service,
      peerId: service,
      peers: [],
      orders: { count: 1, digest: 'o' },
      payments: { count: 1, digest: 'p' },
      stock: { mug: 1 },
      unpaid: 0,
    })
    const good: ScenarioResult = {
      settings: resolveSettings({ quick: true }),
      startedAt: '',
      durationMs: 1,
      dataRoot: '/nowhere',
      kept: false,
      services: [],
      phases: [],
      attempts: [{ seq: 0, phase: 'normal', channel: 'web', target: 'orders', sku: 'mug', qty: 2, outcome: 'accepted', id: 'w1', at: 0, ms: 1 }],
      initialStock: { mug: 3 },
      rightsAtCut: null,
      convergence: { afterHealMs: 5, afterHealOk: true, finalMs: 1, finalOk: true },
      finalStates: [state('inventory'), state('orders'), state('payments')],
      lowestStock: { polled: 1, watched: { inventory: 1, orders: 1, payments: 1 }, overall: 1 },
      samples: [],
      metricSamples: [],
      lost: { checked: 3, missing: [] },
      exampleView: null,
      privacy: goodPrivacy(),
      trust: {
        policy: { roles: {}, collections: {} },
        policyVersion: { inventory: 1, orders: 1, payments: 1, support: 1 },
        names: {},
        refusedWrite: { code: 'ERR_FORBIDDEN', message: '', storedOn: [] },
        supportReadsOrder: { id: 'w1', ok: true },
        supportPaymentsCode: 'ERR_FORBIDDEN',
        forged: { id: 'forged-1', droppedBy: { inventory: 1, orders: 1, payments: 1 }, metric: {}, storedOn: [] },
        outsiders: [
          { name: 'a', why: '', peerId: 'x', connected: false, triedMs: 2500 },
          { name: 'b', why: '', peerId: 'y', connected: false, triedMs: 2500 },
        ],
        durationMs: 1,
        error: null,
      },
      processesLeft: [],
      httpRetries: 0,
      pids: [1, 2, 3],
      interrupted: false,
      error: null,
      invariants: [],
    }
    expect(checkInvariants(good).filter((i) => !i.ok)).to.deep.equal([])
    const failed = (r: ScenarioResult): string[] =>
      checkInvariants(r)
        .filter((i) => !i.ok)
        .map((i) => i.name)
    expect(failed({ ...good, lowestStock: { ...good.lowestStock, overall: -1 } })).to.deep.equal(['no oversell: stock never below 0 on any replica'])
    expect(failed({ ...good, initialStock: { mug: 1 } })).to.include('no oversell: accepted quantity ≤ initial stock')
    expect(failed({ ...good, lost: { checked: 3, missing: [{ service: 'payments', id: 'w1' }] } })).to.deep.equal(['acknowledged writes lost = 0'])
    expect(failed({ ...good, processesLeft: [2] })).to.deep.equal(['no process left behind'])
    const trust = good.trust!
    const unauthorised = 'trust: an unauthorised write is refused (locally, and on receipt)'
    expect(failed({ ...good, trust: { ...trust, refusedWrite: { code: null, message: 'the write was accepted', storedOn: [] } } })).to.deep.equal([
      unauthorised,
    ])
    expect(failed({ ...good, trust: { ...trust, forged: { ...trust.forged, storedOn: ['orders'] } } })).to.deep.equal([unauthorised])
    expect(failed({ ...good, trust: { ...trust, forged: { ...trust.forged, droppedBy: { inventory: 1, orders: 0, payments: 1 } } } })).to.deep.equal([
      unauthorised,
    ])
    expect(failed({ ...good, trust: { ...trust, outsiders: [trust.outsiders[0]!, { ...trust.outsiders[1]!, connected: true }] } })).to.deep.equal([
      'trust: outsiders refused at connect',
    ])
    expect(failed({ ...good, trust: { ...trust, policyVersion: { inventory: 1, orders: null, payments: 1 } } })).to.deep.equal([
      'trust: the signed policy is in force on every service',
    ])
    expect(failed({ ...good, trust: null })).to.include('trust: unauthorised writes refused, outsiders refused at connect')

    const privacy = good.privacy!
    const plain = 'privacy: no customer email or address in plain in any file of any service (byte search, before and after the forget)'
    const reached = 'privacy: the forget reached every service — its email and address gone from get(), the other customers still read'
    const dumped = "privacy: no service's folder opens the forgotten fields (every stored record dumped once stopped)"
    const offline = 'privacy: a service offline during the forget destroyed the key when it came back'
    const found: FolderSearch = { files: 3, bytes: 10, found: ['ada@x in 000003.log'], idFound: true }
    expect(failed({ ...good, privacy: { ...privacy, after: { ...privacy.after, search: { ...privacy.after.search, payments: found } } } })).to.deep.equal([
      plain,
    ])
    // A search that does not even find the id (stored in plain) proves nothing.
    expect(
      failed({
        ...good,
        privacy: { ...privacy, before: { ...privacy.before, search: { ...privacy.before.search, orders: { ...found, found: [], idFound: false } } } },
      }),
    ).to.deep.equal([plain])
    expect(
      failed({ ...good, privacy: { ...privacy, after: { ...privacy.after, fieldsLeft: { ...privacy.after.fieldsLeft, inventory: ['email'] } } } }),
    ).to.deep.equal([reached])
    expect(failed({ ...good, privacy: { ...privacy, reachedMs: { orders: 1, payments: 2 } } })).to.deep.equal([reached])
    expect(
      failed({ ...good, privacy: { ...privacy, after: { ...privacy.after, othersReadable: { ...privacy.after.othersReadable, orders: 0 } } } }),
    ).to.deep.equal([reached])
    expect(failed({ ...good, privacy: { ...privacy, after: { ...privacy.after, rewrite: { status: 201, code: null } } } })).to.deep.equal([reached])
    expect(failed({ ...good, privacy: { ...privacy, refusedForget: { ...privacy.refusedForget, status: 200, code: null } } })).to.deep.equal([reached])
    expect(failed({ ...good, privacy: { ...privacy, dump: { ...privacy.dump!, orders: { records: 2, forgottenOpened: 1, othersOpened: 1 } } } })).to.deep.equal(
      [dumped],
    )
    expect(failed({ ...good, privacy: { ...privacy, dump: null } })).to.deep.equal([offline, dumped])
    // The service offline during the forget: it must have held the key while down, come back, and lost it.
    const o = privacy.offline!
    expect(failed({ ...good, privacy: { ...privacy, offline: { ...o, heldWhileDown: { records: 2, forgottenOpened: 0 } } } })).to.deep.equal([offline])
    expect(failed({ ...good, privacy: { ...privacy, offline: { ...o, pids: { before: 1, after: null } } } })).to.deep.equal([offline])
    expect(failed({ ...good, privacy: { ...privacy, offline: { ...o, forgotMs: null } } })).to.deep.equal([offline])
    expect(failed({ ...good, privacy: { ...privacy, offline: null } })).to.deep.equal([offline])
    expect(
      failed({ ...good, privacy: { ...privacy, dump: { ...privacy.dump!, payments: { records: 2, forgottenOpened: 1, othersOpened: 1 } } } }),
    ).to.deep.equal([offline, dumped])
    expect(failed({ ...good, privacy: null })).to.include('privacy: a forgotten customer is gone from every service')
  })

  it('byte search: finds a string in any file, counts files and bytes, skips files that went away', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ecommerce-search-'))
    try {
      await writeFile(join(dir, 'a'), Buffer.concat([Buffer.from([0, 1, 2]), Buffer.from('xx ada@example.com yy'), Buffer.from([255])]))
      await writeFile(join(dir, 'b'), 'id-42 and nothing else')
      const r = await searchFiles([join(dir, 'a'), join(dir, 'b'), join(dir, 'gone')], ['ada@example.com', 'grace@example.com'], 'id-42')
      expect(r.files).to.equal(2)
      expect(r.bytes).to.equal(25 + 22)
      expect(r.found).to.deep.equal([`ada@example.com in ${join(dir, 'a')}`])
      expect(r.idFound).to.equal(true)
      expect((await searchFiles([join(dir, 'a')], [], 'id-42')).idFound).to.equal(false)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('plans web orders with customers in turn; the first customer (forgotten mid-run) orders only before the forget', () => {
    const customers = makeCustomers('t1', '11'.repeat(32))
    expect(new Set(customers.map((c) => c.id)).size).to.equal(customers.length)
    expect(customers.every((c) => /^[a-z2-7]{26}$/.test(c.id))).to.equal(true)
    const handle = (name: 'orders' | 'inventory'): ServiceHandle => ({ name, url: `http://${name}` }) as ServiceHandle
    const plan = planOrders(40, 7, { orders: handle('orders'), inventory: handle('inventory') }, customers)
    expect(plan.normal[0]!.customer).to.deep.equal({ email: customers[0]!.email, address: customers[0]!.address })
    for (const o of [...plan.normal, ...plan.partition, ...plan.healed]) expect(o.customer !== undefined, o.channel).to.equal(o.channel === 'web')
    expect(plan.healed.length).to.be.greaterThan(0)
    expect(plan.healed.some((o) => o.customer?.email === customers[0]!.email)).to.equal(false)
    // The same seed, the same workload.
    expect(planOrders(40, 7, { orders: handle('orders'), inventory: handle('inventory') }, customers)).to.deep.equal(plan)
  })
})

function goodPrivacy(): PrivacyResult {
  const search: FolderSearch = { files: 8, bytes: 1000, found: [], idFound: true }
  const every = <T>(v: T): Record<'inventory' | 'orders' | 'payments', T> => ({ inventory: v, orders: v, payments: v })
  return {
    customers: [
      { id: 'c1', email: 'ada@example.com' },
      { id: 'c2', email: 'grace@example.com' },
    ],
    forgotten: { id: 'c1', email: 'ada@example.com', by: 'orders' },
    orderId: 'w1',
    before: { readable: every(2), search: every(search) },
    refusedForget: { service: 'payments', status: 403, code: 'ERR_FORBIDDEN', stillReadable: true },
    forgetMs: 5,
    reachedMs: every(10),
    after: { fieldsLeft: every([]), othersReadable: every(1), orderKept: every(true), rewrite: { status: 410, code: 'ERR_FORGOTTEN' }, search: every(search) },
    offline: { service: 'payments', pids: { before: 1, after: 2 }, heldWhileDown: { records: 2, forgottenOpened: 1 }, downMs: 900, forgotMs: 300 },
    dump: every({ records: 2, forgottenOpened: 0, othersOpened: 1 }),
    durationMs: 100,
    error: null,
  }
}
