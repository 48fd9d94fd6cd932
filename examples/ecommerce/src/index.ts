export {
  runScenario,
  resolveSettings,
  type ScenarioOptions,
  type ScenarioHooks,
  type Milestone,
  type ScenarioResult,
  type ScenarioSettings,
} from './driver/scenario.js'
export { checkInvariants, type Invariant } from './driver/invariants.js'
export { renderSummary } from './driver/summary.js'
export { renderReport } from './driver/report-html.js'
export { isAlive } from './driver/cluster.js'
export type * from './shared/protocol.js'
export { parsePrometheusText, quantileBetween, getText, type MetricsSample, type LagHistogram, type PromSeries } from './driver/metrics-sampler.js'
export type { ServiceHandle } from './driver/cluster.js'
