import { automergeBackend } from '@convergent/automerge'
import { yjsBackend } from '@convergent/yjs'
import { Activity } from '../engine/activity.js'
import {
  ackedWritesCheck,
  convergeWithinCheck,
  convergenceCheck,
  counterConvergesCheck,
  counterFinalPass,
  counterNeverBelowMinCheck,
  counterNoOversellCheck,
  errorsCheck,
  finalPass,
  groupsConvergeCheck,
  monotonicCheck,
  ownAckedMaxima,
  restartCheck,
  type CheckResult,
  type CounterFinalPass,
  type FinalPass,
  type RestartFinding,
} from '../checks/checkers.js'
import type { CollectionPlan, HostNode, ReplicaTotals, SimContext } from './context.js'
import { ClusterRun, clusterCheck, type ClusterReport } from './cluster.js'
import { CounterLedger } from '../workload/counter-ledger.js'
import { counterIds, counterReport, CounterWorkload } from '../workload/counter-workload.js'
import { FaultInjector } from './faults.js'
import { Ledger, readRegisters } from '../workload/ledger.js'
import { Metrics } from '../report/metrics.js'
import type { Environment, EnvironmentParts } from './environment.js'
import { Prng } from '../engine/random.js'
import type { Report } from '../report/report.js'
import type { Scenario } from './scenario.js'
import { Scheduler } from '../engine/scheduler.js'
import { SimEnvironment } from './sim-environment.js'
import { evaluateTargets, healConvergence, propagation } from '../report/measure.js'
import { round, summarize } from '../report/stats.js'
import { Trace } from '../report/trace.js'
import { Workload } from '../workload/workload.js'

export interface Progress {
  phase: 'starting' | 'running' | 'settling' | 'checking' | 'done'
  virtualMs: number
  /** Virtual time the run lasts at most (duration + settle). */
  totalMs: number
  liveNodes: number
}

export interface RunOptions {
  seed?: number
  onProgress?: (p: Progress) => void
  /** How the replay command starts (default: node sim/dist/src/cli.js). */
  command?: string
  /** How the replay command names the scenario (default its name; the CLI passes what it was given). */
  scenarioRef?: string
  /** Appended to the replay command (live mode adds --live). */
  replayFlags?: string
  /** Test hook: runs once the context exists, before any node starts (e.g. to break the network). */
  tamper?: (ctx: SimContext) => void
}

const CHECK_EVERY_MS = 100
/** No progress on missing updates for this long → compare states anyway (writes may be gone for good). */
const STALL_MS = 5_000

/** Runs one scenario in virtual time and returns its report. */
export function runScenario(scenario: Scenario, options: RunOptions = {}): Promise<Report> {
  return runIn(scenario, options, (parts) => new SimEnvironment(parts))
}

/** Runs a scenario in an environment (simulated or live): the same workload, faults, checks and report. */
export async function runIn(scenario: Scenario, options: RunOptions, makeEnvironment: (parts: EnvironmentParts) => Environment): Promise<Report> {
  const seed = options.seed ?? scenario.seed
  const wallStart = performance.now()
  const startedAt = new Date().toISOString()
  const activity = new Activity()
  const scheduler = new Scheduler(activity)
  const realDateNow = Date.now
  const memory = { peakRssBytes: 0, peakHeapUsedBytes: 0 }
  let lastMemorySample = 0
  const sampleMemory = (): void => {
    const m = process.memoryUsage()
    memory.peakRssBytes = Math.max(memory.peakRssBytes, m.rss)
    memory.peakHeapUsedBytes = Math.max(memory.peakHeapUsedBytes, m.heapUsed)
  }
  let env: Environment | undefined
  try {
    const rng = new Prng(seed, 'run')
    const metrics = new Metrics(scenario.sampleMs, () => scheduler.now)
    env = makeEnvironment({ scenario, scheduler, activity, metrics, rng })
    const environment = env
    // Automerge stamps changes with Date.now(): in a simulated run that must be virtual time too.
    if (env.virtualDateNow) Date.now = () => scheduler.epochMs + scheduler.now
    const trace = new Trace(
      () => scheduler.now,
      () => nodes.filter((n) => n.isUp).map((n) => n.index),
    )
    const ledger = new Ledger()
    const counterOn = scenario.workload.counter.ids > 0
    const counterLedger = new CounterLedger(scenario.workload.counter.min)
    const ids = counterOn ? counterIds(scenario.workload.counter) : []
    const nodes: HostNode[] = []
    const totals: ReplicaTotals = {
      syncRounds: 0,
      syncFailures: 0,
      deltasApplied: 0,
      deltasDuplicate: 0,
      pushedMessages: 0,
      dropped: {},
      warnings: 0,
      errors: 0,
      errorSamples: [],
    }
    const collections: CollectionPlan[] = []
    if (scenario.workload.backends.yjs > 0) collections.push({ name: 'yjs-items', backend: 'yjs', weight: scenario.workload.backends.yjs })
    if (scenario.workload.backends.automerge > 0)
      collections.push({ name: 'automerge-items', backend: 'automerge', weight: scenario.workload.backends.automerge })
    const restartFindings: RestartFinding[] = []
    const cluster = scenario.replica.cluster ? new ClusterRun(seed) : undefined

    const ctx: SimContext = {
      scenario,
      seed,
      scheduler,
      activity,
      control: env.control,
      metrics,
      ledger,
      counterLedger,
      trace,
      rng,
      // Checks inflate on the loop: thread-pool timing would order concurrent applies differently run to run.
      backends: [yjsBackend(), automergeBackend({ inflateOn: 'event-loop' })],
      collections,
      nodes,
      totals,
      cluster,
      errors: [],
      addNode: () => {
        const node = createNode()
        environment.wireJoiner(
          node.index,
          nodes.filter((n) => n.status !== 'left').map((n) => n.index),
        )
        node.start()
        return node
      },
    }
    const createNode = (): HostNode => {
      ledger.addNode()
      counterLedger.addNode()
      const node = environment.createNode(ctx, nodes.length)
      node.onUp = onNodeUp
      nodes.push(node)
      return node
    }
    // restart-recovers-acked-writes: a restarted node must reload every write it acknowledged.
    const watchRestarts = scenario.invariants.some((i) => i.kind === 'restart-recovers-acked-writes')
    const onNodeUp = (node: HostNode): void => {
      const downAt = node.lastDownAt
      if (!watchRestarts || downAt === undefined) return
      const own = ownAckedMaxima(ctx, node.index, downAt)
      const finding: RestartFinding = { node: node.id, at: scheduler.now, checked: own.size, lost: [] }
      restartFindings.push(finding)
      const reads = [...own.values()].map(async (w) => {
        const value = await node.collection(w.collection)?.get(w.entity)
        const shown = readRegisters(value).get(w.writer) ?? 0
        if (shown < w.n)
          finding.lost.push(`${node.id} restarted without ${w.collection}/${w.entity}.n${w.writer}=${w.n} (acked at ${w.ackedAt} ms), shows ${shown}`)
      })
      void Promise.all(reads).catch((err: unknown) => ctx.errors.push(`restart check of ${node.id} failed: ${String(err)}`))
    }

    for (let i = 0; i < scenario.nodes; i++) createNode()
    env.wireInitial(nodes.map((n) => n.index))
    options.tamper?.(ctx)
    const totalMs = scenario.durationMs + scenario.settleMs
    const progress = (phase: Progress['phase']): void =>
      options.onProgress?.({ phase, virtualMs: scheduler.now, totalMs, liveNodes: nodes.filter((n) => n.isUp).length })
    progress('starting')
    for (const node of nodes) node.start()
    await activity.drain()
    await env.nodesStarted(nodes)

    const workload = new Workload(ctx)
    workload.scheduleSeed()
    workload.start()
    const faults = new FaultInjector(ctx)
    faults.schedule(scenario.faults)
    // Created after the others: its random stream is forked last, so runs without a counter
    // workload draw exactly the numbers they drew before it existed.
    const counterWorkload = counterOn ? new CounterWorkload(ctx) : undefined
    counterWorkload?.scheduleSeed()
    counterWorkload?.start()

    // Timeline: divergence among live replicas every sampleMs.
    const missingUpdates: number[] = []
    const replicasBehind: number[] = []
    const liveReplicas: number[] = []
    // The counters: every live replica's values (and rights) read at every sampling step.
    const stockLow: (number | null)[] = []
    const stockHigh: (number | null)[] = []
    const sampleCounters = (bucket: number): void => {
      stockLow.push(null)
      stockHigh.push(null)
      for (const node of nodes) {
        const stock = node.stock()
        if (stock === undefined) continue
        Promise.all(ids.map((id) => stock.inspect(id))).then(
          (seen) => {
            let total = 0
            for (const [k, s] of seen.entries()) {
              counterLedger.observe(node.index, ids[k]!, s.value, scheduler.now, 'sample')
              counterLedger.observeRights(node.index, ids[k]!, s.rights, scheduler.now, 'sample')
              total += s.value
            }
            stockLow[bucket] = Math.min(total, stockLow[bucket] ?? Infinity)
            stockHigh[bucket] = Math.max(total, stockHigh[bucket] ?? -Infinity)
          },
          (err: unknown) => {
            // A read cut short by a crash or close is expected; anything else is a failure.
            if (node.stock() === stock) ctx.errors.push(`reading ${node.id}'s counters failed: ${String(err)}`)
          },
        )
      }
    }
    const sample = (): void => {
      const live = nodes.filter((n) => n.isUp).map((n) => n.index)
      const d = ledger.divergence(live)
      if (counterOn) sampleCounters(missingUpdates.length)
      cluster?.sample(ctx, scheduler.now)
      missingUpdates.push(d.missing)
      replicasBehind.push(d.behind)
      liveReplicas.push(live.length)
      scheduler.after(scenario.sampleMs, sample)
    }
    scheduler.at(0, sample)

    let lastProgress = 0
    const onInstant = (): void => {
      const wall = performance.now()
      if (wall - lastMemorySample > 250) {
        lastMemorySample = wall
        sampleMemory()
      }
      if (wall - lastProgress > 100) {
        lastProgress = wall
        progress(scheduler.now < scenario.durationMs ? 'running' : 'settling')
      }
    }

    await env.advance(scenario.durationMs, { onInstant })
    workload.stop()
    counterWorkload?.stop()
    if (scenario.healAtEnd) faults.healAll()
    const lastFaultEnd = trace.heals.length > 0 ? trace.heals[trace.heals.length - 1]!.at : 0
    const quiescentAt = Math.max(scenario.durationMs, lastFaultEnd)

    // Settle: run until every live replica shows the same state, or the settle time is up.
    const deadline = scenario.durationMs + scenario.settleMs
    let pass: FinalPass | undefined
    let convergedAt: number | undefined
    let counterPass: CounterFinalPass | undefined
    let counterAgreedAt: number | undefined
    let lastMissing = -1
    let lastChange = scheduler.now
    let nextCompare = 0
    for (;;) {
      const live = nodes.filter((n) => n.isUp)
      const settled = nodes.every((n) => n.status !== 'starting' && n.status !== 'stopping')
      const { missing } = ledger.divergence(live.map((n) => n.index))
      if (missing !== lastMissing) {
        lastMissing = missing
        lastChange = scheduler.now
      }
      const stalled = scheduler.now - lastChange >= STALL_MS
      if (settled && scheduler.now >= nextCompare && (missing === 0 || stalled)) {
        progress('checking')
        pass = await finalPass(ctx, live)
        const registersDone = pass.distinctStates <= 1 && (missing === 0 || pass.missing.length === 0)
        if (registersDone) convergedAt ??= scheduler.now
        let countersDone = true
        if (counterOn) {
          counterPass = await counterFinalPass(ctx, live, ids)
          countersDone = counterPass.agree && counterPass.asExpected
          if (countersDone) counterAgreedAt ??= scheduler.now
        }
        if (registersDone && countersDone) break
        // States differ although the ledger looks complete: compare again later, less often.
        nextCompare = scheduler.now + Math.max(CHECK_EVERY_MS, (scheduler.now - quiescentAt) / 4)
      }
      if (scheduler.now >= deadline) break
      await env.advance(Math.min(deadline, scheduler.now + CHECK_EVERY_MS), { onInstant })
    }
    const endAt = scheduler.now
    const live = nodes.filter((n) => n.isUp)
    if (pass === undefined || pass.at !== endAt) pass = await finalPass(ctx, live)
    if (counterOn && (counterPass === undefined || counterPass.at !== endAt)) counterPass = await counterFinalPass(ctx, live, ids)
    sampleMemory()
    progress('done')

    for (const node of live) node.collectStats()
    const convergedAfter = convergedAt === undefined ? undefined : Math.max(0, convergedAt - quiescentAt)

    const { afterEachHeal, completion } = healConvergence(trace.heals, ledger.writes, new Set(live.map((n) => n.index)))

    // --- checks ---
    const checks: CheckResult[] = [convergenceCheck(pass, convergedAfter), ackedWritesCheck(ctx, pass), monotonicCheck(ctx), errorsCheck(ctx)]
    for (const inv of scenario.invariants) {
      if (inv.kind === 'groups-converge-during-partition') checks.push(groupsConvergeCheck(ctx, faults.episodes, inv.graceMs))
      else if (inv.kind === 'restart-recovers-acked-writes') checks.push(restartCheck(restartFindings))
      else if (inv.kind === 'converge-within') checks.push(convergeWithinCheck(afterEachHeal, convergedAfter, inv.ms))
    }
    if (counterOn) checks.push(counterNeverBelowMinCheck(ctx), counterConvergesCheck(ctx, counterPass!), counterNoOversellCheck(ctx, ids))
    let clusterReport: ClusterReport | null = null
    if (cluster !== undefined) {
      const { check, report } = await clusterCheck(ctx, cluster, live)
      checks.push(check)
      clusterReport = report
    }
    if (convergedAt === undefined && checks[0]!.ok) {
      checks[0] = { ...checks[0]!, ok: false, summary: `${checks[0]!.summary}, but only after the settle deadline with writes still missing` }
    }

    // --- metrics ---
    const acked = ledger.writes.filter((w) => !Number.isNaN(w.ackedAt))
    const { allLatencies, healthyLatencies, latencySamples, incomplete } = propagation(acked, completion, (w) =>
      trace.faultDuring(w.issuedAt, w.issuedAt + scenario.healthyWindowMs, scenario.healthyWindowMs),
    )
    const lastHeal = afterEachHeal.filter((h) => h.atMs <= quiescentAt).at(-1)

    const t = metrics.traffic
    const per = (v: number): number | null => (acked.length === 0 ? null : round(v / acked.length))
    const allSummary = summarize(allLatencies)
    const healthySummary = summarize(healthyLatencies)
    const wallMs = performance.now() - wallStart
    const targets = evaluateTargets(scenario, {
      msgsPerUpdate: per(t.frames),
      latency: scenario.targets.latencyOf === 'all' ? allSummary : healthySummary,
      wallMs,
    })
    const rate = (series: number[]): number[] => series.map((v) => round((v * 1000) / scenario.sampleMs))
    const report: Report = {
      mode: env.mode,
      scenario,
      seed,
      replay: `${options.command ?? 'node sim/dist/src/cli.js'} run ${options.scenarioRef ?? scenario.name} --seed ${seed} --nodes ${scenario.nodes}${options.replayFlags === undefined ? '' : ` ${options.replayFlags}`}`,
      passed: checks.every((c) => c.ok),
      nodes: {
        initial: scenario.nodes,
        created: nodes.length,
        liveAtEnd: live.length,
        leftForGood: nodes.filter((n) => n.status === 'left').length,
      },
      virtualTimeMs: { workloadEnd: scenario.workload.stopMs ?? scenario.durationMs, lastFaultEnd, end: endAt },
      updates: {
        issued: workload.issued,
        acknowledged: workload.acked,
        rejected: workload.failed - workload.skipped,
        skippedEntityNotYetKnown: workload.skipped,
        neverAcknowledged: workload.unacknowledged,
        ratePerSec: scenario.workload.ratePerSec,
      },
      messages: {
        total: t.frames,
        perUpdate: per(t.frames),
        gossipDataPerUpdate: per(t.gossipDataFrames),
        gossipControlPerUpdate: per(t.gossipControlFrames),
        syncPerUpdate: per(t.syncRequests + t.syncResponses),
        gossipDataFrames: t.gossipDataFrames,
        gossipControlFrames: t.gossipControlFrames,
        syncRequests: t.syncRequests,
        syncResponses: t.syncResponses,
        lost: t.framesLost,
        retransmits: t.retransmits,
      },
      bytes: { total: t.bytes, perUpdate: per(t.bytes), gossip: t.gossipBytes, sync: t.syncBytes },
      gossip: { ...metrics.gossip },
      propagationLatencyMs: { allWrites: allSummary, healthyWrites: healthySummary, neverFullyPropagated: incomplete },
      convergence: {
        converged: convergedAt !== undefined,
        timeToConvergeAfterHealMs: lastHeal?.convergedAfterMs ?? null,
        afterEachHeal,
        timeToEqualStatesAfterQuiescenceMs: convergedAfter ?? null,
        distinctStatesAtEnd: pass.distinctStates,
        stateDigest: pass.distinctStates === 1 ? pass.digests[0]!.digest : null,
      },
      replicas: {
        syncRounds: totals.syncRounds,
        syncFailures: totals.syncFailures,
        deltasApplied: totals.deltasApplied,
        deltasDuplicate: totals.deltasDuplicate,
        pushedMessages: totals.pushedMessages,
        dropped: totals.dropped,
        warnings: totals.warnings,
        errors: totals.errors,
      },
      cluster: clusterReport,
      counter: counterOn ? counterReport(ctx, counterPass!, counterAgreedAt === undefined ? null : Math.max(0, counterAgreedAt - quiescentAt)) : null,
      checks,
      targets,
      faults: trace.faults,
      timeline: {
        bucketMs: scenario.sampleMs,
        messagesPerSec: {
          gossipData: rate(metrics.seriesOf('gossipData', endAt)),
          gossipControl: rate(metrics.seriesOf('gossipControl', endAt)),
          sync: rate(metrics.seriesOf('sync', endAt)),
        },
        bytesPerSec: rate(metrics.seriesOf('bytes', endAt)),
        missingUpdates,
        replicasBehind,
        liveReplicas,
        latencySamples,
        ...(counterOn ? { stock: { low: stockLow, high: stockHigh } } : {}),
      },
      sim: {
        instants: scheduler.instants,
        tasks: scheduler.tasksRun,
        eventLoopTurns: activity.turns,
        connectionsOpened: env.control.connectionsOpened,
        connectionsClosed: env.control.connectionsClosed,
      },
      trace: [],
      wall: { startedAt, elapsedMs: Math.round(wallMs), virtualMsPerWallMs: round(endAt / Math.max(1, wallMs)) },
      memory,
    }
    for (const c of checks) trace.log(`check ${c.name}: ${c.ok ? 'ok' : 'FAILED'} — ${c.summary}`)
    report.trace = trace.events.slice(-2000)

    // Free what the run holds: timers die with their clocks, the stores are closed.
    await Promise.all(nodes.map((n) => n.dispose()))
    return report
  } finally {
    Date.now = realDateNow
    await env?.dispose()
  }
}
