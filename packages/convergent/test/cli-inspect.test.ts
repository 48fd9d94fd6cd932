// The CLI's read commands leave the data folder byte-for-byte as it was. Found by a review:
// LevelDB's open (classic-level has no read-only open) rewrote CURRENT, LOG, LOG.old and the
// MANIFEST and turned the write-ahead log into a table on every read command; on a damaged log
// it deleted the log, so the second read command succeeded and the service's next open
// reported no damage, with acknowledged writes silently gone; and a read command on an empty
// db/ created a new LevelDB there. Read commands now open a private snapshot (inspect.ts in
// @convergent/level). The CLI runs in a child process, as users run it.
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { open, silentLogger } from '../src/index.js'
import { cli, productsFolder } from './helpers.js'
import { folderTree, privateTmpdir } from '@convergent/core/testing'

const snapshots = async (): Promise<string[]> => (await readdir(tmpdir())).filter((n) => n.startsWith('convergent-inspect-'))

describe('convergent CLI read commands leave the folder as it was', function () {
  // Inspections of other test files running beside these (mocha --parallel) make and sweep snapshots too.
  privateTmpdir('cv-inspect-tests-')
  this.timeout(120_000)
  let dir = ''
  let before: string[] = []

  beforeEach(async function () {
    dir = await mkdtemp(join(tmpdir(), 'convergent-cli-looked-at-'))
    before = await snapshots()
  })

  afterEach(async function () {
    await rm(dir, { recursive: true, force: true })
    expect(await snapshots(), 'an inspection snapshot was left in the temp folder').to.deep.equal(before)
  })

  it('each read command once: the same names and bytes in the whole folder after it (the log not replayed)', async function () {
    await productsFolder(dir)
    const was = await folderTree(dir)
    expect(Object.keys(was).some((n) => n.startsWith('db/') && n.endsWith('.log'))).to.equal(true)
    const commands = [
      ['collections', dir],
      ['ls', dir, 'products', '--values'],
      ['get', dir, 'products', 'mug'],
      ['feed', dir, 'products'],
      ['audit', dir, 'products'],
      ['audit', dir, 'products', '--reads'],
      ['dump', dir, 'products'],
    ]
    for (const command of commands) {
      const r = await cli(...command)
      expect(r.code, `${command.join(' ')}: ${r.stderr}`).to.equal(0)
      expect(await folderTree(dir), command.join(' ')).to.deep.equal(was)
    }
  })

  it('a damaged write-ahead log: every read command fails with ERR_STORE_CORRUPT, and the service still reports the damage', async function () {
    let replica = await open({ dir, network: false, logger: silentLogger })
    const c = replica.collection('c')
    for (let i = 0; i < 300; i++) await c.put(`k${i}`, { i, text: 'x'.repeat(40) })
    await replica.close()
    const logs = (await readdir(join(dir, 'db'))).filter((n) => n.endsWith('.log'))
    expect(logs).to.have.length(1)
    const log = join(dir, 'db', logs[0]!)
    const bytes = await readFile(log)
    expect(bytes.length).to.be.greaterThan(20_000)
    bytes[10_000]! ^= 0xff
    await writeFile(log, bytes)
    const was = await folderTree(dir)

    for (const command of [
      ['collections', dir],
      ['collections', dir],
      ['ls', dir, 'c'],
      ['dump', dir, 'c'],
    ]) {
      const r = await cli(...command)
      expect(r.code, `${command.join(' ')}: ${r.stdout}`).to.equal(1)
      expect(r.stderr, command.join(' ')).to.match(/ERR_STORE_CORRUPT/)
      expect(r.stderr, command.join(' ')).to.match(/left as it is: opened for inspection/)
      expect(r.stderr, command.join(' ')).to.match(/LevelDB dropped \d+ bytes of its write-ahead log/)
      expect(r.stderr, "it names the folder's own log").to.include(log)
      expect(await folderTree(dir), command.join(' ')).to.deep.equal(was)
    }

    replica = await open({ dir, network: false, logger: silentLogger })
    try {
      const damage = replica.stats().store.damage
      expect(damage.length, 'the service still sees the damage').to.be.greaterThan(0)
      expect(damage.join(' ')).to.match(/LevelDB dropped \d+ bytes of its write-ahead log/)
    } finally {
      await replica.close()
    }
  })

  it('a db/ folder with no store in it (empty, or junk): ERR_STORE "holds no Convergent store", nothing created', async function () {
    const keyFile = join(dir, 'at-rest.key')
    await writeFile(keyFile, 'b2'.repeat(32) + '\n')
    for (const junk of [false, true]) {
      await rm(join(dir, 'db'), { recursive: true, force: true })
      await mkdir(join(dir, 'db'))
      if (junk) await writeFile(join(dir, 'db', 'notes.txt'), 'not a database\n')
      const was = await folderTree(dir)
      for (const command of [
        ['collections', dir],
        ['ls', dir, 'c'],
        ['dump', dir, 'c'],
        ['collections', dir, '--key-file', keyFile],
      ]) {
        const r = await cli(...command)
        expect(r.code, command.join(' ')).to.equal(1)
        expect(r.stderr, command.join(' ')).to.match(/ERR_STORE\b.*holds no Convergent store/)
        expect(r.stderr.trim().split('\n'), r.stderr).to.have.length(1)
        expect(await folderTree(dir), `${command.join(' ')} (junk: ${junk})`).to.deep.equal(was)
      }
    }
  })

  it('a folder in use by an open replica: the same one-line "locked" error, nothing written', async function () {
    const replica = await open({ dir, network: false, logger: silentLogger })
    try {
      await replica.collection('c').put('a', { n: 1 })
      const was = await folderTree(dir)
      for (const command of [
        ['collections', dir],
        ['dump', dir, 'c'],
      ]) {
        const r = await cli(...command)
        expect(r.code, command.join(' ')).to.equal(1)
        expect(r.stderr, command.join(' ')).to.match(/ERR_STORE\b.*is locked by another process/)
        expect(r.stderr.trim().split('\n'), r.stderr).to.have.length(1)
        expect(await folderTree(dir), command.join(' ')).to.deep.equal(was)
      }
    } finally {
      await replica.close()
    }
  })
})
