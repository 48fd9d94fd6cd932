import { randomBytes } from 'node:crypto'
import { isConvergentError } from 'convergent'
import type { Channel, OrderAccepted, OrderRejected, ServiceName, Order } from '../shared/protocol.js'
import type { CustomerBook } from './customer-book.js'
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
  /** Orders being placed under an id the client chose: a second request for it waits for the first. */
  private readonly placing = new Map<string, Promise<PlaceResult>>()

  constructor(
    private readonly shop: ShopReplica,
    private readonly service: ServiceName,
    private readonly channel: Channel,
    private readonly waitMs: number,
    /** The web shop's customers (orders service): an order may name its customer. */
    private readonly customers?: CustomerBook,
  ) {}

  /**
   * Places an order. With an `id` in the body the request is idempotent: an id is placed at
   * most once, and a request for one already placed (or being placed) gets the same 201 back
   * without taking stock again — so a client may safely send an order again when it cannot
   * tell whether the first request arrived. A rejected order (409) is not stored: asking again
   * tries again. Without an id the service makes one up, and every request is a new order.
   */
  async place(input: unknown): Promise<PlaceResult> {
    const { id, sku, qty } = parseOrderInput(input)
    const customer = (input as { customer?: unknown } | null)?.customer
    if (customer !== undefined && this.customers === undefined) throw new HttpError(400, `the ${this.channel} desk takes no customer details`)
    // The customer is registered (or its address updated) at checkout, before the stock is
    // reserved: idempotent, so a repeated request registers nothing new.
    const customerId = customer === undefined ? undefined : (await this.customers!.register(customer)).id
    if (id === undefined) return this.placeNew(this.nextId(), sku, qty, customerId)
    let placing = this.placing.get(id)
    if (placing === undefined) {
      placing = this.placeOnce(id, sku, qty, customerId).finally(() => this.placing.delete(id))
      this.placing.set(id, placing)
    }
    return placing.then((result) => {
      if (result.status === 201 && (result.body.order.sku !== sku || result.body.order.qty !== qty)) {
        throw new HttpError(422, `order id '${id}' was already used for another order (${result.body.order.qty} × ${result.body.order.sku})`)
      }
      return result
    })
  }

  private async placeOnce(id: string, sku: string, qty: number, customerId: string | undefined): Promise<PlaceResult> {
    const existing = await this.shop.orders.get(id)
    if (existing === undefined) return this.placeNew(id, sku, qty, customerId)
    return { status: 201, body: { id, order: existing, stock: await this.shop.stock.value(existing.sku) } }
  }

  private async placeNew(id: string, sku: string, qty: number, customerId: string | undefined): Promise<PlaceResult> {
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
    const order: Order = { sku, qty, channel: this.channel, placedBy: this.service, at: Date.now(), ...(customerId === undefined ? {} : { customerId }) }
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

/** A client-chosen order id: short, and safe in a URL and as an entity id. */
const ORDER_ID = /^[A-Za-z0-9_-]{1,64}$/

function parseOrderInput(input: unknown): { id: string | undefined; sku: string; qty: number } {
  const body = (input ?? {}) as { id?: unknown; sku?: unknown; qty?: unknown }
  if (typeof body.sku !== 'string' || body.sku.length === 0) throw new HttpError(400, 'body needs { sku: string, qty: integer, id?: string }')
  if (body.id !== undefined && (typeof body.id !== 'string' || !ORDER_ID.test(body.id))) {
    throw new HttpError(400, 'id, if given, must be 1–64 letters, digits, _ or - (the same id places the order once)')
  }
  const qty = body.qty ?? 1
  if (typeof qty !== 'number' || !Number.isSafeInteger(qty) || qty < 1 || qty > MAX_QTY) {
    throw new HttpError(400, `qty must be an integer from 1 to ${MAX_QTY}`)
  }
  return { id: body.id, sku: body.sku, qty }
}
