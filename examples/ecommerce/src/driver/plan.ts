import { SKUS } from '../shared/catalog.js'
import type { ServiceHandle } from './cluster.js'
import { seededRandom } from './random.js'
import type { CustomerInput } from '../shared/protocol.js'
import type { PhaseName, PlannedOrder } from './workload.js'

export interface ScenarioPlan {
  normal: PlannedOrder[]
  partition: PlannedOrder[]
  healed: PlannedOrder[]
}

/** Share of the orders in each phase: normal traffic, during the partition, after the heal. */
export const PHASE_SHARES: Record<PhaseName, number> = { normal: 0.4, partition: 0.4, healed: 0.2 }

/**
 * The scripted workload, the same for a given seed: random SKUs, 1–3 units each. Web orders
 * go to the orders service; during the partition every other order is a shop-counter order
 * taken by inventory, on the other side of the split. Web orders carry a customer, in turn; the
 * first customer (the one the demo forgets after the heal) orders only before the forget.
 */
export function planOrders(
  total: number,
  seed: number,
  services: { orders: ServiceHandle; inventory: ServiceHandle },
  customers: readonly CustomerInput[] = [],
): ScenarioPlan {
  const random = seededRandom(seed)
  const nNormal = Math.round(total * PHASE_SHARES.normal)
  const nPartition = Math.round(total * PHASE_SHARES.partition)
  const nHealed = Math.max(0, total - nNormal - nPartition)
  const make = (store: boolean, customer: CustomerInput | undefined): PlannedOrder => ({
    channel: store ? 'store' : 'web',
    target: store ? 'inventory' : 'orders',
    url: store ? services.inventory.url : services.orders.url,
    sku: SKUS[Math.floor(random() * SKUS.length)]!,
    qty: 1 + Math.floor(random() * 3),
    ...(store || customer === undefined ? {} : { customer: { email: customer.email, address: customer.address } }),
  })
  const n = customers.length
  let web = 0
  const before = (): CustomerInput | undefined => (n === 0 ? undefined : customers[web++ % n])
  const after = (): CustomerInput | undefined => (n < 2 ? undefined : customers[1 + (web++ % (n - 1))])
  return {
    normal: Array.from({ length: nNormal }, () => make(false, before())),
    partition: Array.from({ length: nPartition }, (_, i) => (i % 2 === 1 ? make(true, undefined) : make(false, before()))),
    healed: Array.from({ length: nHealed }, () => make(false, after())),
  }
}
