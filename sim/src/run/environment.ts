import type { Activity } from '../engine/activity.js'
import type { HostNode, NetworkControl, SimContext } from './context.js'
import type { Metrics } from '../report/metrics.js'
import type { Prng } from '../engine/random.js'
import type { Scenario } from './scenario.js'
import type { RunOptions as SchedulerRunOptions, Scheduler } from '../engine/scheduler.js'

/** What an environment gets to build itself. */
export interface EnvironmentParts {
  scenario: Scenario
  scheduler: Scheduler
  activity: Activity
  metrics: Metrics
  rng: Prng
}

/**
 * Where a run happens: the simulator (virtual time, simulated network) or live (real libp2p
 * nodes, real time). The runner, workload, faults, checks and report are the same for both.
 */
export interface Environment {
  readonly mode: 'simulated' | 'live'
  readonly control: NetworkControl
  /** Virtual time replaces Date.now during the run (the simulator: Automerge reads Date.now). */
  readonly virtualDateNow: boolean
  /** A new node (not started) with the next index. */
  createNode(ctx: SimContext, index: number): HostNode
  /** Who dials whom among the initial nodes. */
  wireInitial(nodes: number[]): void
  /** Whom a node joining later dials. */
  wireJoiner(node: number, candidates: number[]): void
  /**
   * The initial nodes were started: returns once they are open (or failed to), so that time 0
   * of the schedule (seedAtMs, startMs, the faults) is measured from there.
   */
  nodesStarted(nodes: readonly HostNode[]): Promise<void>
  /** Runs the scheduler up to `until`: as fast as possible, or following the wall clock. */
  advance(until: number, options: SchedulerRunOptions): Promise<void>
  /** End of run: stop everything still running. */
  dispose(): Promise<void>
}
