import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { open } from '../src/index.js'
import { runNode } from './helpers.js'

// Through the bin shim npm links, so the command users run is the one tested.
const CLI = fileURLToPath(new URL('../../bin/convergent.js', import.meta.url))

const cli = (...args: string[]) => runNode(CLI, args)

describe('convergent CLI', function () {
  this.timeout(60_000)
  let dir = ''

  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'convergent-cli-'))
    const replica = await open({ dir, network: false })
    const products = replica.collection('products')
    await products.put('mug', { name: 'Mug', price: 12 })
    await products.put('cup', { name: 'Cup', price: 8 })
    await products.update('mug', (p) => void (p.price = 10))
    await products.delete('cup')
    await replica.collection('orders', { backend: 'automerge' }).put('o1', { sku: 'mug', qty: 2 })
    await replica.close()
  })

  after(function () {
    rmSync(dir, { recursive: true, force: true })
  })

  it('lists collections with their backend and live entity count', async function () {
    const r = await cli('collections', dir)
    expect(r.code, r.stderr).to.equal(0)
    expect(r.stdout).to.equal('orders\tautomerge\t1 entity\nproducts\tyjs\t1 entity\n')
  })

  it('lists ids, values, one entity, and the change feed with origins', async function () {
    expect((await cli('ls', dir, 'products')).stdout).to.equal('mug\n')
    expect((await cli('ls', dir, 'products', '--values')).stdout).to.equal('["mug",{"name":"Mug","price":10}]\n')
    expect(JSON.parse((await cli('get', dir, 'orders', 'o1')).stdout)).to.deep.equal({ sku: 'mug', qty: 2 })
    const feed = (await cli('feed', dir, 'products')).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number; id: string; kind: string; origin: string })
    expect(feed.map((e) => [e.seq, e.id, e.kind, e.origin])).to.deep.equal([
      [1, 'mug', 'put', 'local'],
      [2, 'cup', 'put', 'local'],
      [3, 'mug', 'put', 'local'],
      [4, 'cup', 'delete', 'local'],
    ])
    const since = (await cli('feed', dir, 'products', '--since', '3')).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number; id: string; kind: string })
    expect(since.map((e) => [e.seq, e.id, e.kind])).to.deep.equal([[4, 'cup', 'delete']])
  })

  it('fails with one clear line: no data, unknown collection, missing entity, store in use', async function () {
    const empty = mkdtempSync(join(tmpdir(), 'convergent-cli-empty-'))
    try {
      const none = await cli('collections', empty)
      expect(none.code).to.equal(1)
      expect(none.stderr).to.match(/holds no Convergent data/)
    } finally {
      rmSync(empty, { recursive: true, force: true })
    }
    const unknown = await cli('ls', dir, 'nope')
    expect(unknown.code).to.equal(1)
    expect(unknown.stderr).to.match(/no collection 'nope'; this replica has: orders, products|no collection 'nope'; this replica has: products, orders/)
    const missing = await cli('get', dir, 'products', 'cup')
    expect(missing.code).to.equal(1)
    expect(missing.stderr).to.match(/no entity 'cup'/)

    const running = await open({ dir, network: false })
    try {
      const locked = await cli('collections', dir)
      expect(locked.code).to.equal(1)
      expect(locked.stderr).to.match(/locked/)
      expect(locked.stderr.trim().split('\n')).to.have.length(1)
    } finally {
      await running.close()
    }
  })

  it('drops a collection: gone from the folder, and refused from peers when the service opens again', async function () {
    const scratch = mkdtempSync(join(tmpdir(), 'convergent-cli-drop-'))
    try {
      const replica = await open({ dir: scratch, network: false })
      await replica.collection('junk').put('k', { v: 1 })
      await replica.collection('keep').put('k', { v: 1 })
      await replica.close()
      const r = await cli('drop', scratch, 'junk')
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout).to.equal("dropped 'junk'\n")
      expect((await cli('collections', scratch)).stdout).to.equal('keep\tyjs\t1 entity\n')
      expect((await cli('drop', scratch, 'nothing')).stderr).to.match(/no collection 'nothing'/)
    } finally {
      rmSync(scratch, { recursive: true, force: true })
    }
  })

  it('cluster-key prints a new key each time: 64 hex characters that open({ cluster: { key } }) takes', async function () {
    const [first, second] = await Promise.all([cli('cluster-key'), cli('cluster-key')])
    for (const r of [first, second]) {
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout).to.match(/^[0-9a-f]{64}\n$/)
    }
    expect(first.stdout).not.to.equal(second.stdout)
    const replica = await open({ network: false, cluster: { key: first.stdout } })
    await replica.close()
  })
})
