import { join } from 'node:path'
import { createLibp2pNetwork, open, type Collection, type Counter, type Logger, type Replica } from 'convergent'
import { PERSONAL_FIELDS } from '../shared/customers.js'
import type { Customer, Order, Payment, Product, ServiceConfig } from '../shared/protocol.js'
import type { PartitionGate } from './partition-gate.js'

export type { Counter }

/** A service's replica with the shop's shared entities opened on it. */
export interface ShopReplica {
  replica: Replica
  products: Collection<Product>
  orders: Collection<Order>
  payments: Collection<Payment>
  /** Customers, with email and address sealed per customer (forgotten with replica.forget(customerId)). */
  customers: Collection<Customer>
  /** Units in stock per SKU: a bounded counter, never below 0 on any replica. */
  stock: Counter
}

/**
 * Opens the service's replica: LevelDB in its own folder, and a libp2p node built here rather
 * than by open(), because the partition gate needs the node to close connections. The node is
 * keyed with the cluster key from the environment (a private network: nothing without the key
 * connects), and open({ cluster: { admins } }) enforces the policy the admins sign.
 */
export async function openShopReplica(config: ServiceConfig, gate: PartitionGate, logger: Logger): Promise<ShopReplica> {
  const clusterKey = process.env.CONVERGENT_CLUSTER_KEY
  if (clusterKey === undefined) throw new Error('CONVERGENT_CLUSTER_KEY is not set: the demo runs every service with the cluster key')
  const network = await createLibp2pNetwork({
    clusterKey,
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
  const replica = await open({
    dir: config.dataDir,
    namespace: config.namespace,
    network,
    cluster: { admins: config.admins },
    syncIntervalMs: config.syncIntervalMs,
    // Every service of this cluster runs this release: personal fields take the faster cipher.
    personalCipher: 'xchacha20-poly1305',
    logger,
  })
  // The admin signs the policy once; every replica verifies it before enforcing it.
  if (config.policy !== undefined && replica.policy.get() === undefined) await replica.policy.set(config.policy)
  return {
    replica,
    products: replica.collection<Product>('products', { backend: 'yjs' }),
    orders: replica.collection<Order>('orders', { backend: 'yjs' }),
    payments: replica.collection<Payment>('payments', { backend: 'yjs' }),
    customers: openCustomers(replica),
    stock: replica.counter('stock', { min: 0, lowWater: config.name === 'orders' ? config.lowWater : 0 }),
  }
}

/** The customers collection, opened the same way on every service (and in tests). */
export function openCustomers(replica: Replica): Collection<Customer> {
  return replica.collection<Customer>('customers', { backend: 'yjs', personal: { subject: (c) => c.customerId, fields: [...PERSONAL_FIELDS] } })
}
