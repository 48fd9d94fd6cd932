// The CLI's read commands on a data folder whose db (the LevelDB folder) is a file, and on a
// path that is a file: an error naming the path and saying it is not a folder (found by a
// new-user review: it was the ENOTDIR of the first file opened in it).
import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect } from 'chai'
import { cli, folderEachTest } from './helpers.js'

describe('convergent CLI on a path that is not a folder', function () {
  this.timeout(60_000)
  const folder = folderEachTest('convergent-cli-not-a-folder-')

  it("the folder's db is a file: collections, get and audit fail with ERR_STORE naming it, and write nothing", async function () {
    const dir = folder()
    writeFileSync(join(dir, 'db'), 'not a database')
    for (const args of [
      ['collections', dir],
      ['get', dir, 'products', 'mug'],
      ['audit', dir, 'products'],
    ]) {
      const r = await cli(...args)
      expect(r.code, args[0]).to.equal(1)
      expect(r.stderr, args[0]).to.include(`ERR_STORE: ${join(dir, 'db')} is a file, not a folder`)
    }
    expect(readdirSync(dir)).to.deep.equal(['db'])
  })

  it('the data folder given is a file: says so', async function () {
    const dir = folder()
    const file = join(dir, 'data.json')
    writeFileSync(file, '{}')
    const r = await cli('collections', file)
    expect(r.code).to.equal(1)
    expect(r.stderr).to.include(`${file} is a file, not a data folder`)
  })
})
