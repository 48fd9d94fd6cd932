// `convergent audit` names the replica it audits from the folder's identity file. A damaged
// identity file was reported as "no identity file" (found by a new-user review): a missing file
// (a replica that never ran networked) and a damaged or unreadable one are told apart, and the
// file is named.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { folderIdentity } from '../src/folder-identity.js'
import { folderPeerId } from '../src/index.js'
import { cli, productsFolder } from './helpers.js'

describe("convergent audit: the folder's identity file", function () {
  this.timeout(60_000)
  let dir = ''
  let file = ''

  beforeEach(function () {
    dir = mkdtempSync(join(tmpdir(), 'convergent-cli-identity-'))
    file = join(dir, 'peer-id.key')
  })

  afterEach(function () {
    rmSync(dir, { recursive: true, force: true })
  })

  it('a damaged peer-id.key: audit says the file is damaged and names it, not that there is none', async function () {
    await productsFolder(dir)
    writeFileSync(file, 'not a key')
    const r = await cli('audit', dir, 'products')
    expect(r.code, r.stderr).to.equal(0)
    const header = r.stdout.split('\n')[0]!
    expect(header).to.include(`this replica is (identity file ${file} is damaged: it does not hold a libp2p private key: peer id unknown)`)
    expect(header).not.to.include('no identity file')
  })

  it('tells a missing, a damaged, an unreadable and a good identity file apart', async function () {
    expect(await folderIdentity(dir)).to.deep.equal({ peerId: undefined, why: `no identity file (${file})` })
    writeFileSync(file, new Uint8Array([8, 1, 18, 3, 1, 2, 3]))
    expect(await folderIdentity(dir)).to.deep.equal({ peerId: undefined, why: `identity file ${file} is damaged: it does not hold a libp2p private key` })
    rmSync(file)
    mkdirSync(file)
    const unreadable = await folderIdentity(dir)
    expect(unreadable.why).to.match(new RegExp(`^identity file ${file} is unreadable: EISDIR`))
    rmSync(file, { recursive: true })
    const peerId = await folderPeerId(dir)
    expect(await folderIdentity(dir)).to.deep.equal({ peerId })
  })
})
