// The bench as a library: run one planned spec, or build the tables from results.
export { runSpec } from './runner.js'
export { WORKLOADS, workload, type Workload, type PlanOptions, type Mode } from './workloads/index.js'
export { loadSystem, SYSTEM_IDS, describeSystem, type BenchNode, type System, type SystemInfo } from './peers/index.js'
export { toMarkdown, toSummary, toJsonl, parseJsonl, writeReport, type Report } from './lib/report.js'
export type { Result, RunSpec, Measurement, Metric } from './lib/result.js'
export { TcpMeter } from './lib/tcp-meter.js'
