import { networkComplianceSuite } from '@convergent/core/testing'
import { Activity, Fabric, Metrics, Prng, resolveScenario, Scheduler, SimNetwork, startRealtimePump } from '../src/index.js'

// core's shared Network suite, run against the simulated network with virtual time pumped by
// the wall clock (the suite waits in real time).
networkComplianceSuite('sim SimNetwork', async (n) => {
  const scenario = resolveScenario({ network: { latency: { kind: 'uniform', minMs: 1, maxMs: 4 }, connectDelayMs: [1, 5] } }, 'compliance')
  const activity = new Activity()
  const scheduler = new Scheduler(activity)
  const rng = new Prng(1)
  const fabric = new Fabric(scheduler, scenario.network, new Metrics(1000, () => scheduler.now), rng)
  const networks: SimNetwork[] = []
  for (let i = 0; i < n; i++) {
    const index = fabric.addNode(`peer-${i}`)
    networks.push(
      new SimNetwork(
        fabric,
        index,
        scheduler.clockFor(rng.fork(`c${i}`), () => 0),
        rng.fork(`n${i}`),
      ),
    )
  }
  for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) fabric.want(a, b)
  const stopPump = startRealtimePump(scheduler)
  return {
    networks,
    connectAll: async () => {
      const deadline = Date.now() + 5000
      while (!networks.every((net) => !net.isStarted || net.peers().length === networks.filter((x) => x.isStarted).length - 1)) {
        if (Date.now() > deadline) throw new Error('simulated networks did not connect')
        await new Promise((r) => setTimeout(r, 5))
      }
    },
    cleanup: async () => {
      await Promise.all(networks.map((net) => net.stop()))
      await stopPump()
    },
  }
})
