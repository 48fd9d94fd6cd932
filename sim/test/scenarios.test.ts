import { expect } from 'chai'
import { listScenarios, loadScenario, runScenario } from '../src/index.js'
import { smallScenario } from './helpers.js'

describe('sim: scenarios', function () {
  this.timeout(60_000)

  it('ships the required scenarios, and every file loads and validates', function () {
    const names = listScenarios().map((s) => s.name)
    for (const required of ['partition-heal', 'isolate-rejoin', 'flapping', 'lossy', 'crash-restart', 'churn-100', 'broadcast-25']) {
      expect(names).to.include(required)
    }
    for (const name of names) expect(loadScenario(name).name).to.equal(name)
    expect(loadScenario('churn-100').nodes).to.equal(100)
    expect(loadScenario('partition-heal', { nodes: 4 }).nodes).to.equal(4)
  })

  it('rejects a fault that names a node the run does not have', function () {
    expect(() => loadScenario('crash-restart', { nodes: 4 })).to.throw(/is node \d+ but the run has 4 nodes \(0 … 3\)/)
  })

  it('partition-heal (small): both sides keep going, and everything converges after the heal', async function () {
    const scenario = smallScenario('partition-heal-small', {
      faults: [
        { at: 4000, type: 'partition', split: [0.5, 0.5] },
        { at: 8000, type: 'heal' },
      ],
      invariants: [
        { kind: 'groups-converge-during-partition', graceMs: 2000 },
        { kind: 'converge-within', ms: 10000 },
      ],
    })
    const r = await runScenario(scenario, { seed: 3 })
    expect(r.passed, JSON.stringify(r.checks, null, 1)).to.equal(true)
    expect(r.convergence.converged).to.equal(true)
    expect(r.convergence.afterEachHeal).to.have.length(1)
    expect(r.faults[0]).to.include({ kind: 'partition', fromMs: 4000, toMs: 8000 })
    expect(r.checks.map((c) => c.name)).to.include.members([
      'convergence',
      'acknowledged-writes-survive',
      'monotonic-registers',
      'groups-converge-during-partition',
    ])
  })

  it('partition-heal with values over maxValueBytes once merged: converges (each side writes within the limit; the merge is taken everywhere)', async function () {
    const scenario = smallScenario('value-limit-merge-small', {
      // Six writers on four entities, 300 bytes of filler each: a value holds up to ~6 × 300 bytes
      // once merged, over the replicas' 1,000-byte maxValueBytes; writes that would grow a value
      // past it fail here (not acknowledged), those within it on either side are taken everywhere.
      workload: { ratePerSec: 20, entities: 4, startMs: 1_000, value: { payloadBytes: 300, nested: false } },
      replica: { maxValueBytes: 1_000 },
      faults: [
        { at: 2000, type: 'partition', split: [0.5, 0.5] },
        { at: 8000, type: 'heal' },
      ],
      invariants: [{ kind: 'converge-within', ms: 10000 }],
    })
    const r = await runScenario(scenario, { seed: 11 })
    expect(r.passed, JSON.stringify(r.checks, null, 1)).to.equal(true)
    expect(r.convergence.converged).to.equal(true)
    expect(r.updates.rejected, 'some writes over the limit failed locally').to.be.greaterThan(0)
  })

  it('lossy (small): 20 % loss, duplication and reordering still converge', async function () {
    const scenario = smallScenario('lossy-small', {
      network: { loss: 0.2, duplicate: 0.1, reorder: 0.2, reorderDelayMs: 100, latency: { kind: 'uniform', minMs: 10, maxMs: 60 } },
    })
    const r = await runScenario(scenario, { seed: 5 })
    expect(r.passed, JSON.stringify(r.checks, null, 1)).to.equal(true)
    expect(r.messages.lost).to.be.greaterThan(0)
    expect(r.gossip.duplicatesReceived).to.be.greaterThan(0)
  })

  it('crash-restart (small): writes in flight at a crash are not acknowledged; acknowledged ones survive', async function () {
    const scenario = smallScenario('crash-small', {
      // A slow disk, so that crashes catch writes before they are durable.
      replica: { writeLatencyMs: 250 },
      workload: { ratePerSec: 30, entities: 12, startMs: 1000 },
      faults: [
        { at: 3000, type: 'crash', node: 1 },
        { at: 4000, type: 'crash', node: 2 },
        { at: 6000, type: 'restart', node: 1 },
        { at: 9000, type: 'restart', node: 2 },
      ],
      invariants: [{ kind: 'restart-recovers-acked-writes' }],
    })
    const r = await runScenario(scenario, { seed: 9 })
    expect(r.passed, JSON.stringify(r.checks, null, 1)).to.equal(true)
    expect(r.checks.find((c) => c.name === 'restart-recovers-acked-writes')!.summary).to.match(/2 restart/)
    expect(r.updates.neverAcknowledged, 'some writes were in flight when their node crashed').to.be.greaterThan(0)
  })
})
