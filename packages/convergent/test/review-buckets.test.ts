// Review of the CLI's inspect mode (a read command never changes a damaged folder and fails with
// ERR_STORE_CORRUPT): what the store does when it opens, before any record is read.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import { expect } from 'chai'
import { LoopbackHub, Replica } from '@convergent/core'
import { storedSubjectKeys } from '@convergent/core/internal'
import { yjsBackend } from '@convergent/yjs'
import { writesRawEnvelopes } from '@convergent/core/testing'
import { classicLevelStore } from '@convergent/level'
import { open, silentLogger } from '../src/index.js'
import { cli, folderRecords } from './helpers.js'
import { PERSONAL, personalSuite, type Customer } from './personal-helpers.js'

/** Writes a drop marker of `collection` as an interrupted drop leaves it (damaged: its last byte flipped). */
async function dropMarker(dir: string, collection: string, damaged: boolean): Promise<void> {
  const store = classicLevelStore(join(dir, 'db'))
  await store.open()
  const internals = store as unknown as {
    prefixes: { store: string }
    sealer: { sealCopy(key: string, body: Uint8Array): Uint8Array }
    writeOps(ops: object[]): Promise<void>
  }
  const key = internals.prefixes.store + 'drop\u0000' + collection
  const value = internals.sealer.sealCopy(key, new TextEncoder().encode(JSON.stringify({ time: 1 })))
  if (damaged) value[value.byteLength - 1]! ^= 1
  await internals.writeOps([{ type: 'put', key, value }])
  await store.close()
}

describe('review: CLI inspect mode, what the store does at open', function () {
  this.timeout(60_000)
  let dir = ''

  beforeEach(async function () {
    dir = mkdtempSync(join(tmpdir(), 'convergent-review-inspect-'))
    const replica = await open({ dir, network: false, logger: silentLogger })
    const products = replica.collection('products')
    await products.put('mug', { name: 'Mug', price: 12 })
    await products.put('cup', { name: 'Cup', price: 8 })
    await replica.collection('orders').put('o1', { total: 20 })
    await replica.close()
  })

  afterEach(function () {
    rmSync(dir, { recursive: true, force: true })
  })

  for (const read of [['collections'], ['dump', 'orders']]) {
    it(`HOLE: ${read[0]} on a folder whose LevelDB lost acknowledged batches exits 0 and rewrites the mark, so the service never reports the loss`, async function () {
      const mark = join(dir, 'db', 'convergent-acked')
      const bytes = readFileSync(mark)
      const view = new DataView(bytes.buffer, bytes.byteOffset, 12)
      view.setFloat64(0, view.getFloat64(0) + 5) // 5 acknowledged batches LevelDB did not recover
      view.setUint32(8, crc32(bytes.subarray(0, 8)))
      writeFileSync(mark, bytes)
      const r = await cli(read[0]!, dir, ...read.slice(1))
      expect(readFileSync(mark).equals(bytes), 'the acknowledged-batch mark is left as it was').to.equal(true)
      expect(r.code, r.stdout).to.equal(1)
      expect(r.stderr).to.match(/ERR_STORE_CORRUPT/)
    })

    it(`HOLE: ${read[0]} on a folder with a damaged drop marker moves it into the quarantine keyspace and exits 0`, async function () {
      await dropMarker(dir, 'products', true)
      const before = await folderRecords(dir)
      const r = await cli(read[0]!, dir, ...read.slice(1))
      expect(await folderRecords(dir), 'no record moved aside').to.deep.equal(before)
      expect(r.code, r.stdout).to.equal(1)
      expect(r.stderr).to.match(/ERR_STORE_CORRUPT/)
    })

    it(`HOLE: ${read[0]} on a folder with an interrupted drop finishes the drop (deletes the collection)`, async function () {
      await dropMarker(dir, 'products', false)
      const before = await folderRecords(dir)
      const r = await cli(read[0]!, dir, ...read.slice(1))
      expect(r.code, r.stderr).to.equal(0)
      expect(await folderRecords(dir), 'records deleted by a read command').to.deep.equal(before)
    })
  }
})

describe('review: the reserved envelope form', function () {
  this.timeout(60_000)
  const { start } = personalSuite('convergent-review-reserved-')

  // An earlier release let the application write any string into a personal field: sealed, a
  // string of the envelope form is the plain value of a genuine envelope. This release's draft
  // opens it to that string, and seal() took it for an application-given envelope.
  for (const backend of ['yjs', 'automerge'] as const) {
    it(`HOLE (${backend}): update() of another field of an entity whose personal field holds, sealed, a string of the envelope form is refused`, async function () {
      const node = await start(new LoopbackHub(), `reserved-${backend}`)
      const fake = `$sealed1.${'A'.repeat(22)}.${'B'.repeat(60)}`
      const earlier = writesRawEnvelopes(node.replica).collection<Customer>('customers', { personal: PERSONAL, backend })
      await earlier.put('c1', { customerId: 'cust-1', name: 'Ada', email: fake }) // as an earlier release wrote it
      ;(node.replica as unknown as { services: { reserveSealedForm?: boolean } }).services.reserveSealedForm = true // this release
      const customers = node.replica.collection<Customer>('customers', { personal: PERSONAL })
      expect((await customers.get('c1'))?.email, 'sealed: the plain value is the string').to.equal(fake)
      const updated = await customers.update('c1', (c) => void (c.name = 'Ada L.')).catch((e: { code?: string }) => e.code)
      expect(updated, 'update() of the name').to.deep.equal({ customerId: 'cust-1', name: 'Ada L.', email: fake })
      const value = (await customers.get('c1'))!
      const again = await customers.put('c1', { ...value, name: 'Ada M.' }).catch((e: { code?: string }) => e.code)
      expect(again, 'get() + put() with the email unchanged').to.equal(undefined)
      const other = `$sealed1.${'C'.repeat(22)}.${'D'.repeat(60)}`
      const changed = await customers.update('c1', (c) => void (c.email = other)).catch((e: { code?: string }) => e.code)
      expect(changed, 'another string of the form is still refused').to.equal('ERR_INVALID_VALUE')
    })
  }
})

describe('review: CLI inspect mode, what the replica does at open', function () {
  this.timeout(60_000)
  let dir = ''

  beforeEach(async function () {
    dir = mkdtempSync(join(tmpdir(), 'convergent-review-inspect-'))
  })

  afterEach(function () {
    rmSync(dir, { recursive: true, force: true })
  })

  /** A folder where cust-0 was forgotten; `crash`: as a crash in forget() leaves it (its key record back, or the compaction pending). */
  async function forgotten(crash: 'key' | 'compaction'): Promise<void> {
    const store = classicLevelStore(join(dir, 'db'))
    const replica = await Replica.open({ store, backends: [yjsBackend()], logger: silentLogger })
    await replica.collection<Customer>('customers', { personal: PERSONAL }).put('c0', { customerId: 'cust-0', email: 'ada@example.com' })
    const [id] = [...(await storedSubjectKeys(store)).keys()]
    const record = (await store.getMeta(`personal/k/${id}`))!
    await replica.forget('cust-0')
    await replica.close()
    const again = classicLevelStore(join(dir, 'db'))
    await again.open()
    await again.write([
      crash === 'key'
        ? { type: 'meta', key: `personal/k/${id}`, bytes: record }
        : { type: 'meta', key: 'personal/compact-pending', bytes: new Uint8Array([1]) },
    ])
    await again.close()
  }

  for (const crash of ['key', 'compaction'] as const) {
    it(`HOLE: a read on a folder where forget() was interrupted (${crash === 'key' ? 'a key record of the forgotten subject left' : 'its compaction pending'}) finishes it`, async function () {
      await forgotten(crash)
      const before = await folderRecords(dir)
      const r = await cli('ls', dir, 'customers', '--values')
      expect(r.stdout, 'the forgotten field does not open').not.to.include('ada@example.com')
      expect(await folderRecords(dir), 'nothing written by a read command').to.deep.equal(before)
    })
  }
})
