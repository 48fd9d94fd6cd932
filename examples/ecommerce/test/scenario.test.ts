import { existsSync } from 'node:fs'
import { expect } from 'chai'
import { isAlive, runScenario, type ScenarioResult } from '../src/index.js'

/** The demo's scenario in its short mode, with the invariants it exists to show. */
describe('e-commerce scenario (quick mode)', function () {
  this.timeout(60_000)
  let r: ScenarioResult

  before(async () => {
    r = await runScenario({ quick: true, orders: 40, seed: 7 })
  })

  it('runs to the end without errors', () => {
    expect(r.error).to.equal(null)
    expect(r.interrupted).to.equal(false)
    expect(r.attempts).to.have.length(40)
    expect(r.attempts.filter((a) => a.outcome === 'error')).to.deep.equal([])
  })

  it('never oversells: stock ≥ 0 on every replica at every poll and every applied change', () => {
    expect(r.lowestStock.polled).to.be.a('number').and.at.least(0)
    for (const service of ['inventory', 'orders', 'payments'] as const) {
      expect(r.lowestStock.watched[service], service).to.be.a('number').and.at.least(0)
    }
  })

  it('never oversells: accepted quantity ≤ initial stock, per SKU, and the final stock adds up', () => {
    const sold: Record<string, number> = {}
    for (const a of r.attempts) if (a.outcome === 'accepted') sold[a.sku] = (sold[a.sku] ?? 0) + a.qty
    for (const [sku, n] of Object.entries(sold)) expect(n, sku).to.be.at.most(r.initialStock[sku]!)
    expect(r.finalStates).to.have.length(3)
    for (const state of r.finalStates) {
      for (const [sku, initial] of Object.entries(r.initialStock)) expect(state.stock[sku], `${state.service} ${sku}`).to.equal(initial - (sold[sku] ?? 0))
    }
  })

  it('takes orders on both sides of the partition, each within its own rights', () => {
    const during = r.attempts.filter((a) => a.phase === 'partition' && a.outcome === 'accepted')
    expect(
      during.some((a) => a.channel === 'web'),
      'web orders accepted by the orders service',
    ).to.equal(true)
    expect(
      during.some((a) => a.channel === 'store'),
      'shop-counter orders accepted by inventory',
    ).to.equal(true)
    expect(r.rightsAtCut).to.not.equal(null)
    // A side never sells more during the partition than the rights it held at the cut.
    for (const [channel, side] of [
      ['web', 'orders'],
      ['store', 'inventory'],
    ] as const) {
      for (const [sku, rights] of Object.entries(r.rightsAtCut![side])) {
        const n = during.filter((a) => a.channel === channel && a.sku === sku).reduce((x, a) => x + a.qty, 0)
        expect(n, `${side} ${sku}`).to.be.at.most(rights)
      }
    }
  })

  it('loses no acknowledged order: every 201 is on every service after the heal', () => {
    const acked = r.attempts.filter((a) => a.outcome === 'accepted').length
    expect(acked).to.be.greaterThan(0)
    expect(r.lost.checked).to.equal(acked * 3)
    expect(r.lost.missing).to.deep.equal([])
  })

  it('converges after the heal and at the end (same orders, payments, stock; all paid)', () => {
    expect(r.convergence.afterHealOk).to.equal(true)
    expect(r.convergence.finalOk).to.equal(true)
    const [first, ...rest] = r.finalStates
    for (const s of rest) {
      expect(s.orders).to.deep.equal(first!.orders)
      expect(s.payments).to.deep.equal(first!.payments)
      expect(s.stock).to.deep.equal(first!.stock)
      expect(s.unpaid).to.equal(0)
    }
    expect(r.exampleView?.status).to.equal('paid')
  })

  it('leaves no process behind and removes its data folder', () => {
    // The three services, and payments again (restarted after the forget).
    expect(r.pids).to.have.length(4)
    for (const pid of r.pids) expect(isAlive(pid), `pid ${pid}`).to.equal(false)
    expect(existsSync(r.dataRoot)).to.equal(false)
  })

  it('runs with the trust boundary on: an unauthorised write refused locally and on receipt, outsiders refused at connect', () => {
    const t = r.trust!
    expect(t.error).to.equal(null)
    for (const service of ['inventory', 'orders', 'payments'] as const) expect(t.policyVersion[service], service).to.be.at.least(1)
    expect(t.refusedWrite.code).to.equal('ERR_FORBIDDEN')
    expect(t.refusedWrite.storedOn).to.deep.equal([])
    expect(t.supportPaymentsCode).to.equal('ERR_FORBIDDEN')
    expect(t.supportReadsOrder.ok).to.equal(true)
    for (const service of ['inventory', 'orders', 'payments'] as const) {
      expect(t.forged.droppedBy[service], service).to.be.at.least(1)
      expect(t.forged.metric[service], service).to.be.at.least(1)
    }
    expect(t.forged.storedOn).to.deep.equal([])
    expect(t.outsiders.map((o) => o.connected)).to.deep.equal([false, false])
  })

  it('forgets a customer after the heal: no email in plain in any file, before or after; gone from get() everywhere; the others still read', () => {
    const p = r.privacy!
    expect(p.error).to.equal(null)
    expect(p.customers.length).to.be.at.least(2)
    expect(p.forgotten?.by).to.equal('orders')
    // Orders reference customers by id; the forgotten customer had one, and it stays.
    expect(p.orderId).to.be.a('string')
    expect(r.attempts.filter((a) => a.channel === 'web' && a.outcome === 'accepted').every((a) => typeof a.customerId === 'string')).to.equal(true)
    for (const service of ['inventory', 'orders', 'payments'] as const) {
      expect(p.before.readable[service], service).to.equal(p.customers.length)
      for (const search of [p.before.search[service]!, p.after.search[service]!]) {
        expect(search.files, service).to.be.greaterThan(0)
        expect(search.found, service).to.deep.equal([])
        expect(search.idFound, `${service}: the search finds the id, stored in plain`).to.equal(true)
      }
      expect(p.reachedMs[service], service).to.be.a('number')
      expect(p.after.fieldsLeft[service], service).to.deep.equal([])
      expect(p.after.othersReadable[service], service).to.equal(p.customers.length - 1)
      expect(p.after.orderKept[service], service).to.equal(true)
      expect(p.dump?.[service]?.forgottenOpened, service).to.equal(0)
      expect(p.dump?.[service]?.othersOpened, service).to.be.greaterThan(0)
    }
    expect(p.after.rewrite).to.deep.equal({ status: 410, code: 'ERR_FORGOTTEN' })
    expect(p.refusedForget).to.include({ status: 403, code: 'ERR_FORBIDDEN', stillReadable: true })
    // Nobody orders as the forgotten customer after the forget.
    expect(r.attempts.some((a) => a.phase === 'healed' && a.customerId === p.forgotten!.id)).to.equal(false)
  })

  it('a service offline during the forget (payments, stopped before it) destroys the key when it comes back on the same folder', () => {
    const o = r.privacy!.offline!
    expect(o.service).to.equal('payments')
    // While it was down, after the forget, its folder still opened the forgotten email: it held the key.
    expect(o.heldWhileDown?.forgottenOpened, 'records opening the email in the stopped folder').to.be.greaterThan(0)
    // It came back: a new process on the same folder, the one the run ended with.
    expect(o.pids.after).to.be.a('number').and.not.equal(o.pids.before)
    expect(r.services.find((s) => s.name === 'payments')?.pid).to.equal(o.pids.after)
    expect(r.pids).to.include.members([o.pids.before, o.pids.after!])
    // …and on its own (no forget sent to it) its get() stopped returning the email and address.
    expect(o.forgotMs, 'the restarted payments never lost the email').to.be.a('number')
    expect(r.privacy!.after.fieldsLeft.payments).to.deep.equal([])
    // Read after it came back: no file of its folder holds an email, and no record opens the forgotten one.
    expect(r.privacy!.after.search.payments?.found).to.deep.equal([])
    expect(r.privacy!.dump?.payments?.forgottenOpened).to.equal(0)
    expect(r.privacy!.dump?.payments?.othersOpened).to.be.greaterThan(0)
  })

  it('reports every invariant as holding', () => {
    expect(r.invariants.filter((i) => !i.ok)).to.deep.equal([])
  })
})
