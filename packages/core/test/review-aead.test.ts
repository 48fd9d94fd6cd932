// Review of the cipher change (XChaCha20-Poly1305 at rest): what it found in personal fields.
// Personal fields are sealed with XChaCha20-Poly1305 too, but inside the `$sealed1.<key id>.`
// form of the previous release (which reads any other form as a plain value and destroys it),
// so that release takes them for fields it cannot open and keeps them; its AES-256-GCM
// envelopes still open; and forget() leaves nothing behind that opens or seals: tests marked
// HOLE failed before the fixes.
import { expect } from 'chai'
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { inspect } from 'node:util'
import { isConvergentError } from '../src/errors.js'
import { silentLogger } from '../src/logger.js'
import type { Store } from '../src/store.js'
import type { Access } from '../src/trust/access.js'
import { checkPersonalCipher, isSealed, openSealed, SubjectKeys, type HeldKey } from '../src/personal/subject-keys.js'

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

/** The previous release's openSealed, verbatim in what it does: AES-256-GCM only. */
function previousOpen(key: HeldKey, collection: string, id: string, field: string, sealed: string): unknown {
  if (!isSealed(sealed) || sealed.slice(9, 31) !== key.id || key.collection !== collection) return undefined
  try {
    const raw = Buffer.from(sealed.slice(9 + 22 + 1), 'base64')
    if (raw.byteLength < 28) return undefined
    const decipher = createDecipheriv('aes-256-gcm', key.key, raw.subarray(0, 12))
    decipher.setAAD(Buffer.from(`${collection}\u0000${id}\u0000${field}\u0000${key.id}`))
    decipher.setAuthTag(raw.subarray(raw.byteLength - 16))
    return JSON.parse(Buffer.concat([decipher.update(raw.subarray(12, raw.byteLength - 16)), decipher.final()]).toString('utf8'))
  } catch {
    return undefined
  }
}

describe('personal fields: envelopes a previous release reads, and nothing left after forget()', () => {
  it('by default envelopes are AES-256-GCM, which the previous release opens; personalCipher xchacha20-poly1305 it cannot (open() checks the option)', () => {
    const keys = subjectKeys()
    const { key } = keys.keyFor('customers', 'cust-1')
    const sealed = keys.seal('customers', 'c1', 'email', 'a@example.com', key)
    expect(sealed.charAt(`$sealed1.${key.id}.`.length)).not.to.equal('~')
    expect(previousOpen(key, 'customers', 'c1', 'email', sealed)).to.equal('a@example.com')
    expect(openSealed(key, 'customers', 'c1', 'email', sealed)).to.equal('a@example.com')
    expect(checkPersonalCipher(undefined)).to.equal('aes-256-gcm')
    expect(checkPersonalCipher('xchacha20-poly1305')).to.equal('xchacha20-poly1305')
    for (const bad of ['aes', 'XCHACHA20-POLY1305', 1, null, {}]) {
      expect(() => checkPersonalCipher(bad))
        .to.throw()
        .that.satisfies((err: Error) => isConvergentError(err) && err.code === 'ERR_INVALID_ARGUMENT')
    }
  })

  it('every envelope written is one the previous release recognises as sealed (it would take any other for the plain value)', () => {
    // The previous release's isSealed, verbatim: a replica on it syncs with this one.
    const previousIsSealed = (v: unknown): boolean =>
      typeof v === 'string' && v.length >= '$sealed1.'.length + 22 + 1 + 40 && v.startsWith('$sealed1.') && v.charCodeAt('$sealed1.'.length + 22) === 46
    const keys = subjectKeys()
    keys.cipher = 'xchacha20-poly1305'
    const { key } = keys.keyFor('customers', 'cust-1')
    for (const value of ['a@example.com', '', { street: 'x'.repeat(500) }, 42]) {
      const sealed = keys.seal('customers', 'c1', 'email', value, key)
      expect(previousIsSealed(sealed), sealed.slice(0, 20)).to.equal(true)
      expect(sealed.startsWith(`$sealed1.${key.id}.~`), 'the XChaCha20 form').to.equal(true)
      expect(openSealed(key, 'customers', 'c1', 'email', sealed)).to.deep.equal(value)
      // The previous release opens it to nothing (a field whose key it holds but which does not
      // open there: shown absent, kept as it is by update(), never changed there).
      expect(previousOpen(key, 'customers', 'c1', 'email', sealed), 'the previous release').to.equal(undefined)
      // And this release still opens the previous release's envelopes.
      expect(openSealed(key, 'customers', 'c1', 'email', envelopeByHand(key, 'c1', 'email', value))).to.deep.equal(value)
    }
  })

  it('an XChaCha20 envelope is tied to its key, its place and every byte of it', () => {
    const keys = subjectKeys()
    keys.cipher = 'xchacha20-poly1305'
    const { key } = keys.keyFor('customers', 'cust-1')
    const { key: other } = keys.keyFor('customers', 'cust-2')
    const good = keys.seal('customers', 'c1', 'email', 'ann@example.com', key)
    const body = Buffer.from(good.slice(good.indexOf('~') + 1), 'base64url')
    for (let i = 0; i < body.byteLength; i++) {
      const flipped = Buffer.from(body)
      flipped[i]! ^= 0x01
      expect(openSealed(key, 'customers', 'c1', 'email', good.slice(0, good.indexOf('~') + 1) + flipped.toString('base64url')), `byte ${i}`).to.equal(undefined)
    }
    // Under another key id (the AAD names it), and with the other key's bytes under this id.
    expect(openSealed(other, 'customers', 'c1', 'email', good.replace(key.id, other.id))).to.equal(undefined)
    expect(openSealed({ ...other, id: key.id, aead: undefined }, 'customers', 'c1', 'email', good)).to.equal(undefined)
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
      head + '~' + 'A'.repeat(60),
      head + '~' + '!!!!'.repeat(20),
      head + '~~' + 'A'.repeat(60),
      head + '~' + Buffer.alloc(40).toString('base64url'),
      head + '~' + Buffer.alloc(39).toString('base64url') + 'A'.repeat(10),
      head + '~' + 'A'.repeat(4_000_000),
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
    const sealed = keys.seal('customers', 'c8', 'email', 'old@example.com', held) // AES-256-GCM
    keys.cipher = 'xchacha20-poly1305'
    const sealedX = keys.seal('customers', 'c8', 'address', 'Old Street', held)
    expect(openSealed(held, 'customers', 'c8', 'email', sealed)).to.equal('old@example.com') // caches its KeyObject
    expect(openSealed(held, 'customers', 'c8', 'address', sealedX)).to.equal('Old Street') // and its subkey
    const subkey = held.aead!
    await keys.forget('cust-8', ['customers'])
    expect(
      subkey.every((b) => b === 0),
      'the derived field key is zeroed',
    ).to.equal(true)
    for (const [field, s] of [
      ['email', sealed],
      ['address', sealedX],
    ] as const) {
      expect(keys.open('customers', 'c8', field, s)).to.equal(undefined)
      expect(openSealed(held, 'customers', 'c8', field, s)).to.equal(undefined)
    }
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
