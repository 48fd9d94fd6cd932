import { expect } from 'chai'
import { runLive } from '../src/live/live-runner.js'
import { smallScenario } from './helpers.js'

describe('sim: live mode (real libp2p, real time)', function () {
  this.timeout(60_000)

  it('runs a small partition-heal on real libp2p nodes with the same checks and metrics', async function () {
    const scenario = smallScenario('live-small', {
      nodes: 3,
      durationMs: 6_000,
      settleMs: 20_000,
      // Seeding at 0 ms asks that the clock starts once the nodes are open: libp2p takes real
      // time to start (a CI machine once took over 200 ms, the default seedAtMs).
      workload: { ratePerSec: 10, entities: 6, seedAtMs: 0, startMs: 1_000 },
      network: { latency: { kind: 'constant', ms: 20 } },
      faults: [
        { at: 2500, type: 'isolate', node: 2 },
        { at: 4000, type: 'heal' },
      ],
    })
    const r = await runLive(scenario, { seed: 4 })
    expect(r.mode).to.equal('live')
    expect(r.passed, JSON.stringify(r.checks, null, 1)).to.equal(true)
    // ~50 writes are planned (10/s for 5 s), issued on real timers: a loaded machine issues fewer
    // (one CI run acknowledged 20), so this asks that the workload ran and that no write hung.
    expect(r.updates.acknowledged, JSON.stringify(r.updates)).to.be.greaterThan(10)
    expect(r.updates.neverAcknowledged, JSON.stringify(r.updates)).to.equal(0)
    expect(r.messages.gossipDataFrames, 'gossipsub RPCs are counted').to.be.greaterThan(0)
    expect(r.messages.syncRequests).to.be.greaterThan(0)
    expect(r.sim.connectionsOpened).to.be.greaterThan(0)
    expect(r.replay).to.match(/--live$/)
  })
})
