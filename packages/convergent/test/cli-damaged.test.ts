// The CLI looks into a folder without repairing it: a damaged record fails the command with
// ERR_STORE_CORRUPT naming it, and the folder stays as it was — the record is not moved aside
// and the entity not dropped (found by a new-user walkthrough: `get` reported "no entity",
// exit 1, and had quarantined the record and deleted the entity; `audit` skipped a damaged feed
// record and said nothing).
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { classicLevelStore } from '@convergent/level'
import { cli, folderRecords, productsFolder } from './helpers.js'

interface RawLevel {
  keys(o: object): { all(): Promise<string[]> }
  get(k: string, o: object): Promise<Uint8Array>
  put(k: string, v: Uint8Array, o: object): Promise<void>
}

/** Flips the last byte of the first record whose key starts with `prefix` (behind the store's back); returns its key. */
async function flip(dir: string, prefix: string, pick: (keys: string[]) => string = (keys) => keys[0]!): Promise<string> {
  const raw = classicLevelStore(join(dir, 'db'))
  await raw.open()
  try {
    const level = raw.db as unknown as RawLevel
    const key = pick(await level.keys({ gte: prefix, lt: prefix + '\uffff' }).all())
    const damaged = new Uint8Array(await level.get(key, { valueEncoding: 'view' }))
    damaged[damaged.byteLength - 1]! ^= 1
    await level.put(key, damaged, { valueEncoding: 'view' })
    return key
  } finally {
    await raw.close()
  }
}

describe('convergent CLI on a damaged folder', function () {
  this.timeout(60_000)
  let dir = ''

  beforeEach(async function () {
    dir = mkdtempSync(join(tmpdir(), 'convergent-cli-damaged-'))
    await productsFolder(dir)
  })

  afterEach(function () {
    rmSync(dir, { recursive: true, force: true })
  })

  it('get of an entity with a damaged record fails with ERR_STORE_CORRUPT naming it, and moves nothing', async function () {
    await flip(dir, '!deltas!products\u0000mug')
    const before = await folderRecords(dir)
    const r = await cli('get', dir, 'products', 'mug')
    expect(r.code).to.equal(1)
    expect(r.stderr).to.match(/ERR_STORE_CORRUPT/)
    expect(r.stderr).to.include('mug')
    expect(await folderRecords(dir), 'no record moved aside, no entity dropped, nothing rewritten').to.deep.equal(before)
    const listed = await cli('collections', dir)
    expect(listed.stdout).to.include('2 entities')
  })

  it('audit and feed stop at a damaged change-feed record (ERR_STORE_CORRUPT), and leave it where it is', async function () {
    await flip(dir, '!feed!products', (keys) => keys[0]!) // not the last page: the replica opens past it
    const before = await folderRecords(dir)
    for (const command of ['audit', 'feed']) {
      const r = await cli(command, dir, 'products')
      expect(r.code, `${command}: ${r.stdout}`).to.equal(1)
      expect(r.stderr, command).to.match(/ERR_STORE_CORRUPT/)
    }
    expect(await folderRecords(dir)).to.deep.equal(before)
  })

  it('drop still moves a damaged record aside and drops the collection (it changes the folder anyway)', async function () {
    await flip(dir, '!deltas!products\u0000mug')
    const r = await cli('drop', dir, 'products')
    expect(r.code, r.stderr).to.equal(0)
    expect((await cli('collections', dir)).stdout).not.to.include('products')
  })
})
