/**
 * The trust boundary of the demo: a cluster key, an admin (inventory) and a signed policy that
 * gives each service its own role — and, at the end of the run, the checks that show it holds:
 * an unauthorised write refused (locally by an honest support replica, and on receipt from a
 * tampered one), and outsiders refused at connect.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { folderPeerId, generateClusterKey, isConvergentError, open, silentLogger, type Replica } from 'convergent'
import { SERVICE_NAMES, type HealthView, type OrderView, type PolicyDoc, type ServiceName } from '../shared/protocol.js'
import type { ServiceHandle } from './cluster.js'
import { formatMs } from './format.js'
import type { HttpClient } from './http-client.js'
import { getText, parsePrometheusText } from './metrics-sampler.js'
import { sleep } from './workload.js'

/** The replicas the driver runs itself besides the three services. */
export type ExtraName = 'support' | 'rogue'

export interface TrustSetup {
  /** The cluster key (64 hex characters): every service gets it in its environment. */
  key: string
  /** Peer ids by name, known before anything runs (each folder's identity). */
  ids: Record<ServiceName | ExtraName, string>
  admins: string[]
  policy: PolicyDoc
  /**
   * The key of customer ids (keyed pseudonyms of emails; 64 hex characters): a key of its own,
   * given to the orders service only, in its environment (SHOP_PSEUDONYM_KEY).
   */
  pseudonymKey: string
}

/**
 * Makes the cluster key and every identity the policy names, and the policy: only payments
 * writes payments (read by orders and inventory, not support); orders and inventory write
 * orders and share the stock rights; only orders (the web shop) writes customers, and every
 * member reads them (inventory ships to the address, payments mails receipts, support answers
 * customers) — so a customer's key reaches every service, and a forget must reach every one;
 * every member reads products, stock and orders; the support role (a support desk, and a
 * tampered support client) reads and writes nothing else.
 */
export async function prepareTrust(dataRoot: string): Promise<TrustSetup> {
  const names = [...SERVICE_NAMES, 'support', 'rogue'] as const
  const ids = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await folderPeerId(join(dataRoot, n))] as const))) as TrustSetup['ids']
  const policy: PolicyDoc = {
    roles: { inventory: [ids.inventory], orders: [ids.orders], payments: [ids.payments], support: [ids.support, ids.rogue] },
    collections: {
      // Each pinned to the backend the services open it with: no replica takes it under another.
      products: { read: ['*'], write: ['inventory'], backend: 'yjs' },
      stock: { read: ['*'], write: ['inventory', 'orders'], counter: true, backend: 'automerge' }, // every service guards the counters' signed rows
      orders: { read: ['*'], write: ['inventory', 'orders'], backend: 'yjs' },
      payments: { read: ['inventory', 'orders'], write: ['payments'], backend: 'yjs' },
      customers: { read: ['*'], write: ['orders'], backend: 'yjs' },
    },
  }
  return { key: generateClusterKey(), ids, admins: [ids.inventory], policy, pseudonymKey: randomBytes(32).toString('hex') }
}

export interface OutsiderResult {
  name: string
  why: string
  peerId: string
  /** Connected to any service at any check (must stay false). */
  connected: boolean
  /** How long it kept dialling the services (ms). */
  triedMs: number
}

export interface TrustResult {
  /** The policy the admin signed (roles name peer ids; `names` maps them back). */
  policy: PolicyDoc
  /** The policy version each service (and support) holds at the end. */
  policyVersion: Partial<Record<ServiceName | 'support', number | null>>
  /** Peer id → the name of the replica holding it (inventory, orders, payments, support, rogue). */
  names: Record<string, string>
  /** The honest support replica: a write to orders, refused locally. */
  refusedWrite: { code: string | null; message: string; storedOn: ServiceName[] }
  /** The honest support replica reads an order, and cannot open payments. */
  supportReadsOrder: { id: string | null; ok: boolean }
  supportPaymentsCode: string | null
  /** A tampered support client (its own checks skipped) sends an order: every service drops it. */
  forged: { id: string; droppedBy: Partial<Record<ServiceName, number>>; metric: Partial<Record<ServiceName, number>>; storedOn: ServiceName[] }
  outsiders: OutsiderResult[]
  durationMs: number
  error: string | null
}

const ADOPT_TIMEOUT_MS = 8_000
const DROP_TIMEOUT_MS = 8_000
const OUTSIDER_WAIT_MS = 2_500

/**
 * Runs after the scenario's final convergence (so nothing here bridges the partition): starts
 * the support replica, the tampered support client and two outsiders in this process, checks
 * what each may do, and closes them all.
 */
export async function runTrustChecks(
  setup: TrustSetup,
  namespace: string,
  dataRoot: string,
  services: Record<ServiceName, ServiceHandle>,
  client: HttpClient,
  acceptedOrderId: string | null,
  signal: AbortSignal,
): Promise<TrustResult> {
  const began = performance.now()
  const list = SERVICE_NAMES.map((n) => services[n])
  const peers = list.map((s) => s.multiaddrs[0]!)
  const cluster = { key: setup.key, admins: setup.admins }
  const opened: Replica[] = []
  const start = async (options: Parameters<typeof open>[0]): Promise<Replica> => {
    const r = await open({ namespace, logger: silentLogger, syncIntervalMs: 0, libp2p: { redialMinMs: 100, redialMaxMs: 400 }, peers, ...options })
    opened.push(r)
    return r
  }
  const result: TrustResult = {
    policy: setup.policy,
    policyVersion: {},
    names: Object.fromEntries(Object.entries(setup.ids).map(([name, id]) => [id, name])),
    refusedWrite: { code: null, message: '', storedOn: [] },
    supportReadsOrder: { id: acceptedOrderId, ok: false },
    supportPaymentsCode: null,
    forged: { id: `forged-${Date.now().toString(36)}`, droppedBy: {}, metric: {}, storedOn: [] },
    outsiders: [],
    durationMs: 0,
    error: null,
  }
  try {
    // Outsiders first: they dial (and are refused) while the rest runs.
    const outsiderStart = performance.now()
    const wrongKey = await start({ cluster: { key: generateClusterKey() } })
    const stranger = await start({ cluster })
    const support = await start({ dir: join(dataRoot, 'support'), cluster })
    // A tampered support client: the right key and a member's identity, but opened without the
    // admins, so it enforces no policy and sends what it writes.
    const rogue = await start({ dir: join(dataRoot, 'rogue'), cluster: { key: setup.key } })

    // Support adopts the policy at its first anti-entropy round.
    await until(
      async () => {
        if ((support.policy.get()?.version ?? 0) >= 1 && support.peers().length > 0) return true
        await support.sync().catch(() => undefined)
        return false
      },
      ADOPT_TIMEOUT_MS,
      signal,
    )
    result.policyVersion.support = support.policy.get()?.version ?? null

    // (a) An unauthorised write, refused locally: support may read orders, not write them.
    try {
      await support.collection('orders').put(`support-${result.forged.id}`, { sku: 'none', qty: 1, channel: 'web', placedBy: 'orders', at: Date.now() })
      result.refusedWrite.message = 'the write was accepted'
    } catch (err) {
      result.refusedWrite.code = isConvergentError(err) ? err.code : null
      result.refusedWrite.message = (err as Error).message
    }
    try {
      support.collection('payments')
    } catch (err) {
      result.supportPaymentsCode = isConvergentError(err) ? err.code : null
    }
    if (acceptedOrderId !== null) {
      const orders = support.collection('orders')
      await until(
        async () => {
          if ((await orders.get(acceptedOrderId)) !== undefined) return true
          await support.sync().catch(() => undefined)
          return false
        },
        ADOPT_TIMEOUT_MS,
        signal,
      ).catch(() => undefined)
      result.supportReadsOrder.ok = (await orders.get(acceptedOrderId)) !== undefined
    }

    // (a') The same write from the tampered client goes out on the wire; every receiver drops it.
    await until(async () => rogue.peers().length === list.length, ADOPT_TIMEOUT_MS, signal).catch(() => undefined)
    await sleep(300, signal) // gossip subscriptions are exchanged just after connecting
    await rogue.collection('orders').put(result.forged.id, { sku: 'none', qty: 1, channel: 'web', placedBy: 'orders', at: Date.now() })
    const droppedFromRogue = async (): Promise<Partial<Record<ServiceName, number>>> => {
      const health = await Promise.all(list.map((s) => client.getOk<HealthView>(`${s.url}/health`, signal)))
      return Object.fromEntries(list.map((s, i) => [s.name, health[i]!.forbidden[setup.ids.rogue] ?? 0]))
    }
    await until(
      async () => {
        result.forged.droppedBy = await droppedFromRogue()
        if (Object.values(result.forged.droppedBy).every((n) => n > 0)) return true
        await rogue.sync().catch(() => undefined) // anti-entropy offers it too
        return false
      },
      DROP_TIMEOUT_MS,
      signal,
    ).catch(() => undefined)
    result.forged.droppedBy = await droppedFromRogue()
    for (const s of list) {
      const series = parsePrometheusText(await getText(`${s.metricsUrl}/metrics`))
      result.forged.metric[s.name] = series.find((x) => x.name === 'convergent_deltas_dropped_total' && x.labels.reason === 'forbidden')?.value ?? 0
    }
    const storedOn = async (id: string): Promise<ServiceName[]> => {
      const found = await Promise.all(list.map((s) => client.get<OrderView>(`${s.url}/orders/${id}`, signal).then((r) => r.status === 200)))
      return list.filter((_, i) => found[i]).map((s) => s.name)
    }
    result.forged.storedOn = await storedOn(result.forged.id)
    result.refusedWrite.storedOn = await storedOn(`support-${result.forged.id}`)

    // (b) Outsiders: another key, and the right key but not in the policy. Neither connects.
    const health = async (): Promise<HealthView[]> => Promise.all(list.map((s) => client.getOk<HealthView>(`${s.url}/health`, signal)))
    const seen = { wrongKey: false, stranger: false }
    const deadline = outsiderStart + OUTSIDER_WAIT_MS
    do {
      const views = await health()
      seen.wrongKey ||= wrongKey.peers().length > 0 || views.some((v) => v.peers.includes(wrongKey.peerId))
      seen.stranger ||= stranger.peers().length > 0 || views.some((v) => v.peers.includes(stranger.peerId))
      await sleep(100, signal)
    } while (performance.now() < deadline)
    const triedMs = Math.round(performance.now() - outsiderStart)
    result.outsiders = [
      {
        name: 'outsider with another cluster key',
        why: 'its connections fail the private-network handshake',
        peerId: wrongKey.peerId,
        connected: seen.wrongKey,
        triedMs,
      },
      {
        name: 'key holder not in the policy',
        why: "the services' connection gater refuses peer ids the policy does not name",
        peerId: stranger.peerId,
        connected: seen.stranger,
        triedMs,
      },
    ]
    for (const v of await health()) result.policyVersion[v.service] = v.policyVersion
  } catch (err) {
    if (signal.aborted) throw err
    result.error = err instanceof Error ? err.message : String(err)
  } finally {
    await Promise.all(opened.map((r) => r.close().catch(() => undefined)))
    result.durationMs = Math.round(performance.now() - began)
  }
  return result
}

/** The trust checks in a few lines of narration. */
export function describeTrust(t: TrustResult): string[] {
  const svc = (m: Partial<Record<string, number>>): string =>
    Object.entries(m)
      .map(([s, n]) => `${s} ${n}`)
      .join(', ')
  const lines = [
    `support writes an order → ${t.refusedWrite.code ?? 'NOT REFUSED'} locally (stored on: ${t.refusedWrite.storedOn.join(', ') || 'no service'}); opens payments → ${t.supportPaymentsCode ?? 'NOT REFUSED'}; reads order ${t.supportReadsOrder.id ?? '—'}: ${t.supportReadsOrder.ok ? 'yes' : 'NO'}`,
    `tampered client's order ${t.forged.id} on the wire → dropped as forbidden by ${svc(t.forged.droppedBy)}; stored on: ${t.forged.storedOn.join(', ') || 'no service'}`,
  ]
  for (const o of t.outsiders) lines.push(`${o.name} dialled for ${formatMs(o.triedMs)} → ${o.connected ? 'CONNECTED' : 'never connected'} (${o.why})`)
  if (t.error) lines.push(`trust checks failed: ${t.error}`)
  return lines
}

/** Polls fn until it returns true; rejects after timeoutMs. */
async function until(fn: () => Promise<boolean>, timeoutMs: number, signal: AbortSignal): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!(await fn())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms`)
    await sleep(100, signal)
  }
}
