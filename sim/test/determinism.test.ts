import { expect } from 'chai'
import { runScenario, withoutWallClock } from '../src/index.js'
import { smallScenario } from './helpers.js'

describe('sim: determinism', function () {
  this.timeout(60_000)

  it('gives byte-identical reports (apart from wall-clock fields) for the same scenario and seed', async function () {
    const scenario = smallScenario('determinism', {
      faults: [
        { at: 4000, type: 'partition', split: [0.5, 0.5] },
        { at: 6000, type: 'crash', node: 1 },
        { at: 8000, type: 'heal' },
        { at: 9000, type: 'restart', node: 1 },
      ],
      network: { loss: 0.05, duplicate: 0.05, reorder: 0.1 },
      replica: { writeLatencyMs: 3 },
      // The counter workload too: its operations, rights requests and sampling reads.
      workload: {
        ratePerSec: 10,
        entities: 12,
        startMs: 1_000,
        counter: { ids: 2, initial: 30, restockers: 2, incrementRate: 2, decrementRate: 6, waitMs: 300, transferRate: 1 },
      },
    })
    const a = await runScenario(scenario, { seed: 11 })
    const b = await runScenario(scenario, { seed: 11 })
    const ja = JSON.stringify(withoutWallClock(a))
    const jb = JSON.stringify(withoutWallClock(b))
    expect(ja).to.equal(jb)
    expect(a.passed, JSON.stringify(a.checks)).to.equal(true)
    expect(a.updates.acknowledged).to.be.greaterThan(50)
    expect(a.counter!.decrements.accepted).to.be.greaterThan(20)
    expect(a.counter!.rightsRequests.sent).to.be.greaterThan(0)
    // …and a different seed gives a different run.
    const c = await runScenario(scenario, { seed: 12 })
    expect(JSON.stringify(withoutWallClock(c))).to.not.equal(ja)
  })
})
