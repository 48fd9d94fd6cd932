import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SKUS } from '../shared/catalog.js'
import type { OrderView, ServiceName, StateView } from '../shared/protocol.js'
import { Cluster, isAlive, type ServiceHandle } from './cluster.js'
import { waitForConvergence } from './convergence.js'
import { describeOutcomes, formatMs, formatSkus, plural } from './format.js'
import { HttpClient } from './http-client.js'
import { checkInvariants, type Invariant } from './invariants.js'
import { MetricsSampler, type MetricsSample } from './metrics-sampler.js'
import { StockMonitor, type StockSample } from './monitor.js'
import { planOrders } from './plan.js'
import { describeDump, describePrivacy, dumpFolders, forgetCustomer, makeCustomers, type PrivacyResult } from './privacy.js'
import { checkNothingLost, exampleOrderView, meshConnected, meshReady, ownRights, partitioned, waitUntil } from './probes.js'
import { describeTrust, prepareTrust, runTrustChecks, type TrustResult } from './trust.js'
import { runOrders, type OrderAttempt, type PhaseName, type PlannedOrder } from './workload.js'

export interface ScenarioOptions {
  /** Orders placed in all (default 240; quick 60). */
  orders?: number
  /** Short mode: fewer orders, no pacing (CI). */
  quick?: boolean
  /** Seed of the workload (SKUs and quantities). */
  seed?: number
  /** Keep the services' data folders (default: removed at the end). */
  keep?: boolean
  /** Where the services' folders go (default: a new temp folder). */
  dataRoot?: string
  /** Stops the scenario early (Ctrl-C); everything started is still stopped. */
  signal?: AbortSignal
}

/**
 * Points of the scenario a caller can wait at: the services are up ('started', before they
 * have connected); the partition is about to be cut ('partition-begins', normal traffic done);
 * the partition's traffic is done and the heal comes next ('partition-ends'); every replica
 * holds the same state after the heal ('converged-after-heal'); the final convergence, before
 * the services stop ('done').
 */
export type Milestone = 'started' | 'partition-begins' | 'partition-ends' | 'converged-after-heal' | 'done'

export interface ScenarioHooks {
  /** A line of narration (the demo prints it on stdout). */
  log?: (line: string) => void
  /** Work done so far, for a progress bar. */
  progress?(done: number, total: number, label: string): void
  /**
   * Awaited at each milestone, with the running services (e.g. a test starts Prometheus at
   * 'started' and waits for a scrape at the others). The scenario's timings leave it out.
   */
  milestone?(name: Milestone, services: ServiceHandle[]): Promise<void> | void
}

export interface PhaseSpan {
  name: PhaseName | 'converging'
  startMs: number
  endMs: number
}

export interface ScenarioSettings {
  orders: number
  quick: boolean
  seed: number
  stockPerSku: number
  lowWater: number
  waitMs: number
  concurrency: number
  ratePerSec: number
  syncIntervalMs: number
}

export interface ScenarioResult {
  settings: ScenarioSettings
  startedAt: string
  durationMs: number
  dataRoot: string
  kept: boolean
  /**
   * `metricsUrl`: the replica's /metrics, /healthz, /readyz and /status (convergent's serve()).
   * Payments, restarted after the forget, appears with the pid of its second process.
   */
  services: { name: ServiceName; pid: number; url: string; metricsUrl: string; peerId: string; logFile: string }[]
  phases: PhaseSpan[]
  attempts: OrderAttempt[]
  initialStock: Record<string, number>
  /** Rights each side held on its own when the partition began, per SKU. */
  rightsAtCut: { orders: Record<string, number>; inventory: Record<string, number> } | null
  convergence: { afterHealMs: number | null; afterHealOk: boolean; finalMs: number | null; finalOk: boolean }
  finalStates: StateView[]
  lowestStock: { polled: number | null; watched: Partial<Record<ServiceName, number | null>>; overall: number | null }
  samples: StockSample[]
  /** Each service's /metrics, sampled once a second: writes, applies from peers, replication lag. */
  metricSamples: MetricsSample[]
  /** Acknowledged orders missing on some service after the heal (must be empty). */
  lost: { checked: number; missing: { service: ServiceName; id: string }[] }
  /** The gateway view of one order placed across the partition, as another service serves it. */
  exampleView: OrderView | null
  /**
   * The forget of one customer after the heal (payments offline during it, restarted after), and
   * what every service's folder holds (null: not reached).
   */
  privacy: PrivacyResult | null
  /** The trust boundary at the end of the run: refused writes, outsiders refused at connect (null: not reached). */
  trust: TrustResult | null
  /** Pids of processes started by the scenario still alive after it stopped them. */
  processesLeft: number[]
  /** Every process started: the three services, and payments again after the forget. */
  pids: number[]
  /** Requests sent again because the kept-alive connection they went out on was found closed. */
  httpRetries: number
  interrupted: boolean
  error: string | null
  invariants: Invariant[]
}

const CONVERGE_TIMEOUT_MS = 30_000
/**
 * The service stopped before the forget and restarted after it: payments reads customers (it
 * mails receipts) but takes no orders, so no request of the workload goes to it while it is down.
 */
const OFFLINE_DURING_FORGET: ServiceName = 'payments'

export function resolveSettings(options: ScenarioOptions): ScenarioSettings {
  const quick = options.quick ?? false
  const orders = options.orders ?? (quick ? 60 : 240)
  if (!Number.isSafeInteger(orders) || orders < 1) throw new Error(`orders must be a positive integer, got ${orders}`)
  // Stock for ~2/3 of the demand: the web side runs short during the partition, and the
  // shop sells out near the end — so the run shows every outcome.
  const stockPerSku = Math.max(5, Math.ceil(orders * 0.4))
  return {
    orders,
    quick,
    seed: options.seed ?? 42,
    stockPerSku,
    lowWater: Math.max(3, Math.ceil(stockPerSku / 16)),
    waitMs: 500,
    concurrency: 4,
    ratePerSec: quick ? 0 : 30,
    syncIntervalMs: 3_000,
  }
}

/**
 * The demo scenario: start inventory, orders and payments → normal traffic → a partition
 * cutting inventory off from orders and payments, with orders taken on both sides → heal →
 * forget a customer (payments stopped during it, restarted on its folder after) → more traffic →
 * check that every replica converged, nothing acknowledged was lost and stock never went below
 * zero anywhere. Always stops every process it started.
 */
export async function runScenario(options: ScenarioOptions = {}, hooks: ScenarioHooks = {}): Promise<ScenarioResult> {
  const settings = resolveSettings(options)
  const signal = options.signal ?? new AbortController().signal
  const log = hooks.log ?? (() => undefined)
  const began = performance.now()
  const now = (): number => Math.round(performance.now() - began)
  const dataRoot = options.dataRoot ?? (await mkdtemp(join(tmpdir(), 'convergent-ecommerce-')))
  const client = new HttpClient()
  // Distinct per run: order ids never meet those of another run kept in the same folders.
  const idPrefix = randomBytes(3).toString('hex')
  // The trust boundary: a cluster key, inventory as the admin, every identity the policy names.
  const trust = await prepareTrust(dataRoot)
  const namespace = `shop-${process.pid}`
  const cluster = new Cluster(
    dataRoot,
    {
      namespace,
      stockPerSku: settings.stockPerSku,
      waitMs: settings.waitMs,
      lowWater: settings.lowWater,
      syncIntervalMs: settings.syncIntervalMs,
      admins: trust.admins,
    },
    trust,
  )
  const monitor = new StockMonitor(client, () => cluster.list(), now)
  const sampler = new MetricsSampler(() => cluster.list(), now)
  const milestone = async (name: Milestone): Promise<void> => {
    await hooks.milestone?.(name, cluster.list())
    signal.throwIfAborted()
  }
  const result: ScenarioResult = {
    settings,
    startedAt: new Date().toISOString(),
    durationMs: 0,
    dataRoot,
    kept: options.keep ?? false,
    services: [],
    phases: [],
    attempts: [],
    initialStock: Object.fromEntries(SKUS.map((s) => [s, settings.stockPerSku])),
    rightsAtCut: null,
    convergence: { afterHealMs: null, afterHealOk: false, finalMs: null, finalOk: false },
    finalStates: [],
    lowestStock: { polled: null, watched: {}, overall: null },
    samples: [],
    metricSamples: [],
    lost: { checked: 0, missing: [] },
    exampleView: null,
    privacy: null,
    trust: null,
    processesLeft: [],
    pids: [],
    httpRetries: 0,
    interrupted: false,
    error: null,
    invariants: [],
  }
  const totalWork = settings.orders + 4 // + the two convergence waits, the forget and the trust checks
  let done = 0
  const progress = (label: string): void => hooks.progress?.(done, totalWork, label)

  try {
    progress('starting services')
    log('Starting three services — each its own process, LevelDB folder and libp2p node on 127.0.0.1, all with one')
    log('cluster key (a libp2p private network) and a policy signed by inventory, the admin: each service its own role.')
    await cluster.start((s) => log(`  ${s.name.padEnd(9)}  pid ${String(s.pid).padEnd(7)} ${s.url.padEnd(22)}  ${s.peerId}`))
    result.services = cluster.list().map(({ name, pid, url, metricsUrl, peerId, logFile }) => ({ name, pid, url, metricsUrl, peerId, logFile }))
    log(
      `  metrics, health, readiness (Prometheus can scrape these): ${cluster
        .list()
        .map((s) => `${s.name} ${s.metricsUrl}/metrics`)
        .join(', ')}`,
    )
    signal.throwIfAborted()
    await milestone('started')
    const { inventory, orders, payments } = cluster.services
    await waitUntil(() => meshReady(client, cluster.list(), settings.stockPerSku), 20_000, 'services connected and the catalog replicated', signal)
    monitor.start()
    sampler.start()
    // Web orders carry customers (email and address: personal fields); ids are keyed pseudonyms.
    const customers = makeCustomers(idPrefix, trust.pseudonymKey)
    const plan = planOrders(settings.orders, settings.seed, { orders, inventory }, customers)

    const phase = async (name: PhaseName, planned: PlannedOrder[], label: string): Promise<OrderAttempt[]> => {
      const startMs = now()
      progress(label)
      const attempts = await runOrders({
        client,
        phase: name,
        orders: planned,
        concurrency: settings.concurrency,
        ratePerSec: settings.ratePerSec,
        firstSeq: result.attempts.length,
        idPrefix,
        signal,
        now,
        onAttempt: () => {
          done++
          progress(label)
        },
      })
      result.attempts.push(...attempts)
      result.phases.push({ name, startMs, endMs: now() })
      signal.throwIfAborted()
      log(`   ${describeOutcomes(attempts)}`)
      return attempts
    }

    // ① Normal traffic.
    log('')
    log(`① Normal traffic: ${plural(plan.normal.length, 'web order')} → orders service. Stock is ${settings.stockPerSku} per SKU, all of it`)
    log(`  inventory's rights at first; orders asks inventory for rights when short and keeps ≥ ${settings.lowWater} per SKU in reserve.`)
    await phase('normal', plan.normal, 'normal traffic')

    // ② Partition: inventory alone on one side, orders and payments on the other.
    log('')
    log('② Partition: inventory is cut off from orders and payments (libp2p connections closed and refused both ways).')
    await milestone('partition-begins')
    await Promise.all([
      client.postOk(`${inventory.url}/admin/partition`, { peers: [orders.peerId, payments.peerId] }, { signal, idempotent: true }),
      client.postOk(`${orders.url}/admin/partition`, { peers: [inventory.peerId] }, { signal, idempotent: true }),
      client.postOk(`${payments.url}/admin/partition`, { peers: [inventory.peerId] }, { signal, idempotent: true }),
    ])
    await waitUntil(() => partitioned(client, cluster.services), 10_000, 'the partition to take effect', signal)
    result.rightsAtCut = {
      orders: await ownRights(client, orders),
      inventory: await ownRights(client, inventory),
    }
    log(`   Rights at the cut — orders: ${formatSkus(result.rightsAtCut.orders)} (got before the cut; it may sell these alone)`)
    log(`                      inventory: ${formatSkus(result.rightsAtCut.inventory)}`)
    log('   Orders keep coming on both sides: web → orders service, shop counter → inventory. Each side sells only')
    log('   within the rights it holds, so together they never sell more than exists; a side out of rights answers 409.')
    await phase('partition', plan.partition, 'partition: orders on both sides')
    await milestone('partition-ends')

    // ③ Heal, and time until every replica holds the same state.
    log('')
    log('③ Heal: connections allowed again; replicas exchange what they missed (push + anti-entropy).')
    const healStart = now()
    await Promise.all(cluster.list().map((s) => client.postOk(`${s.url}/admin/heal`, {}, { signal, idempotent: true })))
    progress('converging after heal')
    const afterHeal = await waitForConvergence(client, cluster.list(), { minOrders: countAccepted(result.attempts), timeoutMs: CONVERGE_TIMEOUT_MS, signal })
    signal.throwIfAborted()
    done++
    result.phases.push({ name: 'converging', startMs: healStart, endMs: now() })
    result.convergence.afterHealOk = afterHeal.converged
    result.convergence.afterHealMs = afterHeal.converged ? Math.round(afterHeal.ms) : null
    log(
      afterHeal.converged
        ? `   Converged ${formatMs(afterHeal.ms)} after the heal: all three services hold the same orders, payments and stock; every order is paid.`
        : `   NOT converged ${formatMs(afterHeal.ms)} after the heal.`,
    )
    await milestone('converged-after-heal')

    // Rights move only between connected peers: let every link come back before more traffic.
    await waitUntil(() => meshConnected(client, cluster.list()), 10_000, 'every service to reconnect after the heal', signal)

    // ④ Forget a customer, with no traffic; payments (a reader of customers that takes no orders)
    // is stopped before the forget and restarted on the same folder after it.
    log('')
    log(`④ Forget: the orders service (the writer of customers) forgets ${customers[0]!.email} — replica.forget(customer id): a signed`)
    log('   tombstone to every member; each destroys the subject key and compacts. Payments is stopped first and restarted on')
    log('   the same folder after the forget: it must destroy the key itself when it comes back. Checked on every service: get(),')
    log('   and a byte search of every file of its folder for any customer email or address, before and after.')
    progress('forgetting a customer')
    result.privacy = await forgetCustomer(
      client,
      cluster.services,
      dataRoot,
      customers,
      result.attempts,
      signal,
      { service: OFFLINE_DURING_FORGET, stop: () => cluster.stopService(OFFLINE_DURING_FORGET), restart: () => cluster.restart(OFFLINE_DURING_FORGET) },
      (line) => log(`   ${line}`),
    )
    signal.throwIfAborted()
    // The restarted service has a new pid (same folder, peer id and URLs).
    result.services = cluster.list().map(({ name, pid, url, metricsUrl, peerId, logFile }) => ({ name, pid, url, metricsUrl, peerId, logFile }))
    done++
    for (const line of describePrivacy(result.privacy)) log(`   ${line}`)
    // Orders are paid by payments: every link back before more traffic.
    await waitUntil(() => meshConnected(client, cluster.list()), 10_000, 'every service to reconnect after the restart', signal)

    // ⑤ Traffic after the heal.
    log('')
    log(`⑤ After the heal: ${plural(plan.healed.length, 'web order')} → orders service (rights flow from inventory again).`)
    await phase('healed', plan.healed, 'after heal')

    progress('final convergence')
    const final = await waitForConvergence(client, cluster.list(), { minOrders: countAccepted(result.attempts), timeoutMs: CONVERGE_TIMEOUT_MS, signal })
    signal.throwIfAborted()
    done++
    result.convergence.finalOk = final.converged
    result.convergence.finalMs = final.converged ? Math.round(final.ms) : null
    result.finalStates = final.states
    await monitor.stop()
    await monitor.pollOnce()
    await sampler.stop()
    await sampler.sampleOnce()
    result.lost = await checkNothingLost(client, cluster.list(), result.attempts)
    result.exampleView = await exampleOrderView(client, cluster.services, result.attempts)

    // ⑥ The trust boundary: what a member may not do, and who may not connect.
    log('')
    log('⑥ Trust boundary: a support replica (role support: reads orders, not payments) and a tampered support client')
    log('   try to write an order; an outsider with another cluster key and a key holder the policy does not name dial in.')
    progress('trust checks')
    result.trust = await runTrustChecks(
      trust,
      namespace,
      dataRoot,
      cluster.services,
      client,
      result.attempts.find((a) => a.outcome === 'accepted')?.id ?? null,
      signal,
    )
    signal.throwIfAborted()
    done++
    for (const line of describeTrust(result.trust)) log(`   ${line}`)
    await milestone('done')
    progress('done')
  } catch (err) {
    if (signal.aborted) result.interrupted = true
    else result.error = err instanceof Error ? (err.stack ?? err.message) : String(err)
  } finally {
    await monitor.stop()
    await sampler.stop()
    await cluster.stop()
    // With the services stopped, their folders can be opened: dump every stored customer record.
    if (result.privacy !== null && !result.interrupted) {
      await dumpFolders(dataRoot, result.privacy)
      const line = describeDump(result.privacy)
      if (line !== null) log(`   ${line}`)
    }
    result.httpRetries = client.retries
    client.destroy()
    result.pids = [...cluster.pids]
    result.processesLeft = cluster.pids.filter(isAlive)
    if (!result.kept) await rm(dataRoot, { recursive: true, force: true })
  }
  result.samples = monitor.samples
  result.metricSamples = sampler.samples
  result.lowestStock = { polled: monitor.lowestPolled, watched: monitor.lowestWatched, overall: monitor.lowest }
  result.durationMs = now()
  result.invariants = checkInvariants(result)
  return result
}

function countAccepted(attempts: OrderAttempt[]): number {
  return attempts.filter((a) => a.outcome === 'accepted').length
}
