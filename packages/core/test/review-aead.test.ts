// Review of the cipher change (XChaCha20-Poly1305 at rest): what it found in personal fields.
// Personal fields stay AES-256-GCM `$sealed1.` envelopes (the review showed that a previous
// release reads any other form as a plain value and destroys it), and forget() leaves nothing
// behind that opens or seals: tests marked HOLE failed before the fixes.
import { expect } from 'chai'
import { createCipheriv, randomBytes } from 'node:crypto'
import { inspect } from 'node:util'
import { isConvergentError } from '../src/errors.js'
import { silentLogger } from '../src/logger.js'
import type { Store } from '../src/store.js'
import type { Access } from '../src/trust/access.js'
import { isSealed, openSealed, SubjectKeys, type HeldKey } from '../src/personal/subject-keys.js'

/** A store and policy just sufficient for keyFor() and forget(). */
function subjectKeys(): SubjectKeys {
  const store = { write: async () => undefined, compact: async () => undefined, getMeta: async () => undefined } as unknown as Store
  const access = { self: 'me', configured: false, signOwn: async () => undefined } as unknown as Access
  return new SubjectKeys(store, access, 'ns', silentLogger)
}

/** A `$sealed1.` envelope made by hand: AES-256-GCM, the key itself, a 12-byte IV, the place as AAD. */
function envelopeByHand(key: HeldKey, id: string, field: string, value: unknown): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key.key, iv)
  cipher.setAAD(Buffer.from(`${key.collection}\u0000${id}\u0000${field}\u0000${key.id}`))
  const ct = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()])
  return `$sealed1.${key.id}.` + Buffer.concat([iv, ct, cipher.getAuthTag()]).toString('base64')
}

describe('personal fields: envelopes a previous release reads, and nothing left after forget()', () => {
  it('every envelope written is one the previous release recognises as sealed (it would take any other for the plain value)', () => {
    // The previous release's isSealed, verbatim: a replica on it syncs with this one.
    const previousIsSealed = (v: unknown): boolean =>
      typeof v === 'string' && v.length >= '$sealed1.'.length + 22 + 1 + 40 && v.startsWith('$sealed1.') && v.charCodeAt('$sealed1.'.length + 22) === 46
    const keys = subjectKeys()
    const { key } = keys.keyFor('customers', 'cust-1')
    for (const value of ['a@example.com', '', { street: 'x'.repeat(500) }, 42]) {
      const sealed = keys.seal('customers', 'c1', 'email', value, key)
      expect(previousIsSealed(sealed), sealed.slice(0, 20)).to.equal(true)
      expect(openSealed(key, 'customers', 'c1', 'email', envelopeByHand(key, 'c1', 'email', value))).to.deep.equal(value)
    }
  })

  it('malformed, truncated, huge and misplaced envelopes open to nothing and never throw', () => {
    const keys = subjectKeys()
    const { key } = keys.keyFor('customers', 'cust-1')
    const good = keys.seal('customers', 'c1', 'email', 'ann@example.com', key)
    const head = `$sealed1.${key.id}.`
    for (const s of [
      head + 'A'.repeat(40),
      head + '!!!!'.repeat(20),
      head + '====' + 'A'.repeat(60),
      head + '\u0000\uffff\ud800'.repeat(30),
      head + 'A'.repeat(4_000_000),
      good.slice(0, -4),
      good + 'AAAA',
    ]) {
      expect(isSealed(s), s.slice(0, 50)).to.equal(true)
      expect(openSealed(key, 'customers', 'c1', 'email', s), s.slice(0, 50)).to.equal(undefined)
      expect(keys.open('customers', 'c1', 'email', s), s.slice(0, 50)).to.equal(undefined)
    }
    expect(openSealed(key, 'customers', 'c2', 'email', good)).to.equal(undefined)
    expect(openSealed(key, 'customers', 'c1', 'phone', good)).to.equal(undefined)
    expect(openSealed({ ...key, collection: 'orders' }, 'orders', 'c1', 'email', good)).to.equal(undefined)
  })

  it('HOLE a HeldKey kept across forget() seals nothing (it is zeroed: never under an all-zero key)', async () => {
    const keys = subjectKeys()
    const { key: held } = keys.keyFor('customers', 'cust-9')
    keys.seal('customers', 'c9', 'email', 'before@example.com', held)
    await keys.forget('cust-9', ['customers'])
    expect(held.key.every((b) => b === 0)).to.equal(true)
    expect(() => keys.seal('customers', 'c9', 'email', 'after@example.com', held))
      .to.throw()
      .that.satisfies((err: Error) => isConvergentError(err) && err.code === 'ERR_FORGOTTEN')
  })

  it("HOLE after forget(), a HeldKey kept elsewhere opens nothing (node:crypto's copy of the key is dropped)", async () => {
    const keys = subjectKeys()
    const { key: held } = keys.keyFor('customers', 'cust-8')
    const sealed = keys.seal('customers', 'c8', 'email', 'old@example.com', held)
    expect(openSealed(held, 'customers', 'c8', 'email', sealed)).to.equal('old@example.com') // caches its KeyObject
    await keys.forget('cust-8', ['customers'])
    expect(keys.open('customers', 'c8', 'email', sealed)).to.equal(undefined)
    expect(openSealed(held, 'customers', 'c8', 'email', sealed)).to.equal(undefined)
  })

  it('HOLE util.inspect of the subject keys shows no key bytes and no opened value', () => {
    const keys = subjectKeys()
    const { key: held } = keys.keyFor('customers', 'cust-6')
    const sealed = keys.seal('customers', 'c6', 'email', 'secret@example.com', held)
    expect(keys.open('customers', 'c6', 'email', sealed)).to.equal('secret@example.com')
    const shown = inspect(keys, { depth: Infinity, maxArrayLength: Infinity })
    expect(shown.includes([...held.key.subarray(0, 8)].join(', ')), 'subject key bytes').to.equal(false)
    expect(shown.includes(held.key.subarray(0, 8).toString('hex')), 'subject key bytes (hex)').to.equal(false)
    expect(shown.includes('secret@example.com'), 'opened value').to.equal(false)
  })
})
