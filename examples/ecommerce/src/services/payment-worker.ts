import type { Logger } from 'convergent'
import type { Order } from '../shared/protocol.js'
import type { ShopReplica } from './shop-replica.js'

/**
 * The payments service's job: every order that appears — written here or arriving from a
 * peer, live or after a partition heals — gets exactly one payment entry, keyed by the order
 * id (so paying twice, even from two processes, writes the same entity and merges).
 */
export class PaymentWorker {
  private readonly inFlight = new Map<string, Promise<void>>()
  private unsubscribe: (() => void) | undefined
  private stopped = false

  constructor(
    private readonly shop: ShopReplica,
    private readonly logger: Logger,
  ) {}

  /** Subscribes first, then pays what was already stored (e.g. before a restart). */
  async start(): Promise<void> {
    this.unsubscribe = this.shop.orders.subscribe((e) => {
      if (e.value !== undefined) this.pay(e.id, e.value)
    })
    for await (const [id, order] of this.shop.orders.entries()) this.pay(id, order)
  }

  /** Unsubscribes and waits for payments being written. */
  async stop(): Promise<void> {
    this.stopped = true
    this.unsubscribe?.()
    await Promise.allSettled([...this.inFlight.values()])
  }

  private pay(id: string, order: Order): void {
    if (this.stopped || this.inFlight.has(id)) return
    const job = this.write(id, order)
      .catch((err) => {
        if (!this.stopped) this.logger.error(`paying order ${id} failed`, { err })
      })
      .finally(() => this.inFlight.delete(id))
    this.inFlight.set(id, job)
  }

  private async write(id: string, order: Order): Promise<void> {
    if (await this.shop.payments.has(id)) return
    const product = await this.shop.products.get(order.sku)
    const amount = (product?.price ?? 0) * order.qty
    await this.shop.payments.put(id, { orderId: id, amount, paidAt: Date.now() })
  }
}
