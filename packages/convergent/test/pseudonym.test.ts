// pseudonym(): a stable keyed pseudonym (HMAC-SHA256) for a natural key, and its CLI.
import { createHmac, createSecretKey, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { silentLogger } from '@convergent/core'
import { isConvergentError, open, pseudonym, PSEUDONYM_LENGTH } from '../src/index.js'
import { runNode } from './helpers.js'

const CLI = fileURLToPath(new URL('../../bin/convergent.js', import.meta.url))
const KEY = randomBytes(32)
const EMAIL = 'jane.doe@example.com'

function codeOf(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    expect(isConvergentError(err), String(err)).to.equal(true)
    return (err as { code: string }).code
  }
  throw new Error('did not throw')
}

describe('pseudonym()', function () {
  it('is 26 base32 characters: the first 128 bits of HMAC-SHA256 over label, length-prefixed namespace and natural key', function () {
    const p = pseudonym(KEY, EMAIL, { namespace: 'customers' })
    expect(PSEUDONYM_LENGTH).to.equal(26)
    expect(p).to.match(/^[a-z2-7]{26}$/)
    // Computed independently: HMAC-SHA256, then RFC 4648 base32 of 16 bytes, lowercase, unpadded.
    const mac = createHmac('sha256', KEY)
      .update('convergent/pseudonym/v1\u0000')
      .update(Buffer.from([0, 0, 0, 9]))
      .update('customers')
      .update(EMAIL)
      .digest()
      .subarray(0, 16)
    let bits = ''
    for (const byte of mac) bits += byte.toString(2).padStart(8, '0')
    bits = bits.padEnd(130, '0')
    let expected = ''
    for (let i = 0; i < 130; i += 5) expected += 'abcdefghijklmnopqrstuvwxyz234567'[parseInt(bits.slice(i, i + 5), 2)]
    expect(p).to.equal(expected)
  })

  it('is stable: the same for the key as bytes, as hex (whitespace around it ignored) or as a KeyObject', function () {
    const p = pseudonym(KEY, EMAIL)
    expect(pseudonym(KEY, EMAIL)).to.equal(p)
    expect(pseudonym(` ${KEY.toString('hex')}\n`, EMAIL)).to.equal(p)
    expect(pseudonym(KEY.toString('hex').toUpperCase(), EMAIL)).to.equal(p)
    expect(pseudonym(createSecretKey(KEY), EMAIL)).to.equal(p)
    expect(pseudonym(new Uint8Array(KEY), EMAIL, { namespace: '' })).to.equal(p, "no namespace is namespace ''")
  })

  it('is keyed and separated: another key, namespace or natural key gives another pseudonym; namespace and key do not run into each other', function () {
    const p = pseudonym(KEY, EMAIL)
    const others = [
      pseudonym(randomBytes(32), EMAIL),
      pseudonym(KEY, EMAIL, { namespace: 'customers' }),
      pseudonym(KEY, EMAIL, { namespace: 'suppliers' }),
      pseudonym(KEY, 'Jane.Doe@example.com'),
      pseudonym(KEY, ''),
    ]
    expect(new Set([p, ...others]).size).to.equal(6)
    // "a" + "b\0c" and "a\0b" + "c" would hash the same bytes without the length prefix.
    expect(pseudonym(KEY, 'b\u0000c', { namespace: 'a' })).to.not.equal(pseudonym(KEY, 'c', { namespace: 'a\u0000b' }))
    const many = new Set(Array.from({ length: 2000 }, (_, i) => pseudonym(KEY, `user-${i}@example.com`)))
    expect(many.size).to.equal(2000)
  })

  it('rejects bad keys with ERR_INVALID_ARGUMENT, never echoing the key; and a natural key or namespace that is not a string', function () {
    const secret = 'zz' + KEY.toString('hex').slice(2)
    for (const bad of [
      undefined,
      null,
      5,
      {},
      '',
      secret,
      KEY.toString('hex').slice(2),
      KEY.subarray(1),
      Buffer.concat([KEY, KEY]),
      new Uint8Array(32),
      '0'.repeat(64),
    ]) {
      let message = ''
      expect(
        codeOf(() => {
          try {
            pseudonym(bad as never, EMAIL)
          } catch (err) {
            message = (err as Error).message
            throw err
          }
        }),
      ).to.equal('ERR_INVALID_ARGUMENT')
      expect(message).to.not.include(secret.slice(2))
    }
    expect(codeOf(() => pseudonym(createSecretKey(randomBytes(16)), EMAIL))).to.equal('ERR_INVALID_ARGUMENT')
    expect(codeOf(() => pseudonym(KEY, 42 as never))).to.equal('ERR_INVALID_ARGUMENT')
    expect(codeOf(() => pseudonym(KEY, EMAIL, { namespace: 7 as never }))).to.equal('ERR_INVALID_ARGUMENT')
  })

  it('is an entity id: a customer stored under the pseudonym of its email', async function () {
    const replica = await open({ network: false, logger: silentLogger })
    try {
      const customers = replica.collection<{ name: string }>('customers')
      const id = pseudonym(KEY, EMAIL, { namespace: 'customers' })
      await customers.put(id, { name: 'Jane' })
      expect(await customers.get(pseudonym(KEY, EMAIL, { namespace: 'customers' }))).to.deep.equal({ name: 'Jane' })
    } finally {
      await replica.close()
    }
  })

  it('npx convergent pseudonym prints what pseudonym() returns, one a line; a bad key file is one clear line', async function () {
    this.timeout(60_000)
    const dir = await mkdtemp(join(tmpdir(), 'convergent-pseudonym-'))
    try {
      const keyFile = join(dir, 'pseudonym.key')
      await writeFile(keyFile, KEY.toString('hex') + '\n', { mode: 0o600 })
      const run = await runNode(CLI, ['pseudonym', EMAIL, 'bob@example.com', '--pseudonym-key-file', keyFile, '--namespace', 'customers'])
      expect(run.code, run.stderr).to.equal(0)
      expect(run.stdout).to.equal(`${pseudonym(KEY, EMAIL, { namespace: 'customers' })}\n${pseudonym(KEY, 'bob@example.com', { namespace: 'customers' })}\n`)
      await writeFile(keyFile, 'not a key\n')
      const bad = await runNode(CLI, ['pseudonym', EMAIL, '--pseudonym-key-file', keyFile])
      expect(bad.code).to.equal(1)
      expect(bad.stderr.trim().split('\n')).to.have.length(1)
      expect(bad.stderr).to.match(/pseudonym: the key must be 32 bytes/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
