// @convergent/sim: real replicas over a simulated network in virtual time.
export { runScenario, runIn, type RunOptions, type Progress } from './run/runner.js'
export { SimNode } from './nodes/sim-node.js'
export { MapStore, emptyMapStoreData } from './nodes/map-store.js'
export type { HostNode, NetworkControl } from './run/context.js'
export type { Environment, EnvironmentParts } from './run/environment.js'
export { loadScenario, listScenarios, resolveScenario, scenariosDir, LIBP2P_GOSSIP_DEFAULTS, DEFAULT_SCENARIO, ScenarioError } from './run/scenario.js'
export type {
  Scenario,
  FaultEvent,
  LinkParams,
  GossipParams,
  NetworkSpec,
  WorkloadSpec,
  CounterWorkloadSpec,
  ReplicaSpec,
  LatencySpec,
  InvariantSpec,
  TargetsSpec,
} from './run/scenario.js'
export type { Report, TargetResult } from './report/report.js'
export { withoutWallClock } from './report/report.js'
export { renderHtml } from './report/html.js'
export { Scheduler, NodeClock } from './engine/scheduler.js'
export { Activity } from './engine/activity.js'
export { Prng, ZipfSampler } from './engine/random.js'
export { Fabric } from './net/fabric.js'
export { SimNetwork } from './net/sim-network.js'
export type { SimContext, CollectionPlan } from './run/context.js'
export { startRealtimePump } from './engine/realtime.js'
export { checkHtmlInChromium, findChromium } from './report/html-check.js'
export { Metrics } from './report/metrics.js'
export { Ledger } from './workload/ledger.js'
export { CounterLedger, watchRightsRequests, type CounterOp, type RightsRequestStats } from './workload/counter-ledger.js'
export { CounterWorkload, counterIds, type CounterReport } from './workload/counter-workload.js'
