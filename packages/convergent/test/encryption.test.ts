// open({ encryption }): a replica's folder holds no value in plain, and a wrong key, a missing
// key or a key for a plain folder is refused with its code and leaves every file as it was.
import { createHash, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import { cp, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { syncBuiltinESMExports } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { silentLogger } from '@convergent/core'
import { classicLevelStore, recryptStore } from '@convergent/level'
import { isConvergentError, open, type OpenOptions } from '../src/index.js'
import { runNode, tempDir } from './helpers.js'

const CLI = fileURLToPath(new URL('../../bin/convergent.js', import.meta.url))

const KEY = randomBytes(32)
const MARKER = 'marker-9d3a71-jane.doe@example.com'

async function files(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const name of await readdir(dir)) {
    const path = join(dir, name)
    if ((await stat(path)).isDirectory()) out.push(...(await files(path)))
    else out.push(path)
  }
  return out.sort()
}

async function hashFolder(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const path of await files(dir))
    out[path] = createHash('sha256')
      .update(await readFile(path))
      .digest('hex')
  return out
}

async function holding(dir: string, needle: string): Promise<string[]> {
  const found: string[] = []
  for (const path of await files(dir)) if ((await readFile(path)).includes(Buffer.from(needle))) found.push(path)
  return found
}

/**
 * `convergent encrypt` as the CLI runs it (recryptStore), cut short as a crash would between the
 * two renames of its swap: db renamed to db.convergent-old, db.convergent-new not yet renamed to
 * db (the rename throws; the modules' named imports of node:fs follow after syncBuiltinESMExports).
 */
async function encryptCutShortBetweenRenames(db: string, keyFile: string): Promise<void> {
  const renameSync = fs.renameSync
  Object.assign(fs, {
    renameSync: (from: string, to: string) => {
      if (to === db) throw new Error('crash injected')
      renameSync(from, to)
    },
  })
  syncBuiltinESMExports()
  try {
    const err = await recryptStore(db, undefined, { keyFile }).then(
      () => new Error('the run was not cut short'),
      (e: Error) => e,
    )
    if (err.message !== 'crash injected') throw err
  } finally {
    Object.assign(fs, { renameSync })
    syncBuiltinESMExports()
  }
}

async function codeOf(p: Promise<{ close(): Promise<void> }>): Promise<string> {
  try {
    await (await p).close()
  } catch (err) {
    expect(isConvergentError(err), String(err)).to.equal(true)
    expect((err as Error).message).not.to.include(KEY.toString('hex'))
    return (err as { code: string }).code
  }
  throw new Error('opened')
}

describe('open({ encryption })', function () {
  this.timeout(60_000)
  let dir = ''
  let cleanup: () => Promise<void> = async () => undefined
  beforeEach(async () => ({ dir, cleanup } = await tempDir('convergent-enc-')))
  afterEach(() => cleanup())

  async function writeCustomers(options: Partial<OpenOptions> = {}): Promise<void> {
    const replica = await open({ dir, network: false, logger: silentLogger, ...options })
    const customers = replica.collection('customers')
    for (let n = 0; n < 20; n++) await customers.put(`c${n}`, { name: `customer ${n}`, email: n === 7 ? MARKER : `c${n}@example.com` })
    await customers.update('c7', (doc: { note?: string }) => void (doc.note = `note for ${MARKER}`))
    await replica.close()
  }

  it('no file of the folder holds a value in plain (a plain folder does)', async function () {
    await writeCustomers({ encryption: { key: KEY } })
    expect(await holding(dir, MARKER)).to.deep.equal([])
    const replica = await open({ dir, network: false, logger: silentLogger, encryption: { key: KEY.toString('hex') } })
    expect(((await replica.collection('customers').get('c7')) as { email: string }).email).to.equal(MARKER)
    await replica.close()

    await cleanup()
    ;({ dir, cleanup } = await tempDir('convergent-plain-'))
    await writeCustomers()
    expect(await holding(dir, MARKER)).not.to.deep.equal([])
  })

  it('a key file; wrong key → ERR_WRONG_KEY, none → ERR_ENCRYPTED; nothing written', async function () {
    const keyFile = join(dir, '..', `${dir.split('/').pop()}.key`)
    await writeFile(keyFile, KEY.toString('hex'), { mode: 0o600 })
    await writeCustomers({ encryption: { keyFile } })
    const before = await hashFolder(dir)
    expect(await codeOf(open({ dir, network: false, logger: silentLogger, encryption: { key: randomBytes(32) } }))).to.equal('ERR_WRONG_KEY')
    expect(await hashFolder(dir)).to.deep.equal(before)
    expect(await codeOf(open({ dir, network: false, logger: silentLogger }))).to.equal('ERR_ENCRYPTED')
    expect(await hashFolder(dir)).to.deep.equal(before)
    const replica = await open({ dir, network: false, logger: silentLogger, encryption: { keyFile } })
    expect(await replica.collection('customers').get('c3')).to.deep.equal({ name: 'customer 3', email: 'c3@example.com' })
    await replica.close()
    await rm(keyFile)
  })

  it('a key for a plain folder → ERR_NOT_ENCRYPTED, nothing written; a bad key → ERR_INVALID_ARGUMENT', async function () {
    await writeCustomers()
    const before = await hashFolder(dir)
    expect(await codeOf(open({ dir, network: false, logger: silentLogger, encryption: { key: KEY } }))).to.equal('ERR_NOT_ENCRYPTED')
    expect(await hashFolder(dir)).to.deep.equal(before)
    // With the network on too: refused before open() writes its peer identity.
    expect(await codeOf(open({ dir, logger: silentLogger, encryption: { key: KEY } }))).to.equal('ERR_NOT_ENCRYPTED')
    expect(await hashFolder(dir)).to.deep.equal(before)
    expect(await codeOf(open({ dir, network: false, logger: silentLogger, encryption: { key: 'short' } }))).to.equal('ERR_INVALID_ARGUMENT')
    expect(await hashFolder(dir)).to.deep.equal(before)
  })

  it('in memory too', async function () {
    const replica = await open({ network: false, logger: silentLogger, encryption: { key: KEY } })
    await replica.collection('c').put('a', { v: 1 })
    expect(await replica.collection('c').get('a')).to.deep.equal({ v: 1 })
    await replica.close()
  })
})

describe('convergent encrypt / rekey', function () {
  this.timeout(60_000)
  let dir = ''
  let cleanup: () => Promise<void> = async () => undefined
  let keys = ''
  beforeEach(async () => {
    ;({ dir, cleanup } = await tempDir('convergent-encrypt-'))
    keys = await mkdtemp(join(tmpdir(), 'convergent-keys-'))
  })
  afterEach(async () => {
    await cleanup()
    await rm(keys, { recursive: true, force: true })
  })

  async function keyFile(name: string, key: Buffer): Promise<string> {
    const file = join(keys, name)
    await writeFile(file, key.toString('hex') + '\n', { mode: 0o600 })
    return file
  }

  /** 20 customers in a plain folder; c7's email is the marker. */
  async function writeCustomers(): Promise<void> {
    const replica = await open({ dir, network: false, logger: silentLogger })
    for (let n = 0; n < 20; n++) await replica.collection('customers').put(`c${n}`, { email: n === 7 ? MARKER : `c${n}@example.com` })
    await replica.close()
  }

  async function expectCustomers(options: Partial<OpenOptions>): Promise<void> {
    const replica = await open({ dir, network: false, logger: silentLogger, ...options })
    try {
      const ids: string[] = []
      for await (const id of replica.collection('customers').keys()) ids.push(id)
      expect(ids.length).to.equal(20)
      expect(((await replica.collection('customers').get('c7')) as { email: string }).email).to.equal(MARKER)
    } finally {
      await replica.close()
    }
  }

  it('encrypts a plain folder in place, then rotates its key; every entity kept, no value left in plain', async function () {
    await writeCustomers()
    expect(await holding(dir, MARKER)).not.to.deep.equal([])
    const first = await keyFile('first', KEY)
    const second = await keyFile('second', randomBytes(32))

    const enc = await runNode(CLI, ['encrypt', dir, '--new-key-file', first])
    expect(enc.code, enc.stderr).to.equal(0)
    expect(enc.stdout).to.match(/^encrypted \d+ records \(key id [0-9a-f]{16}\)\n$/)
    expect(await holding(dir, MARKER)).to.deep.equal([])
    expect(await readdir(dir)).to.not.include('db.convergent-old')
    await expectCustomers({ encryption: { keyFile: first } })
    expect(await codeOf(open({ dir, network: false, logger: silentLogger }))).to.equal('ERR_ENCRYPTED')
    const ls = await runNode(CLI, ['ls', dir, 'customers', '--key-file', first])
    expect(ls.code, ls.stderr).to.equal(0)
    expect(ls.stdout.split('\n').filter(Boolean)).to.have.length(20)
    // encrypt again: refused, and it says how to change the key instead.
    const again = await runNode(CLI, ['encrypt', dir, '--new-key-file', second])
    expect(again.code).to.equal(1)
    expect(again.stderr).to.match(/already encrypted at rest; nothing was written\. To change its key: npx convergent rekey/)

    const rekey = await runNode(CLI, ['rekey', dir, '--key-file', first, '--new-key-file', second])
    expect(rekey.code, rekey.stderr).to.equal(0)
    expect(await holding(dir, MARKER)).to.deep.equal([])
    await expectCustomers({ encryption: { keyFile: second } })
    expect(await codeOf(open({ dir, network: false, logger: silentLogger, encryption: { keyFile: first } }))).to.equal('ERR_WRONG_KEY')
  })

  it('decrypt is the inverse of encrypt: every entity kept, plain again, the key refused after; no key or a plain folder is refused', async function () {
    await writeCustomers()
    const first = await keyFile('first', KEY)
    expect((await runNode(CLI, ['encrypt', dir, '--new-key-file', first])).code).to.equal(0)
    expect(await holding(dir, MARKER)).to.deep.equal([])

    const noKey = await runNode(CLI, ['decrypt', dir])
    expect(noKey.code).to.not.equal(0)
    expect(noKey.stderr).to.match(/decrypt needs the current key/)
    const wrong = await runNode(CLI, ['decrypt', dir, '--key-file', await keyFile('other', randomBytes(32))])
    expect(wrong.code).to.not.equal(0)
    expect(wrong.stderr).to.match(/encrypted with another key/)
    expect(await holding(dir, MARKER)).to.deep.equal([])

    const dec = await runNode(CLI, ['--key-file', first, 'decrypt', dir])
    expect(dec.code, dec.stderr).to.equal(0)
    expect(dec.stdout).to.match(/^decrypted \d+ records\n$/)
    expect(await readdir(join(dir, 'db'))).to.not.include('convergent-encryption')
    expect((await readdir(dir)).filter((name) => name.startsWith('db'))).to.deep.equal(['db'])
    expect(await holding(dir, MARKER)).not.to.deep.equal([])
    await expectCustomers({})
    expect(await codeOf(open({ dir, network: false, logger: silentLogger, encryption: { keyFile: first } }))).to.equal('ERR_NOT_ENCRYPTED')
    const again = await runNode(CLI, ['decrypt', dir, '--key-file', first])
    expect(again.code).to.not.equal(0)
    expect(again.stderr).to.match(/is stored in plain already: nothing to decrypt, nothing was written/)
    await expectCustomers({})
  })

  it('encrypt with --key-file (a current key, which a plain folder has none of) is refused and writes nothing, rather than ignored', async function () {
    await writeCustomers()
    const first = await keyFile('first', KEY)
    const wrongFlag = await runNode(CLI, ['encrypt', dir, '--key-file', first, '--new-key-file', first])
    expect(wrongFlag.code).to.equal(1)
    expect(wrongFlag.stderr).to.match(/encrypt takes the key to encrypt with as --new-key-file, not --key-file/)
    expect(await holding(dir, MARKER)).not.to.deep.equal([])
    await expectCustomers({})
  })

  it('an interrupted swap: open() refuses (ERR_STORE) instead of starting empty; running the command again finishes it', async function () {
    await writeCustomers()
    const first = await keyFile('first', KEY)
    // The crash comes between the two renames: the old folder aside, the new one not yet in place.
    await encryptCutShortBetweenRenames(join(dir, 'db'), first)
    expect(await readdir(dir)).to.include.members(['db.convergent-old', 'db.convergent-new'])
    expect(await codeOf(open({ dir, network: false, logger: silentLogger, encryption: { keyFile: first } }))).to.equal('ERR_STORE')
    expect(await readdir(dir)).to.not.include('db')
    // The store itself refuses too (it would create an empty store where the data is to go) …
    expect(() => classicLevelStore(join(dir, 'db'), { encryption: { keyFile: first } })).to.throw(/interrupted/)
    expect(await readdir(dir)).to.not.include('db')
    // … and finishing it with another key than the one it used is refused, nothing moved.
    const other = await runNode(CLI, ['encrypt', dir, '--new-key-file', await keyFile('other', randomBytes(32))])
    expect(other.code).to.not.equal(0)
    expect(other.stderr).to.match(/waiting to be finished with the key it used/)
    expect(await readdir(dir)).to.include.members(['db.convergent-old', 'db.convergent-new'])
    const again = await runNode(CLI, ['encrypt', dir, '--new-key-file', first])
    expect(again.code, again.stderr).to.equal(0)
    expect(again.stdout).to.equal('finished an interrupted run\n')
    expect((await readdir(dir)).filter((name) => name.startsWith('db'))).to.deep.equal(['db'])
    await expectCustomers({ encryption: { keyFile: first } })
  })

  // An interrupted swap, then one of its two folders lost (deleted by hand): open() saw no db and
  // no interrupted swap and created an empty db, and the next encrypt then deleted the other
  // folder, the only copy of the data, as a leftover of its own.
  it('one folder of an interrupted swap lost: open() and the CLI refuse to create a store, naming the folder that holds the data; renaming it back opens', async function () {
    await writeCustomers()
    const first = await keyFile('first', KEY)
    const db = join(dir, 'db')
    await encryptCutShortBetweenRenames(db, first)
    for (const [kept, lost, keyOptions] of [
      ['.convergent-old', '.convergent-new', {}],
      ['.convergent-new', '.convergent-old', { encryption: { keyFile: first } }],
    ] as const) {
      const aside = join(keys, 'aside')
      await rename(db + lost, aside)
      const before = await readdir(dir)
      const says = `${db} is missing, and ${db}${kept} is there`
      // With the network on: refused before open() writes its peer identity.
      const err = await open({ dir, logger: silentLogger, ...keyOptions }).then(
        async (r) => {
          await r.close()
          return undefined
        },
        (e: unknown) => e,
      )
      expect(isConvergentError(err, 'ERR_STORE'), `open() refuses with ERR_STORE, got ${String(err)}`).to.equal(true)
      expect((err as Error).message)
        .to.include(says)
        .and.include(`Rename it to ${db}`)
      const keyArgs = kept === '.convergent-new' ? ['--key-file', first] : []
      const collections = await runNode(CLI, ['collections', dir, ...keyArgs])
      expect([collections.code, collections.stderr]).to.deep.equal([1, `convergent: ERR_STORE: ${(err as Error).message}\n`])
      const encrypt = await runNode(CLI, ['encrypt', dir, '--new-key-file', first])
      expect(encrypt.code).to.equal(1)
      expect(encrypt.stderr).to.include(says)
      expect(await readdir(dir), 'nothing created').to.deep.equal(before)
      await rename(aside, db + lost)
    }
    await rm(db + '.convergent-old', { recursive: true })
    await rename(db + '.convergent-new', db)
    await expectCustomers({ encryption: { keyFile: first } })
  })

  it('a db created again beside an interrupted swap: nothing is deleted, the command says what to do', async function () {
    const replica = await open({ dir, network: false, logger: silentLogger })
    await replica.collection('customers').put('c1', { email: MARKER })
    await replica.close()
    const first = await keyFile('first', KEY)
    await cp(join(dir, 'db'), join(dir, 'db.convergent-old'), { recursive: true })
    await cp(join(dir, 'db'), join(dir, 'db.convergent-new'), { recursive: true })
    const run = await runNode(CLI, ['encrypt', dir, '--new-key-file', first])
    expect(run.code).to.not.equal(0)
    expect(run.stderr).to.match(/all exist/)
    expect((await readdir(dir)).filter((name) => name.startsWith('db'))).to.have.members(['db', 'db.convergent-old', 'db.convergent-new'])
  })
})
