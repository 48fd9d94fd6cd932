import { SKUS } from '../shared/catalog.js'
import { digestOf } from '../shared/digest.js'
import type { OrderView, ServiceName, StateView, StockView } from '../shared/protocol.js'
import type { ShopReplica } from './shop-replica.js'

/** Read models served over HTTP, all computed from this service's own replica. */

export async function stockView(shop: ShopReplica, service: ServiceName, lowestSeen: number | null): Promise<StockView> {
  const skus: StockView['skus'] = {}
  for (const sku of SKUS) {
    const { value, rights } = await shop.stock.inspect(sku)
    skus[sku] = { value, rights: rights[shop.replica.peerId] ?? 0, holders: rights }
  }
  return { service, skus, lowestSeen }
}

export async function stateView(shop: ShopReplica, service: ServiceName): Promise<StateView> {
  const orders: [string, unknown][] = []
  for await (const entry of shop.orders.entries()) orders.push(entry)
  const payments: [string, unknown][] = []
  for await (const entry of shop.payments.entries()) payments.push(entry)
  const paid = new Set(payments.map(([id]) => id))
  const stock: Record<string, number> = {}
  for (const sku of SKUS) stock[sku] = await shop.stock.value(sku)
  return {
    service,
    peerId: shop.replica.peerId,
    peers: shop.replica.peers(),
    orders: { count: orders.length, digest: digestOf(orders) },
    payments: { count: payments.length, digest: digestOf(payments) },
    stock,
    unpaid: orders.filter(([id]) => !paid.has(id)).length,
  }
}

/** The order joined with its payment, product and stock — what an API gateway would aggregate. */
export async function orderView(shop: ShopReplica, service: ServiceName, id: string): Promise<OrderView | undefined> {
  const order = await shop.orders.get(id)
  if (order === undefined) return undefined
  const [payment, product, stock, customer] = await Promise.all([
    shop.payments.get(id),
    shop.products.get(order.sku),
    shop.stock.inspect(order.sku),
    order.customerId === undefined ? undefined : shop.customers.get(order.customerId),
  ])
  return {
    id,
    order,
    payment: payment ?? null,
    status: payment === undefined ? 'reserved' : 'paid',
    product: product ?? null,
    customer: customer ?? null,
    stock: { value: stock.value, rightsHere: stock.rights[shop.replica.peerId] ?? 0, holders: stock.rights },
    servedBy: service,
  }
}

export async function orderIds(shop: ShopReplica): Promise<string[]> {
  const ids: string[] = []
  for await (const id of shop.orders.keys()) ids.push(id)
  return ids
}
