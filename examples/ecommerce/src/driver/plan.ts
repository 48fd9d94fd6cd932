import { SKUS } from '../shared/catalog.js'
import type { ServiceHandle } from './cluster.js'
import { seededRandom } from './random.js'
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
 * taken by inventory, on the other side of the split.
 */
export function planOrders(total: number, seed: number, services: { orders: ServiceHandle; inventory: ServiceHandle }): ScenarioPlan {
  const random = seededRandom(seed)
  const nNormal = Math.round(total * PHASE_SHARES.normal)
  const nPartition = Math.round(total * PHASE_SHARES.partition)
  const nHealed = Math.max(0, total - nNormal - nPartition)
  const make = (store: boolean): PlannedOrder => ({
    channel: store ? 'store' : 'web',
    target: store ? 'inventory' : 'orders',
    url: store ? services.inventory.url : services.orders.url,
    sku: SKUS[Math.floor(random() * SKUS.length)]!,
    qty: 1 + Math.floor(random() * 3),
  })
  return {
    normal: Array.from({ length: nNormal }, () => make(false)),
    partition: Array.from({ length: nPartition }, (_, i) => make(i % 2 === 1)),
    healed: Array.from({ length: nHealed }, () => make(false)),
  }
}
