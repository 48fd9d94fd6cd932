// The hand-written encodings of personal/subject-keys.ts on the write path (issue #14): key
// records byte for byte what cborg makes, key ids what hashing the parts in turn makes.
import { expect } from 'chai'
import { createCipheriv, createHash, randomBytes } from 'node:crypto'
import { decode, encode } from 'cborg'
import { aeadOpen, deriveAeadKey } from '../src/aead.js'
import { silentLogger } from '../src/logger.js'
import type { Store } from '../src/store.js'
import type { Access } from '../src/trust/access.js'
import { encodeKeyRecord, isSealed, keyIdOf, openSealed, sealedKeyId, SubjectKeys, type HeldKey } from '../src/personal/subject-keys.js'

describe('subject keys: key records and key ids', () => {
  const sizes = [1, 5, 23, 24, 255, 256, 65_535, 65_536]
  it('encodes a key record exactly as cborg does, for every length class', () => {
    for (const cl of sizes) {
      for (const sl of [1, 23, 24, 200, 256]) {
        for (const kl of [0, 23, 24, 32, 300]) {
          const collection = 'ü'.repeat(cl) // two UTF-8 bytes per character
          const subject = 's'.repeat(sl)
          const key = randomBytes(kl)
          const bytes = encodeKeyRecord(collection, subject, key)
          expect(Buffer.from(bytes).equals(Buffer.from(encode({ c: collection, s: subject, k: key }))), `${cl}/${sl}/${kl}`).to.equal(true)
          const back = decode(bytes) as { c: string; s: string; k: Uint8Array }
          expect([back.c, back.s, Buffer.from(back.k).equals(key)]).to.deep.equal([collection, subject, true])
        }
      }
    }
  })

  it('derives the key id as SHA-256 over label, collection, subject and key, taken in turn', () => {
    for (const [collection, subject] of [
      ['customers', 'cust-1'],
      ['ü', 'ß'.repeat(128)],
    ]) {
      const key = randomBytes(32)
      const h = createHash('sha256')
      for (const part of ['convergent/subject-key/v1\u0000', collection!, '\u0000', subject!, '\u0000', key]) h.update(part)
      expect(keyIdOf(collection!, subject!, key)).to.equal(h.digest().subarray(0, 16).toString('base64url'))
    }
  })
})

describe('sealed fields: the envelope', () => {
  const bytes = randomBytes(32)
  const key: HeldKey = { id: keyIdOf('customers', 'cust-1', bytes), collection: 'customers', subject: 'cust-1', key: bytes }
  // seal() touches neither the store nor the policy.
  const keys = new SubjectKeys({} as Store, {} as Access, 'ns', silentLogger)
  const aad = (id: string, field: string): Buffer => Buffer.from(`customers\u0000${id}\u0000${field}\u0000${key.id}`)

  it('is $sealed2.<key id>.<base64(nonce 24 | XChaCha20-Poly1305 ciphertext | tag 16)> under the subkey, the place as AAD', () => {
    const sealed = keys.seal('customers', 'c1', 'email', 'ann@example.com', key)
    expect(isSealed(sealed)).to.equal(true)
    expect(sealed.startsWith(`$sealed2.${key.id}.`)).to.equal(true)
    expect(sealedKeyId(sealed)).to.equal(key.id)
    const raw = Buffer.from(sealed.slice(9 + 22 + 1), 'base64')
    const plain = Buffer.alloc(raw.byteLength - 24 - 16)
    expect(aeadOpen(plain, raw.subarray(24), aad('c1', 'email'), raw.subarray(0, 24), deriveAeadKey(bytes, 'cvfields'))).to.equal(true)
    expect(plain.toString()).to.equal('"ann@example.com"')
    expect(
      aeadOpen(Buffer.alloc(plain.byteLength), raw.subarray(24), aad('c1', 'email'), raw.subarray(0, 24), bytes),
      'not under the subject key itself',
    ).to.equal(false)
    expect(openSealed(key, 'customers', 'c1', 'email', sealed)).to.equal('ann@example.com')
    expect(keys.seal('customers', 'c1', 'email', 'ann@example.com', key)).to.not.equal(sealed, 'a fresh nonce each time')
  })

  it('opens only in its place, under its key, unchanged', () => {
    const sealed = keys.seal('customers', 'c1', 'email', { street: 'Long Street 1' }, key)
    expect(openSealed(key, 'customers', 'c2', 'email', sealed)).to.equal(undefined)
    expect(openSealed(key, 'customers', 'c1', 'address', sealed)).to.equal(undefined)
    const other = randomBytes(32)
    expect(openSealed({ id: key.id, collection: 'customers', subject: 'cust-1', key: other }, 'customers', 'c1', 'email', sealed)).to.equal(undefined)
    const cut = sealed.length - 8
    const flipped = sealed.slice(0, cut) + (sealed[cut] === 'A' ? 'B' : 'A') + sealed.slice(cut + 1)
    expect(openSealed({ ...key }, 'customers', 'c1', 'email', flipped)).to.equal(undefined)
  })

  it('envelopes earlier releases wrote ($sealed1.: AES-256-GCM, a 12-byte IV, the key itself) still open, in their place only', () => {
    const iv = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', bytes, iv)
    cipher.setAAD(aad('c1', 'email'))
    const ct = Buffer.concat([cipher.update(JSON.stringify('bob@example.com'), 'utf8'), cipher.final()])
    const legacy = `$sealed1.${key.id}.` + Buffer.concat([iv, ct, cipher.getAuthTag()]).toString('base64')
    expect(isSealed(legacy)).to.equal(true)
    expect(openSealed({ ...key }, 'customers', 'c1', 'email', legacy)).to.equal('bob@example.com')
    expect(openSealed({ ...key }, 'customers', 'c1', 'phone', legacy)).to.equal(undefined)
    // The same bytes relabelled as the current format do not open.
    expect(openSealed({ ...key }, 'customers', 'c1', 'email', '$sealed2.' + legacy.slice(9))).to.equal(undefined)
  })
})
