import type { Channel, CustomerInput, OrderAccepted, OrderRejected, RejectReason, ServiceName } from '../shared/protocol.js'
import type { HttpClient } from './http-client.js'

export type PhaseName = 'normal' | 'partition' | 'healed'

/** One order the driver tried to place, and what came of it. */
export interface OrderAttempt {
  seq: number
  phase: PhaseName
  channel: Channel
  target: ServiceName
  sku: string
  qty: number
  /** 'accepted' = HTTP 201: acknowledged, so it must never be lost. */
  outcome: 'accepted' | 'rejected' | 'error'
  id?: string
  /** Web orders: the customer id the orders service derived from the email (a keyed pseudonym). */
  customerId?: string
  reason?: RejectReason
  /** Stock after the decrement (accepted) or as the rejecting replica saw it. */
  stock?: number
  error?: string
  at: number
  ms: number
}

export interface PlannedOrder {
  channel: Channel
  target: ServiceName
  url: string
  sku: string
  qty: number
  /** Web orders: the customer's details, sent with the order. */
  customer?: CustomerInput
}

export interface RunOptions {
  client: HttpClient
  phase: PhaseName
  orders: PlannedOrder[]
  /** Orders in flight at once. */
  concurrency: number
  /** Orders started per second at most (0 = as fast as they complete). */
  ratePerSec: number
  firstSeq: number
  /**
   * Order ids are `<channel>-<idPrefix>-<seq>`, chosen here rather than by the service: an
   * order request is then safe to send again (the service places an id at most once), so the
   * client can retry one whose connection was found closed.
   */
  idPrefix: string
  signal: AbortSignal
  /** Milliseconds since the scenario began (timestamps in the report). */
  now: () => number
  onAttempt(a: OrderAttempt): void
}

/** Places the planned orders over HTTP, paced and with bounded concurrency. */
export async function runOrders(options: RunOptions): Promise<OrderAttempt[]> {
  const { orders, client, signal } = options
  const attempts: OrderAttempt[] = []
  const intervalMs = options.ratePerSec > 0 ? 1000 / options.ratePerSec : 0
  const began = options.now()
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < orders.length && !signal.aborted) {
      const index = next++
      const due = began + index * intervalMs
      const wait = due - options.now()
      if (wait > 0) await sleep(wait, signal)
      if (signal.aborted) return
      const attempt = await placeOne(client, orders[index]!, options.phase, options.firstSeq + index, options.idPrefix, options.now, signal)
      attempts.push(attempt)
      options.onAttempt(attempt)
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, lane))
  return attempts.sort((a, b) => a.seq - b.seq)
}

async function placeOne(
  client: HttpClient,
  o: PlannedOrder,
  phase: PhaseName,
  seq: number,
  idPrefix: string,
  now: () => number,
  signal: AbortSignal,
): Promise<OrderAttempt> {
  const at = now()
  const base = { seq, phase, channel: o.channel, target: o.target, sku: o.sku, qty: o.qty, at }
  const id = `${o.channel}-${idPrefix}-${String(seq).padStart(5, '0')}`
  try {
    const res = await client.post<OrderAccepted | OrderRejected | { error: string }>(
      `${o.url}/orders`,
      { id, sku: o.sku, qty: o.qty, ...(o.customer ? { customer: o.customer } : {}) },
      { signal, idempotent: true },
    )
    const ms = now() - at
    if (res.status === 201) {
      const body = res.body as OrderAccepted
      return { ...base, outcome: 'accepted', id: body.id, stock: body.stock, ms, ...(body.order.customerId ? { customerId: body.order.customerId } : {}) }
    }
    if (res.status === 409) {
      const body = res.body as OrderRejected
      return { ...base, outcome: 'rejected', reason: body.reason, stock: body.stock, ms }
    }
    return { ...base, outcome: 'error', error: `HTTP ${res.status}: ${(res.body as { error?: string })?.error ?? ''}`, ms }
  } catch (err) {
    return { ...base, outcome: 'error', error: (err as Error).message, ms: now() - at }
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const timer = setTimeout(done, ms)
    function done(): void {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}
