import { expect } from 'chai'
import { isConverged } from '../src/driver/convergence.js'
import { checkInvariants } from '../src/driver/invariants.js'
import { resolveSettings, type ScenarioResult } from '../src/driver/scenario.js'
import { renderTable } from '../src/driver/table.js'
import { HttpError, Router } from '../src/services/http-server.js'
import { digestOf, stableStringify } from '../src/shared/digest.js'
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
  })
})
