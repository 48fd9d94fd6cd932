import type { Backend, Collection, Counter, Replica, ReplicaStats } from '@convergent/core'
import type { ClusterRun } from './cluster.js'
import type { CounterLedger } from '../workload/counter-ledger.js'
import type { Activity } from '../engine/activity.js'
import type { Ledger } from '../workload/ledger.js'
import type { Metrics } from '../report/metrics.js'
import type { Prng } from '../engine/random.js'
import type { LinkParams, Scenario } from './scenario.js'
import type { Scheduler } from '../engine/scheduler.js'
import type { Trace } from '../report/trace.js'

/** A collection the workload writes, with the backend it uses. */
export interface CollectionPlan {
  name: string
  backend: 'yjs' | 'automerge'
  weight: number
}

/** Replica counters summed over every incarnation of every node. */
export interface ReplicaTotals {
  syncRounds: number
  syncFailures: number
  deltasApplied: number
  deltasDuplicate: number
  pushedMessages: number
  dropped: Record<string, number>
  warnings: number
  errors: number
  /** The first few replica errors, verbatim. */
  errorSamples: string[]
}

/** Adds one replica's counters (before it goes away) to the run's totals. */
export function addReplicaStats(totals: ReplicaTotals, s: ReplicaStats): void {
  totals.pushedMessages += s.pushed.messages
  for (const p of Object.values(s.peers)) {
    totals.syncRounds += p.syncRounds
    totals.syncFailures += p.syncFailures
    totals.deltasApplied += p.deltasApplied
    totals.deltasDuplicate += p.deltasDuplicate
    for (const [reason, n] of Object.entries(p.dropped)) if (n > 0) totals.dropped[reason] = (totals.dropped[reason] ?? 0) + n
  }
}

export type NodeStatus = 'new' | 'starting' | 'up' | 'stopping' | 'down' | 'left'

/** One node of a run, simulated (SimNode) or on real libp2p (LiveNode). */
export interface HostNode {
  readonly index: number
  /** n0, n1, … */
  readonly id: string
  status: NodeStatus
  readonly isUp: boolean
  /** The workload's counter for this node's registers: survives crashes. */
  counter: number
  /** Clock offset of this node (clock skew). */
  skewMs: number
  /** When it last crashed or shut down. */
  lastDownAt: number | undefined
  /** Called once each incarnation is open. */
  onUp: ((node: HostNode) => void) | undefined
  /** The open collection, while the node is up. */
  collection(name: string): Collection<Record<string, unknown>> | undefined
  /** The counter workload's bounded counter, while the node is up (undefined without a counter workload). */
  stock(): Counter | undefined
  /** The replica of the current incarnation (once open; also while stopping). */
  readonly replica: Replica | undefined
  /** The node's peer id (what counter rights are keyed by); undefined until it first started. */
  readonly peerId: string | undefined
  start(): void
  /** Abrupt: timers, connections and un-flushed writes vanish; the store keeps what was durable. */
  crash(): void
  /** Graceful close; permanent = the node never returns. */
  leave(permanent: boolean): void
  /** Adds the current incarnation's replica counters to the run's totals. */
  collectStats(): void
  /** End of run: stop whatever still runs and free the node's store. */
  dispose(): Promise<void>
}

/** The faults a run can inject into its network (simulated links, or real connections). */
export interface NetworkControl {
  partition(groups: number[][]): void
  isolate(node: number): void
  /** Lifts every partition, isolation and flapping cut. */
  heal(): void
  setFlap(groups: number[][] | undefined, down: boolean): void
  setLinkParams(set: Partial<LinkParams>): void
  readonly connectionsOpened: number
  readonly connectionsClosed: number
}

/** Everything the parts of one run share. */
export interface SimContext {
  readonly scenario: Scenario
  readonly seed: number
  readonly scheduler: Scheduler
  readonly activity: Activity
  readonly control: NetworkControl
  readonly metrics: Metrics
  readonly ledger: Ledger
  /** The counter workload's operations and observations (empty without one). */
  readonly counterLedger: CounterLedger
  readonly trace: Trace
  readonly rng: Prng
  readonly backends: Backend[]
  readonly collections: CollectionPlan[]
  readonly nodes: HostNode[]
  readonly totals: ReplicaTotals
  /** With replica.cluster: the run's keys and what it saw of the policy and signed pushes. */
  readonly cluster: ClusterRun | undefined
  /** Failures of the simulator itself (a node that failed to open, …). */
  readonly errors: string[]
  /** Creates a fresh node (empty store), wires it into the topology and starts it. */
  addNode(): HostNode
}
