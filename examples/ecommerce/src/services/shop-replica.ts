import { join } from 'node:path'
import { createLibp2pNetwork, open, type Collection, type Counter, type Logger, type Replica } from 'convergent'
import type { Order, Payment, Product, ServiceConfig } from '../shared/protocol.js'
import type { PartitionGate } from './partition-gate.js'

export type { Counter }

/** A service's replica with the shop's shared entities opened on it. */
export interface ShopReplica {
  replica: Replica
  products: Collection<Product>
  orders: Collection<Order>
  payments: Collection<Payment>
  /** Units in stock per SKU: a bounded counter, never below 0 on any replica. */
  stock: Counter
}

/**
 * Opens the service's replica: LevelDB in its own folder, and a libp2p node built here rather
 * than by open(), because open() has no way to pass a connection gater (the partition switch).
 */
export async function openShopReplica(config: ServiceConfig, gate: PartitionGate, logger: Logger): Promise<ShopReplica> {
  const network = await createLibp2pNetwork({
    listen: config.listen,
    peers: config.peers,
    namespace: config.namespace,
    identityFile: join(config.dataDir, 'peer-id.key'),
    connectionGater: gate.gater,
    // Short backoff cap, so a healed link is redialled within half a second.
    redialMinMs: 100,
    redialMaxMs: 500,
  })
  gate.attach(network)
  const replica = await open({ dir: config.dataDir, namespace: config.namespace, network, syncIntervalMs: config.syncIntervalMs, logger })
  return {
    replica,
    products: replica.collection<Product>('products', { backend: 'yjs' }),
    orders: replica.collection<Order>('orders', { backend: 'yjs' }),
    payments: replica.collection<Payment>('payments', { backend: 'yjs' }),
    stock: replica.counter('stock', { min: 0, lowWater: config.name === 'orders' ? config.lowWater : 0 }),
  }
}
