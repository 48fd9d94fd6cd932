import type { Report } from '../report/report.js'
import { runIn, type RunOptions } from '../run/runner.js'
import type { Scenario } from '../run/scenario.js'
import { LiveEnvironment } from './live-environment.js'

/**
 * Runs a scenario on real libp2p nodes in this process, in real time (≤ 10 nodes), with the
 * same workload, fault schedule, checks and report as the simulator.
 */
export function runLive(scenario: Scenario, options: RunOptions = {}): Promise<Report> {
  return runIn(scenario, { ...options, replayFlags: '--live' }, (parts) => new LiveEnvironment(parts))
}
