// What releases before the cipher change (2026-12-06) sealed at rest: format-2 records,
// AES-256-GCM with the key itself. For the tests that check such folders still open.
import { createCipheriv, randomBytes } from 'node:crypto'
import { AtRestSealer, keyIdOf } from '../src/encryption.js'

/** [2][key id][iv 12][AES-256-GCM ciphertext][tag 16], AAD = the first 9 bytes + the full key. */
export function legacySeal(key: Buffer, fullKey: string, body: Uint8Array): Buffer {
  const header = Buffer.concat([Buffer.from([2]), keyIdOf(key)])
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: 16 })
  cipher.setAAD(Buffer.concat([header, Buffer.from(fullKey)]))
  return Buffer.concat([header, iv, cipher.update(body), cipher.final(), cipher.getAuthTag()])
}

/** Seals as an earlier release did: a store given it writes a folder of format-2 records only (its marker's check value too). */
export class LegacySealer extends AtRestSealer {
  constructor(private readonly raw: Buffer) {
    super(raw)
  }
  override sealCopy(fullKey: string, body: Uint8Array): Uint8Array {
    return legacySeal(this.raw, fullKey, body)
  }
}
