import type { CheckResult } from '../checks/checkers.js'
import type { ClusterReport } from '../run/cluster.js'
import type { CounterReport } from '../workload/counter-workload.js'
import type { ReplicaTotals } from '../run/context.js'
import type { Scenario } from '../run/scenario.js'
import type { Summary } from './stats.js'
import type { FaultInterval, TraceEvent } from './trace.js'

export interface TargetResult {
  name: string
  limit: number
  value: number | null
  met: boolean
}

/**
 * Everything a run measured. All fields are deterministic for a scenario and seed except
 * `wall` and `memory` (wall-clock and process measurements).
 */
export interface Report {
  mode: 'simulated' | 'live'
  scenario: Scenario
  seed: number
  replay: string
  passed: boolean
  nodes: { initial: number; created: number; liveAtEnd: number; leftForGood: number }
  virtualTimeMs: { workloadEnd: number; lastFaultEnd: number; end: number }
  updates: { issued: number; acknowledged: number; rejected: number; skippedEntityNotYetKnown: number; neverAcknowledged: number; ratePerSec: number }
  messages: {
    total: number
    perUpdate: number | null
    gossipDataPerUpdate: number | null
    gossipControlPerUpdate: number | null
    syncPerUpdate: number | null
    gossipDataFrames: number
    gossipControlFrames: number
    syncRequests: number
    syncResponses: number
    lost: number
    retransmits: number
  }
  bytes: { total: number; perUpdate: number | null; gossip: number; sync: number }
  gossip: Record<string, number>
  propagationLatencyMs: {
    /** Write issued → shown by the last live replica that existed when it was issued. */
    allWrites: Summary
    /** Only writes with no fault in force within healthyWindowMs of them. */
    healthyWrites: Summary
    /** Acknowledged writes that some such replica never showed. */
    neverFullyPropagated: number
  }
  convergence: {
    converged: boolean
    /** Time from the last heal until every write acknowledged before it had reached every live replica. */
    timeToConvergeAfterHealMs: number | null
    /** The same for each heal (end of a partition, isolation, flapping, crash, churn…). */
    afterEachHeal: { atMs: number; kind: string; convergedAfterMs: number | null }[]
    /** From quiescence (workload stopped and faults over) to equal state digests on every live replica, to ±100 ms. */
    timeToEqualStatesAfterQuiescenceMs: number | null
    distinctStatesAtEnd: number
    stateDigest: string | null
  }
  replicas: Omit<ReplicaTotals, 'errorSamples'>
  /** The trust boundary (replica.cluster): policy, signatures, signed pushes, proofs; null without it. */
  cluster: ClusterReport | null
  /** The bounded-counter workload (workload.counter); null without one. */
  counter: CounterReport | null
  checks: CheckResult[]
  targets: TargetResult[]
  faults: FaultInterval[]
  timeline: {
    bucketMs: number
    /** Frames per second in each bucket, by kind. */
    messagesPerSec: { gossipData: number[]; gossipControl: number[]; sync: number[] }
    bytesPerSec: number[]
    /** Acknowledged updates not yet shown by live replicas, and how many replicas lag. */
    missingUpdates: number[]
    replicasBehind: number[]
    liveReplicas: number[]
    /** [issue time, latency] of a sample of writes (at most 2,000). */
    latencySamples: [number, number][]
    /** With a counter workload: the lowest and highest total stock (sum over ids) a live replica showed at each sample; null = none read. */
    stock?: { low: (number | null)[]; high: (number | null)[] }
  }
  sim: { instants: number; tasks: number; eventLoopTurns: number; connectionsOpened: number; connectionsClosed: number }
  trace: TraceEvent[]
  wall: { startedAt: string; elapsedMs: number; virtualMsPerWallMs: number }
  memory: { peakRssBytes: number; peakHeapUsedBytes: number }
}

/** The fields that differ between two runs of the same scenario and seed. */
export function withoutWallClock(report: Report): Omit<Report, 'wall' | 'memory'> {
  const { wall: _wall, memory: _memory, ...rest } = report
  return rest
}
