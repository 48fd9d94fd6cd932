import { expect } from 'chai'
import { open, silentLogger, type Replica } from 'convergent'
import { CustomerBook } from '../src/services/customer-book.js'
import { OrderDesk, type PlaceResult } from '../src/services/order-desk.js'
import { customerIdOf } from '../src/shared/customers.js'
import { seedInventory } from '../src/services/seed.js'
import { openCustomers, type ShopReplica } from '../src/services/shop-replica.js'
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
      customers: openCustomers(replica),
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

  it('a web order names its customer by a keyed pseudonym of the email; a forgotten customer cannot order again (410)', async function () {
    const key = 'ab'.repeat(32)
    const web = new OrderDesk(shop, 'orders', 'web', 0, new CustomerBook(shop, key))
    const customer = { email: ' Ada@Example.com', address: '1 Lovelace Row' }
    const first = accepted(await web.place({ id: 'web-test-00010', sku: SKU, qty: 1, customer }))
    const id = customerIdOf(key, 'ada@example.com')
    expect(first.order.customerId).to.equal(id)
    expect(await shop.customers.get(id)).to.deep.include({ customerId: id, email: 'ada@example.com', address: '1 Lovelace Row' })
    accepted(await web.place({ id: 'web-test-00011', sku: SKU, qty: 1, customer: { ...customer, address: '2 Lovelace Row' } }))
    expect((await shop.customers.get(id))?.address).to.equal('2 Lovelace Row')
    expect(await statusOf(web.place({ id: 'web-test-00012', sku: SKU, qty: 1, customer: { email: 'no-at-sign', address: 'x' } }))).to.equal(400)
    // The shop counter takes no customer details.
    expect(await statusOf(desk.place({ id: 'web-test-00013', sku: SKU, qty: 1, customer }))).to.equal(400)

    await replica.forget(id)
    const left = await shop.customers.get(id)
    expect(left).to.have.property('customerId', id)
    expect(left).to.not.have.property('email')
    expect(left).to.not.have.property('address')
    const stock = await shop.stock.value(SKU)
    expect(await statusOf(web.place({ id: 'web-test-00014', sku: SKU, qty: 1, customer }))).to.equal(410)
    expect(await shop.stock.value(SKU)).to.equal(stock)
    // Its orders stay, naming the id.
    expect((await shop.orders.get('web-test-00010'))?.customerId).to.equal(id)
  })
})
