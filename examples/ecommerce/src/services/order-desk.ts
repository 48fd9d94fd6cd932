import { randomBytes } from 'node:crypto'
import { isConvergentError } from 'convergent'
import type { Channel, OrderAccepted, OrderRejected, ServiceName, Order } from '../shared/protocol.js'
import { HttpError } from './http-server.js'
import type { ShopReplica } from './shop-replica.js'

export type PlaceResult = { status: 201; body: OrderAccepted } | { status: 409; body: OrderRejected }

const MAX_QTY = 100

/**
 * Takes orders: reserves the stock by decrementing the shared bounded counter, then writes
 * the order. The decrement only spends rights this replica holds; short of them it asks the
 * connected peers for some and waits up to waitMs — so during a partition an order is
 * accepted exactly when this side of the split still holds enough rights.
 */
export class OrderDesk {
  private seq = 0
  private readonly prefix = randomBytes(3).toString('hex')

  constructor(
    private readonly shop: ShopReplica,
    private readonly service: ServiceName,
    private readonly channel: Channel,
    private readonly waitMs: number,
  ) {}

  async place(input: unknown): Promise<PlaceResult> {
    const { sku, qty } = parseOrderInput(input)
    if ((await this.shop.products.get(sku)) === undefined) throw new HttpError(404, `unknown sku '${sku}'`)
    let stock: number
    try {
      stock = await this.shop.stock.decrement(sku, qty, { waitMs: this.waitMs })
    } catch (err) {
      if (!isConvergentError(err) || err.code !== 'ERR_INSUFFICIENT_RIGHTS') throw err
      const [value, rights] = await Promise.all([this.shop.stock.value(sku), this.shop.stock.rights(sku)])
      return {
        status: 409,
        body: { error: err.message, reason: value >= qty ? 'rights-unreachable' : 'sold-out', stock: value, rights },
      }
    }
    const id = this.nextId()
    const order: Order = { sku, qty, channel: this.channel, placedBy: this.service, at: Date.now() }
    try {
      await this.shop.orders.put(id, order)
    } catch (err) {
      // The order was not stored: give the reserved units back (the rights return to us).
      await this.shop.stock.increment(sku, qty).catch(() => undefined)
      throw err
    }
    // Acknowledged only now: the decrement and the order are both durable on disk.
    return { status: 201, body: { id, order, stock } }
  }

  /** Unique across services and restarts: channel, a random per-process prefix, a sequence. */
  private nextId(): string {
    this.seq += 1
    return `${this.channel}-${this.prefix}-${String(this.seq).padStart(5, '0')}`
  }
}

function parseOrderInput(input: unknown): { sku: string; qty: number } {
  const body = (input ?? {}) as { sku?: unknown; qty?: unknown }
  if (typeof body.sku !== 'string' || body.sku.length === 0) throw new HttpError(400, 'body needs { sku: string, qty: integer }')
  const qty = body.qty ?? 1
  if (typeof qty !== 'number' || !Number.isSafeInteger(qty) || qty < 1 || qty > MAX_QTY) {
    throw new HttpError(400, `qty must be an integer from 1 to ${MAX_QTY}`)
  }
  return { sku: body.sku, qty }
}
