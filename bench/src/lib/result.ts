/** One run the suite plans: a workload case, on one system, at one size. Runs in its own process. */
export interface RunSpec {
  workload: string
  case: string
  system: string
  n: number
  /** Workload knobs (window, nodes, budget …), recorded with the result. */
  params: Record<string, number>
  /** Kill the run after this long (a hang is a failure, like a crash). */
  timeoutMs: number
}

export interface Metric {
  name: string
  value: number
  unit: string
  better: 'higher' | 'lower'
}

/** What a workload measured. `primary` is what ratios compare; `metrics` hold the rest. */
export interface Measurement {
  primary: Metric
  metrics: Record<string, number>
  /** The n actually reached (W5 stops at its time budget). */
  n?: number
  notes?: string[]
}

/** One line of results.jsonl. */
export interface Result extends Measurement {
  workload: string
  case: string
  title: string
  system: string
  label: string
  role: 'ours' | 'raw' | 'peer'
  backend?: string
  n: number
  params: Record<string, number>
  wallMs: number
  /** When this run started, and the machine's 1-minute load average then. */
  startedAt: string
  loadAverage: number
  error?: string
  /** Why the first attempt failed, when a baseline's run crashed and was run again (see cli.ts). */
  retriedAfter?: string
}
