import type { Measurement, RunSpec } from '../lib/result.js'

export type Mode = 'quick' | 'full'

export interface PlanOptions {
  mode: Mode
  /** Writes in flight at once (a service serving concurrent requests). */
  window: number
  /** W5: the largest store to build, and the time budget for writing it (s). */
  scaleMax: number
  scaleBudgetS: number
}

export interface Workload {
  id: string
  title: string
  plan(options: PlanOptions): RunSpec[]
  /** Runs one planned spec (in a child process) and measures it. */
  run(spec: RunSpec, log: (message: string) => void): Promise<Measurement>
}

export function spec(workload: string, c: string, system: string, n: number, params: Record<string, number>, timeoutMs: number): RunSpec {
  return { workload, case: c, system, n, params, timeoutMs }
}
