import { isConvergentError } from 'convergent'
import type { CustomerView, HealthView, ServiceConfig } from '../shared/protocol.js'
import type { CustomerBook } from './customer-book.js'
import { HttpError, Router } from './http-server.js'
import type { OrderDesk } from './order-desk.js'
import type { PartitionGate } from './partition-gate.js'
import type { ShopReplica } from './shop-replica.js'
import type { StockWatch } from './stock-watch.js'
import { orderIds, orderView, stateView, stockView } from './views.js'

export interface RouteDeps {
  config: ServiceConfig
  shop: ShopReplica
  gate: PartitionGate
  watch: StockWatch
  /** Present on the services that take orders (orders: web shop; inventory: shop counter). */
  desk?: OrderDesk
  /** Present on the orders service, the one writer of customers. */
  customers?: CustomerBook
}

/** The HTTP API every service serves; POST /orders only where there is an order desk. */
export function buildRoutes({ config, shop, gate, watch, desk, customers }: RouteDeps): Router {
  const router = new Router()
  const service = config.name

  router.on('GET', '/health', async () => {
    let products = 0
    for await (const _ of shop.products.keys()) products++
    const body: HealthView = {
      ok: true,
      service,
      pid: process.pid,
      peerId: shop.replica.peerId,
      peers: shop.replica.peers(),
      blocked: gate.blockedPeers,
      products,
      policyVersion: shop.replica.policy.get()?.version ?? null,
      forbidden: Object.fromEntries(
        Object.entries(shop.replica.stats().peers)
          .filter(([, p]) => p.dropped.forbidden > 0)
          .map(([peer, p]) => [peer, p.dropped.forbidden]),
      ),
    }
    return { status: 200, body }
  })

  router.on('GET', '/orders', async () => ({ status: 200, body: { service, ids: await orderIds(shop) } }))

  router.on('GET', '/orders/:id', async ({ params }) => {
    const view = await orderView(shop, service, params.id!)
    if (view === undefined) throw new HttpError(404, `no order '${params.id}' on ${service} (yet)`)
    return { status: 200, body: view }
  })

  if (desk !== undefined) router.on('POST', '/orders', async (req) => desk.place(await req.json()))

  // Customers: every service reads them (the policy lets every member read `customers`).
  router.on('GET', '/customers/:id', async ({ params }) => {
    const body: CustomerView = { service, id: params.id!, customer: (await shop.customers.get(params.id!)) ?? null }
    return { status: 200, body }
  })
  if (customers !== undefined) router.on('POST', '/customers', async (req) => ({ status: 201, body: await customers.register(await req.json()) }))
  // Erasure: replica.forget() — allowed to the admin (inventory) and writers (orders); 403 elsewhere.
  router.on('POST', '/customers/:id/forget', async ({ params }) => {
    const began = performance.now()
    try {
      await shop.replica.forget(params.id!, { collections: ['customers'] })
    } catch (err) {
      if (isConvergentError(err) && err.code === 'ERR_FORBIDDEN') throw new HttpError(403, err.message, err.code)
      if (isConvergentError(err) && err.code === 'ERR_INVALID_ARGUMENT') throw new HttpError(400, err.message, err.code)
      throw err
    }
    return { status: 200, body: { service, forgotten: params.id, ms: Math.round(performance.now() - began) } }
  })

  router.on('GET', '/stock', async () => ({ status: 200, body: await stockView(shop, service, watch.lowestSeen) }))
  router.on('GET', '/state', async () => ({ status: 200, body: await stateView(shop, service) }))
  router.on('POST', '/sync', async () => ({ status: 200, body: { rounds: (await shop.replica.sync()).length } }))

  // Demo control: simulate a network partition at the libp2p connection layer.
  router.on('POST', '/admin/partition', async (req) => {
    const peers = peersOf(await req.json())
    if (peers === undefined || peers.length === 0) throw new HttpError(400, 'body needs { peers: [peerId or multiaddr, …] }')
    await gate.block(peers)
    return { status: 200, body: { blocked: gate.blockedPeers, peers: shop.replica.peers() } }
  })
  router.on('POST', '/admin/heal', async (req) => {
    gate.heal(peersOf(await req.json()))
    return { status: 200, body: { blocked: gate.blockedPeers } }
  })

  return router
}

function peersOf(body: unknown): string[] | undefined {
  const peers = (body as { peers?: unknown } | null)?.peers
  if (peers === undefined) return undefined
  if (!Array.isArray(peers) || !peers.every((p) => typeof p === 'string')) throw new HttpError(400, 'peers must be an array of strings')
  return peers
}
