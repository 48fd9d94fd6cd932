import { SKUS } from '../shared/catalog.js'
import type { HealthView, OrderView, ServiceName, StateView, StockView } from '../shared/protocol.js'
import type { ServiceHandle } from './cluster.js'
import type { HttpClient } from './http-client.js'
import type { ScenarioResult } from './scenario.js'
import { sleep, type OrderAttempt } from './workload.js'

/** Questions the driver asks the running services over HTTP. */

/** Every service sees the two others as connected peers. */
export async function meshConnected(client: HttpClient, services: ServiceHandle[]): Promise<boolean> {
  const health = await Promise.all(services.map((s) => client.getOk<HealthView>(`${s.url}/health`)))
  return health.every((v) => services.every((s) => s.peerId === v.peerId || v.peers.includes(s.peerId)))
}

/** Every service connected to the two others, enforcing the cluster policy, and holding the whole catalog and initial stock. */
export async function meshReady(client: HttpClient, services: ServiceHandle[], stockPerSku: number): Promise<boolean> {
  if (!(await meshConnected(client, services))) return false
  const health = await Promise.all(services.map((s) => client.getOk<HealthView>(`${s.url}/health`)))
  if (!health.every((v) => v.products === SKUS.length)) return false
  // The signed policy is in force everywhere before any order is taken.
  if (!health.every((v) => v.policyVersion !== null)) return false
  const states = await Promise.all(services.map((s) => client.getOk<StateView>(`${s.url}/state`)))
  return states.every((st) => SKUS.every((sku) => st.stock[sku] === stockPerSku))
}

/** Inventory alone on its side: no connection left between it and orders or payments. */
export async function partitioned(client: HttpClient, s: Record<ServiceName, ServiceHandle>): Promise<boolean> {
  const [inv, ord, pay] = await Promise.all([s.inventory, s.orders, s.payments].map((x) => client.getOk<HealthView>(`${x.url}/health`)))
  return inv!.peers.length === 0 && !ord!.peers.includes(s.inventory.peerId) && !pay!.peers.includes(s.inventory.peerId)
}

/** The rights a service holds itself, per SKU (its own count is the authoritative one). */
export async function ownRights(client: HttpClient, service: ServiceHandle): Promise<Record<string, number>> {
  const view = await client.getOk<StockView>(`${service.url}/stock`)
  return Object.fromEntries(Object.entries(view.skus).map(([sku, s]) => [sku, s.rights]))
}

/** Every acknowledged (201) order must be on every service. */
export async function checkNothingLost(client: HttpClient, services: ServiceHandle[], attempts: OrderAttempt[]): Promise<ScenarioResult['lost']> {
  const acked = attempts.filter((a) => a.outcome === 'accepted').map((a) => a.id!)
  const missing: ScenarioResult['lost']['missing'] = []
  for (const s of services) {
    const { ids } = await client.getOk<{ ids: string[] }>(`${s.url}/orders`)
    const have = new Set(ids)
    for (const id of acked) if (!have.has(id)) missing.push({ service: s.name, id })
  }
  return { checked: acked.length * services.length, missing }
}

/** A shop-counter order taken by inventory during the partition, as the orders service shows it now. */
export async function exampleOrderView(client: HttpClient, s: Record<ServiceName, ServiceHandle>, attempts: OrderAttempt[]): Promise<OrderView | null> {
  const pick =
    attempts.find((a) => a.phase === 'partition' && a.channel === 'store' && a.outcome === 'accepted') ?? attempts.find((a) => a.outcome === 'accepted')
  if (pick?.id === undefined) return null
  const res = await client.get<OrderView>(`${s.orders.url}/orders/${encodeURIComponent(pick.id)}`)
  return res.status === 200 ? res.body : null
}

/** Polls check() until true; throws after timeoutMs, naming what it waited for. */
export async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string, signal: AbortSignal): Promise<void> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    signal.throwIfAborted()
    try {
      if (await check()) return
    } catch {
      // not reachable yet
    }
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(50, signal)
  }
}
