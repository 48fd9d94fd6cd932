// Review 3 of personal fields (after 51d3198: seal over stored envelopes, hasHeldKeysOf).
// Each test names a hole; each failed on 51d3198 and passes since Collection.seal was rewritten.
import { randomBytes } from 'node:crypto'
import { expect } from 'chai'
import { LoopbackHub, type PersonalOptions } from '@convergent/core'
import { folderBytes, waitFor } from './helpers.js'
import { giveKeys, PERSONAL, personalSuite, takeKeys, type Customer } from './personal-helpers.js'

const EMAIL_ONLY: PersonalOptions<Customer> = { subject: (c) => c.customerId, fields: ['email'] }

describe('Personal fields, review 3 (seal over stored envelopes, hasHeldKeysOf)', function () {
  this.timeout(60_000)
  const { folder, start, close } = personalSuite('convergent-prev3-')

  // HOLE (high, privacy): put() calls seal() only when the handle declares personal fields or
  // the replica has held a key of the collection (hasHeldKeysOf). On a replica that holds NO key
  // of the collection yet (a fresh member the keys have not reached, or one restarted after
  // forget() deleted them), a handle without the declaration writes a CHANGED personal field
  // over its envelope IN PLAIN — the very write the README says is sealed again or refused
  // (ERR_INVALID_VALUE), and which IS refused on the same replica once it holds any other key of
  // the collection. The plain email replicates everywhere and forget() cannot shred it.
  it('HOLE put() through a handle without the declaration, on a replica holding no key of the collection, does not write over an envelope in plain', async function () {
    const hub = new LoopbackHub()
    const dir = await folder()
    let node = await start(hub, 'p3-a', dir)
    await node.replica.collection<Customer>('customers', { personal: PERSONAL }).put('c1', { customerId: 'cust-1', name: 'Ada', email: 'ada@example.com' })
    await close(node)
    await takeKeys(dir)
    node = await start(hub, 'p3-a', dir)
    const marker = `mkr-${randomBytes(8).toString('hex')}`
    const plainHandle = node.replica.collection<Customer>('customers') // a service without the declaration
    let refused = false
    await plainHandle.put('c1', { customerId: 'cust-1', name: 'Ada', email: `${marker}@example.com` }).catch(() => (refused = true))
    await close(node)
    if (!refused) expect((await folderBytes(dir)).includes(marker), 'the changed email is in the folder in plain').to.equal(false)
  })

  // The same after forget(): before a restart the write is refused, after it (no key record is
  // left, so hasHeldKeysOf is false) the email of the forgotten subject goes in in plain.
  it('HOLE put() through a handle without the declaration after forget() and a restart does not write over the dead envelope in plain', async function () {
    const hub = new LoopbackHub()
    const dir = await folder()
    let node = await start(hub, 'p3-a', dir)
    const declared = node.replica.collection<Customer>('customers', { personal: PERSONAL })
    await declared.put('c1', { customerId: 'cust-1', name: 'Ada', email: 'ada@example.com' })
    await node.replica.forget('cust-1')
    const marker = `mkr-${randomBytes(8).toString('hex')}`
    await close(node)
    node = await start(hub, 'p3-a', dir)
    let refused = false
    await node.replica
      .collection<Customer>('customers')
      .put('c1', { customerId: 'cust-1', name: 'Ada', email: `${marker}@example.com` })
      .catch(() => (refused = true))
    await close(node)
    if (!refused) expect((await folderBytes(dir)).includes(marker), "the forgotten subject's email is in the folder in plain").to.equal(false)
  })

  // HOLE (high, privacy): update() on a replica without the key refuses to change personal
  // fields, but not to change the SUBJECT. The hidden email is kept under the former subject's
  // key while the entity now belongs to cust-B: once the key arrives, forget('cust-B') leaves
  // B's email readable (and forget('cust-A') would destroy it) — the subject-change rule the
  // last commit added, bypassed on every replica the key has not reached.
  it('HOLE update() that changes the subject on a replica without the key does not leave hidden fields under the former subject', async function () {
    const hub = new LoopbackHub()
    const dir = await folder()
    let node = await start(hub, 'p3-a', dir)
    await node.replica.collection<Customer>('customers', { personal: PERSONAL }).put('c1', { customerId: 'cust-A', name: 'Ada', email: 'ada@example.com' })
    await close(node)
    const keys = await takeKeys(dir)
    node = await start(hub, 'p3-a', dir)
    let refused = false
    await node.replica
      .collection<Customer>('customers', { personal: PERSONAL })
      .update('c1', (c) => {
        c.customerId = 'cust-B' // reassigned: the email is now B's
      })
      .catch(() => (refused = true))
    await close(node)
    await giveKeys(dir, keys) // the key arrives
    node = await start(hub, 'p3-a', dir)
    const customers = node.replica.collection<Customer>('customers', { personal: PERSONAL })
    if (!refused) {
      expect((await customers.get('c1'))?.customerId).to.equal('cust-B')
      await node.replica.forget('cust-B')
      expect(await customers.get('c1'), "B forgotten: B's email is gone").to.deep.equal({ customerId: 'cust-B', name: 'Ada' })
    }
  })

  // HOLE (medium, availability): a declared field still stored in plain (written before it was
  // declared, or by a handle without the declaration) is "to seal" on every write; on a replica
  // without the key of the entity's other (hidden) fields, that makes update() refuse writes
  // that touch only non-personal fields — "Other fields can", says the error.
  it('HOLE update() of a non-personal field is not refused on a replica without the key because another declared field is still plain', async function () {
    const hub = new LoopbackHub()
    const dir = await folder()
    let node = await start(hub, 'p3-a', dir)
    // Written while only the email was declared: the address is plain.
    await node.replica
      .collection<Customer>('customers', { personal: EMAIL_ONLY })
      .put('c1', { customerId: 'cust-1', name: 'Ada', email: 'ada@example.com', address: '1 Main St' })
    await close(node)
    await takeKeys(dir)
    node = await start(hub, 'p3-a', dir)
    const customers = node.replica.collection<Customer>('customers', { personal: PERSONAL }) // the new release declares the address too
    const after = await customers.update('c1', (c) => {
      c.name = 'Ada L.'
    })
    expect(after.name).to.equal('Ada L.')
  })

  // HOLE (low, availability): after forget('cust-A') the dead envelope stays (update() keeps it:
  // its key is "not held", and a draft delete does not reach it). Reassigning the entity and
  // setting a personal field is then refused for ever with "their key has not arrived" — the key
  // never will. Only a whole put() gets past it.
  it('HOLE update() reassigning an entity whose former subject was forgotten is not refused for ever', async function () {
    const hub = new LoopbackHub()
    const dir = await folder()
    const node = await start(hub, 'p3-a', dir)
    const customers = node.replica.collection<Customer>('customers', { personal: PERSONAL })
    await customers.put('c1', { customerId: 'cust-A', name: 'Desk 7', email: 'a@example.com' })
    await node.replica.forget('cust-A')
    const after = await customers.update('c1', (c) => {
      c.customerId = 'cust-B'
      c.address = '7 Desk Row'
    })
    expect(after).to.deep.equal({ customerId: 'cust-B', name: 'Desk 7', address: '7 Desk Row' })
  })
  // HOLE (medium, privacy): "when the subject changes, unchanged personal fields are sealed again
  // under B's key" holds only for a handle with the declaration. A service without it (the case
  // the last commit covers for changed values) reassigns the entity and the email stays under
  // A's key: forget('cust-B') leaves B's email readable on every replica.
  it('HOLE a subject change through a handle without the declaration does not leave personal fields under the former subject', async function () {
    const hub = new LoopbackHub()
    const a = await start(hub, 'p3-a', await folder())
    const b = await start(hub, 'p3-b', await folder())
    const ca = a.replica.collection<Customer>('customers', { personal: PERSONAL })
    await ca.put('c1', { customerId: 'cust-A', name: 'Ada', email: 'ada@example.com' })
    await a.replica.sync()
    await b.replica.sync()
    const cb = b.replica.collection<Customer>('customers') // a service without the declaration
    await waitFor(async () => (await cb.get('c1'))?.email === 'ada@example.com', 'b opens the email')
    let refused = false
    await cb
      .update('c1', (c) => {
        c.customerId = 'cust-B'
      })
      .catch(() => (refused = true))
    if (refused) return // refusing (the subject is unknown to this handle) would be a fix too
    await b.replica.sync()
    await a.replica.sync()
    await waitFor(async () => (await ca.get('c1'))?.customerId === 'cust-B', 'a gets the reassignment')
    await a.replica.forget('cust-B')
    expect(await ca.get('c1'), "B forgotten: B's email is gone").to.deep.equal({ customerId: 'cust-B', name: 'Ada' })
  })

  // Found by the model test (personal-model.test.ts): update()'s draft IS the stored value when no
  // field is sealed, so a personal field set by fn looked "stored plain and unchanged" to seal(),
  // which leaves such fields plain under a forgotten subject: the new email went in in plain.
  it('HOLE update() setting a personal field of a forgotten subject on an entity with no sealed field fails with ERR_FORGOTTEN and writes nothing', async function () {
    const hub = new LoopbackHub()
    const dir = await folder()
    const node = await start(hub, 'p3-a', dir)
    const customers = node.replica.collection<Customer>('customers', { personal: PERSONAL })
    await customers.update('c1', (c) => void (c.name = 'Ada'), { upsert: true })
    await node.replica.forget('cust-1')
    const marker = `mkr-${randomBytes(8).toString('hex')}`
    const err = await customers
      .update('c1', (c) => {
        c.customerId = 'cust-1'
        c.email = `${marker}@example.com`
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      )
    expect((err as { code?: string } | undefined)?.code).to.equal('ERR_FORGOTTEN')
    expect(await customers.get('c1')).to.deep.equal({ name: 'Ada' })
    await close(node)
    expect((await folderBytes(dir)).includes(marker), 'the email is in the folder in plain').to.equal(false)
  })

  // Found by a new-user walkthrough: the README said strings of the envelope form are reserved in
  // top-level fields, but one given by the application was stored, and read back as a sealed
  // field (absent) — in a declared collection and in one without the declaration alike.
  it('HOLE a string of the envelope form given by the application is refused (ERR_INVALID_VALUE) and nothing is written', async function () {
    const hub = new LoopbackHub()
    const node = await start(hub, 'p3-a')
    const fake = `$sealed1.${'A'.repeat(22)}.~${'B'.repeat(60)}`
    for (const customers of [node.replica.collection<Customer>('customers', { personal: PERSONAL }), node.replica.collection<Customer>('leads')]) {
      const code = await customers.put('c1', { customerId: 'cust-1', name: fake }).then(
        () => undefined,
        (e: { code?: string }) => e.code,
      )
      expect(code, customers.name).to.equal('ERR_INVALID_VALUE')
      expect(await customers.get('c1'), customers.name).to.equal(undefined)
      await customers.put('c1', { customerId: 'cust-1', name: 'Ada', email: 'ada@example.com' })
      const refused = await customers
        .update('c1', (c) => void (c.name = fake))
        .then(
          () => undefined,
          (e: { code?: string }) => e.code,
        )
      expect(refused, customers.name).to.equal('ERR_INVALID_VALUE')
      // Nested, it is an ordinary string.
      await customers.update('c1', (c) => void ((c as unknown as Record<string, unknown>).notes = { text: fake }))
      expect(((await customers.get('c1')) as unknown as Record<string, unknown>).notes, customers.name).to.deep.equal({ text: fake })
    }
    // The personal collection's own envelopes are kept by update() as before.
    const customers = node.replica.collection<Customer>('customers', { personal: PERSONAL })
    expect((await customers.update('c1', (c) => void (c.name = 'Ada L.'))).email).to.equal('ada@example.com')
  })
})
