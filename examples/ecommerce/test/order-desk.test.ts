import { expect } from 'chai'
import { open, silentLogger, type Replica } from 'convergent'
import { OrderDesk, type PlaceResult } from '../src/services/order-desk.js'
import { seedInventory } from '../src/services/seed.js'
import type { ShopReplica } from '../src/services/shop-replica.js'
import { SKUS } from '../src/shared/catalog.js'
import type { Order, Payment, Product } from '../src/shared/protocol.js'

const SKU = SKUS[0]!

/** The rejection a handler throws (an HttpError), as its status. */
async function statusOf(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p
    return undefined
  } catch (err) {
    return (err as { status?: number }).status
  }
}

describe('order desk: an order id places the order at most once', function () {
  this.timeout(20_000)
  let replica: Replica
  let shop: ShopReplica
  let desk: OrderDesk

  beforeEach(async function () {
    replica = await open({ network: false, logger: silentLogger })
    shop = {
      replica,
      products: replica.collection<Product>('products', { backend: 'yjs' }),
      orders: replica.collection<Order>('orders', { backend: 'yjs' }),
      payments: replica.collection<Payment>('payments', { backend: 'yjs' }),
      stock: replica.counter('stock', { min: 0 }),
    }
    await seedInventory(shop, 10)
    desk = new OrderDesk(shop, 'orders', 'web', 0)
  })

  afterEach(async function () {
    await replica.close()
  })

  const accepted = (r: PlaceResult) => {
    expect(r.status).to.equal(201)
    return r.body as { id: string; order: Order; stock: number }
  }

  it('the same request twice, one after the other or at once, is one order and takes stock once', async function () {
    const first = accepted(await desk.place({ id: 'web-test-00001', sku: SKU, qty: 2 }))
    expect(first.id).to.equal('web-test-00001')
    expect(first.stock).to.equal(8)
    const again = accepted(await desk.place({ id: 'web-test-00001', sku: SKU, qty: 2 }))
    expect(again).to.deep.equal(first)

    const [x, y] = (await Promise.all([desk.place({ id: 'web-test-00002', sku: SKU, qty: 1 }), desk.place({ id: 'web-test-00002', sku: SKU, qty: 1 })])).map(
      accepted,
    )
    expect(x).to.deep.equal(y)
    expect(await shop.stock.value(SKU)).to.equal(7)
    let orders = 0
    for await (const _ of shop.orders.keys()) orders++
    expect(orders).to.equal(2)
  })

  it('an id already used for another order is refused (422); a bad id 400; no id is a new order each time', async function () {
    accepted(await desk.place({ id: 'web-test-00003', sku: SKU, qty: 1 }))
    expect(await statusOf(desk.place({ id: 'web-test-00003', sku: SKU, qty: 3 }))).to.equal(422)
    expect(await statusOf(desk.place({ id: 'has spaces', sku: SKU, qty: 1 }))).to.equal(400)
    expect(await statusOf(desk.place({ id: 42, sku: SKU, qty: 1 }))).to.equal(400)
    const a = accepted(await desk.place({ sku: SKU, qty: 1 }))
    const b = accepted(await desk.place({ sku: SKU, qty: 1 }))
    expect(a.id).to.not.equal(b.id)
    expect(await shop.stock.value(SKU)).to.equal(7)
  })
})
