// The hand-written encodings of personal/subject-keys.ts on the write path (issue #14): key
// records byte for byte what cborg makes, key ids what hashing the parts in turn makes.
import { expect } from 'chai'
import { createHash, randomBytes } from 'node:crypto'
import { decode, encode } from 'cborg'
import { encodeKeyRecord, keyIdOf } from '../src/personal/subject-keys.js'

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
