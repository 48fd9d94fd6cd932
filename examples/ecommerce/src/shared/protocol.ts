/**
 * What the demo driver and the three services say to each other: the config a service is
 * started with, the message it sends when ready, and the JSON its HTTP API returns.
 */

export type ServiceName = 'inventory' | 'orders' | 'payments'
export const SERVICE_NAMES: readonly ServiceName[] = ['inventory', 'orders', 'payments']

export interface ServiceConfig {
  name: ServiceName
  /** This service's own folder: its LevelDB and its libp2p key (database per service). */
  dataDir: string
  /** Keeps this demo's cluster apart from any other Convergent cluster on the machine. */
  namespace: string
  /** libp2p listen addresses (default: a free port on 127.0.0.1). */
  listen: string[]
  /** Multiaddrs (with /p2p/<id>) of the services to connect to. */
  peers: string[]
  /** HTTP port on 127.0.0.1; 0 picks a free one (reported in the ready message). */
  httpPort: number
  /** Port on 127.0.0.1 of the replica's /metrics, /healthz, /readyz and /status; 0 picks a free one. */
  metricsPort: number
  /** Inventory only: the stock it creates per SKU on first start. */
  stockPerSku: number
  /** How long a decrement short of rights waits for a peer to grant some (ms). */
  waitMs: number
  /** Below this many rights per SKU, a service asks peers for more in the background. */
  lowWater: number
  /** Mean interval of periodic anti-entropy rounds (ms). */
  syncIntervalMs: number
  /**
   * Peer ids whose signatures set the cluster policy (open({ cluster: { admins } })). The
   * cluster key itself comes in the environment (CONVERGENT_CLUSTER_KEY), not in argv.
   */
  admins: string[]
  /** The admin only (inventory): the policy it signs on its first start. */
  policy?: PolicyDoc
}

/** The cluster policy the admin signs: roles → peer ids, and who may read and write each collection. */
export interface PolicyDoc {
  roles: Record<string, string[]>
  collections: Record<string, { read: string[]; write: string[]; counter?: boolean; backend?: string }>
}

/** Sent once over the IPC channel when the service serves HTTP and its replica is open. */
export interface ReadyMessage {
  type: 'ready'
  name: ServiceName
  pid: number
  peerId: string
  multiaddrs: string[]
  url: string
  /** Base URL of the replica's /metrics, /healthz, /readyz and /status (convergent's serve()). */
  metricsUrl: string
}

/** Where an order came in: the web shop (orders service) or the shop counter (inventory). */
export type Channel = 'web' | 'store'

export interface Product {
  name: string
  price: number
}

export interface Order {
  sku: string
  qty: number
  channel: Channel
  /** Web orders: the customer (a keyed pseudonym of the email; see shared/customers.ts). Shop-counter orders have none. */
  customerId?: string
  /** The service that reserved the stock and wrote the order. */
  placedBy: ServiceName
  /** Wall-clock time of acceptance (ms since epoch); informational only. */
  at: number
}

/**
 * A customer, written by the orders service (the web shop). `email` and `address` are personal
 * fields, sealed per customer (subject = customerId) before they enter the CRDT: absent from what
 * get() returns once the customer was forgotten, or on a replica that does not hold the key.
 */
export interface Customer {
  customerId: string
  email?: string
  address?: string
  /** When the customer first ordered (ms since epoch); not personal. */
  since: number
}

/** What a web order (or POST /customers) carries about its customer. */
export interface CustomerInput {
  email: string
  address: string
}

/** GET /customers/:id — the customer as this service's get() returns it. */
export interface CustomerView {
  service: ServiceName
  id: string
  customer: Customer | null
}

export interface Payment {
  orderId: string
  amount: number
  paidAt: number
}

/** Why an order was refused (HTTP 409). */
export type RejectReason =
  /** Stock exists, but the rights to it are held by replicas this one cannot reach now. */
  | 'rights-unreachable'
  /** No stock left, as far as this replica knows. */
  | 'sold-out'

export interface OrderAccepted {
  id: string
  order: Order
  stock: number
}

export interface OrderRejected {
  error: string
  reason: RejectReason
  /** The stock value as the rejecting replica sees it, and the rights it holds. */
  stock: number
  rights: number
}

/** GET /stock: the stock counter as this replica sees it. */
export interface StockView {
  service: ServiceName
  skus: Record<string, { value: number; rights: number; holders: Record<string, number> }>
  /** The lowest value any SKU had at any change this replica applied since it started. */
  lowestSeen: number | null
}

/** GET /state: a fingerprint of everything replicated, to compare services cheaply. */
export interface StateView {
  service: ServiceName
  peerId: string
  peers: string[]
  orders: { count: number; digest: string }
  payments: { count: number; digest: string }
  stock: Record<string, number>
  /** Orders this replica holds without a payment yet. */
  unpaid: number
}

/** GET /health */
export interface HealthView {
  ok: boolean
  service: ServiceName
  pid: number
  peerId: string
  peers: string[]
  blocked: string[]
  products: number
  /** The version of the cluster policy this replica enforces (null: none yet). */
  policyVersion: number | null
  /** Deltas dropped per sending peer because the policy does not let that peer write them. */
  forbidden: Record<string, number>
}

/** GET /orders/:id — the order joined with its payment and its SKU's stock (a gateway's view). */
export interface OrderView {
  id: string
  order: Order
  payment: Payment | null
  status: 'reserved' | 'paid'
  product: Product | null
  /** The order's customer as this service reads it (null: a shop-counter order, or not here yet). */
  customer: Customer | null
  stock: { value: number; rightsHere: number; holders: Record<string, number> }
  servedBy: ServiceName
}
