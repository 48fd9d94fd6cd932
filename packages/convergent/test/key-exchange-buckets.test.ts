// The key exchange sends what differs, bucket by bucket (personal/share-digest.ts): after one
// new subject among thousands, a round sends that subject's bucket (a dozen keys), not the
// whole key set again; and two replicas still end with the same keys both ways.
import { expect } from 'chai'
import { LoopbackHub } from '@convergent/core'
import { waitFor } from './helpers.js'
import { PERSONAL, personalSuite, type Customer } from './personal-helpers.js'

interface Paging {
  page(...args: unknown[]): { keys: unknown[]; tombstones: unknown[] }
}

describe('key exchange: one new subject among thousands', function () {
  this.timeout(120_000)
  const { start } = personalSuite('convergent-kbuckets-')

  it('a round after one new subject among 3,000 sends that subject’s bucket, not every key; both sides end with every key', async function () {
    const hub = new LoopbackHub()
    const a = await start(hub, 'a-writer')
    const b = await start(hub, 'b-reader')
    const customers = a.replica.collection<Customer>('customers', { personal: PERSONAL })
    for (let i = 0; i < 3000; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, j) => customers.put(`c${i + j}`, { customerId: `cust-${i + j}`, email: `c${i + j}@example.com` })))
    }
    const readerView = b.replica.collection<Customer>('customers', { personal: PERSONAL })
    await waitFor(async () => {
      await b.replica.sync()
      return (await readerView.get('c2999'))?.email === 'c2999@example.com'
    }, 'the reader holds the 3,000 keys')
    // Count what the writer's pages carry from now on (it answers the reader's key requests).
    const personal = (a.replica as unknown as { personal: Paging }).personal
    const page = personal.page.bind(personal)
    let sent = 0
    personal.page = (...args: unknown[]) => {
      const p = page(...args)
      sent += p.keys.length + p.tombstones.length
      return p
    }
    await b.replica.sync()
    expect(sent, 'records sent by a round in sync').to.equal(0)
    await customers.put('new', { customerId: 'cust-new', email: 'new@example.com' })
    await waitFor(async () => {
      await b.replica.sync()
      return (await readerView.get('new'))?.email === 'new@example.com'
    }, 'the reader holds the new key')
    // 3,000 keys over 256 buckets: ~12 per bucket. Before buckets, any difference sent all 3,000.
    expect(sent, 'records sent for one new subject').to.be.within(1, 60)
    // And the other way: a key only the reader holds (it wrote a subject the writer lacks) reaches the writer.
    await readerView.put('from-b', { customerId: 'cust-b', email: 'b@example.com' })
    await waitFor(async () => {
      await b.replica.sync()
      return (await customers.get('from-b'))?.email === 'b@example.com'
    }, 'the writer holds the key the reader made')
  })
})
