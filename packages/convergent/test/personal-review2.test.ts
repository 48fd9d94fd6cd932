// Review 2 of personal fields (after 6b05806: keepHidden, restructured Collection.seal).
// Each test names a hole; each failed on 8be4cd0 and passes since the fixes in Collection.seal.
import { createHash, randomBytes } from 'node:crypto'
import { expect } from 'chai'
import { LoopbackHub, type PersonalOptions } from '@convergent/core'
import { folderBytes, waitFor } from './helpers.js'
import { giveKeys, PERSONAL, personalSuite, takeKeys, type Customer } from './personal-helpers.js'

describe('Personal fields, review 2 (keepHidden, restructured seal)', function () {
  this.timeout(60_000)
  const { folder, start, close } = personalSuite('convergent-prev2-')

  // HOLE (high, privacy): the read path opens EVERY sealed top-level field (declared or not), but
  // the write path seals only the fields the handle declares. A service whose handle of the
  // collection has no `personal` declaration (or an older field list) gets opened personal
  // fields in update()'s draft and writes them back IN PLAIN: the plain email enters the CRDT,
  // replicates to every member, sits in every folder, and forget() can no longer shred it.
  it('HOLE update() through a handle without the personal declaration does not write opened personal fields back in plain', async function () {
    const hub = new LoopbackHub()
    const a = await start(hub, 'p-a')
    const b = await start(hub, 'p-b')
    const marker = `mkr-${randomBytes(8).toString('hex')}`
    const ca = a.replica.collection<Customer>('customers', { personal: PERSONAL })
    await ca.put('c1', { customerId: 'cust-1', name: 'Ada', email: `${marker}@example.com` })
    await a.replica.sync()
    // A second service: same collection, no personal declaration (it only renames customers).
    const cb = b.replica.collection<Customer>('customers')
    await waitFor(async () => (await cb.get('c1'))?.email === `${marker}@example.com`, 'b opens the email')
    // Fixed by refusing: a replica that has not declared the personal fields may not write the entity.
    let refused: unknown
    await cb
      .update('c1', (c) => {
        c.name = 'Ada L.'
      })
      .catch((err: unknown) => (refused = err))
    expect((refused as { code?: string } | undefined)?.code, 'the write is refused').to.equal('ERR_INVALID_VALUE')
    await b.replica.sync()
    await a.replica.forget('cust-1')
    // forget() must leave the email unreadable everywhere, and no folder may hold it in plain.
    expect((await ca.get('c1'))?.email, 'the email after forget()').to.equal(undefined)
    for (const n of [a, b]) await close(n)
    for (const n of [a, b]) expect((await folderBytes(n.dir)).includes(marker), `${n.dir} holds the email in plain`).to.equal(false)
  })

  // HOLE (high, privacy + data loss): a field whose plain value did not change keeps its
  // envelope — even when the subject changed. After an entity is reassigned (customerId A -> B)
  // its unchanged email stays sealed under A's key: forget('B') leaves B's email readable on
  // every replica, and forget('A') destroys the email of an entity that now belongs to B.
  it('HOLE forget() of the new subject shreds personal fields an update left unchanged while changing the subject', async function () {
    const hub = new LoopbackHub()
    const a = await start(hub, 'p-a')
    const ca = a.replica.collection<Customer>('customers', { personal: PERSONAL })
    await ca.put('c1', { customerId: 'cust-A', name: 'Ada', email: 'ada@example.com' })
    await ca.update('c1', (c) => {
      c.customerId = 'cust-B' // the record is reassigned; the email is now B's
    })
    await a.replica.forget('cust-B')
    expect(await ca.get('c1'), 'B forgotten: its personal fields are gone').to.deep.equal({ customerId: 'cust-B', name: 'Ada' })
  })

  it('HOLE forget() of the former subject does not destroy personal fields of an entity now belonging to another subject', async function () {
    const hub = new LoopbackHub()
    const a = await start(hub, 'p-a')
    const ca = a.replica.collection<Customer>('customers', { personal: PERSONAL })
    await ca.put('c1', { customerId: 'cust-A', name: 'Ada', email: 'shared-desk@example.com' })
    await ca.put('c1', { customerId: 'cust-B', name: 'Bob', email: 'shared-desk@example.com' }) // a whole new value, B's
    await a.replica.forget('cust-A')
    expect(await ca.get('c1'), 'B was not forgotten').to.deep.equal({ customerId: 'cust-B', name: 'Bob', email: 'shared-desk@example.com' })
  })

  // HOLE (medium, privacy): update() on a replica without the subject key passes keepHidden's
  // value — with the raw `$sealed1.` envelopes of the fields it could not open — to
  // personal.subject(). A subject derived from a personal field (a keyed pseudonym of the
  // email, as the README's demo derives ids) is then computed from ciphertext: the other
  // fields are sealed under a key of a made-up subject, which forget() of the real one misses.
  it('HOLE update() on a replica without the key does not compute the subject from a sealed envelope', async function () {
    const pseudo = (email: string | undefined): string => 'p-' + createHash('sha256').update(String(email)).digest('hex').slice(0, 16)
    const BY_EMAIL: PersonalOptions<Customer> = { subject: (c) => pseudo(c.email), fields: ['email', 'address'] }
    const hub = new LoopbackHub()
    const dir = await folder()
    let node = await start(hub, 'p-solo', dir)
    await node.replica.collection<Customer>('customers', { personal: BY_EMAIL }).put('c1', { customerId: 'c1', name: 'Ada', email: 'ada@example.com' })
    await close(node)
    const keys = await takeKeys(dir) // as on a replica the key has not reached yet
    node = await start(hub, 'p-solo', dir)
    let customers = node.replica.collection<Customer>('customers', { personal: BY_EMAIL })
    // (Refusing the write, since the subject cannot be known here, would be a fix too.)
    await customers
      .update('c1', (c) => {
        c.address = '1 Main St'
      })
      .catch(() => undefined)
    await close(node)
    await giveKeys(dir, keys) // the key arrives; the customer asks to be forgotten
    node = await start(hub, 'p-solo', dir)
    customers = node.replica.collection<Customer>('customers', { personal: BY_EMAIL })
    expect((await customers.get('c1'))?.email).to.equal('ada@example.com')
    await node.replica.forget(pseudo('ada@example.com'))
    expect(await customers.get('c1'), "the customer's address after forget()").to.deep.equal({ customerId: 'c1', name: 'Ada' })
  })
})
