/**
 * Authenticated encryption of records at rest (@convergent/level) and of personal fields
 * (personal/subject-keys.ts): XChaCha20-Poly1305 (IETF), one call into libsodium
 * (sodium-native) per seal or open.
 *
 * Why not AES-256-GCM from node:crypto, which sealed records before (and still opens what it sealed):
 * - Cost. node:crypto has no one-shot AEAD: createCipheriv, setAAD, update, final and getAuthTag
 *   cost ~3.8 µs per call together, whatever the size, against ~0.7 µs for one libsodium call
 *   (measured here on 40-byte records). A small write seals two to four records, so the fixed
 *   cost alone was 15–50 % of a write: the ≤ 10 % budget for encryption at rest cannot be met
 *   with it.
 * - Random nonces. With 96-bit random IVs, GCM allows 2^32 seals per key (NIST SP 800-38D,
 *   8.3); a store sealing 40,000 records a second reaches that in about 30 hours. XChaCha20's
 *   192-bit nonce makes random nonces safe for any volume a key will ever seal.
 *
 * Keys are never used raw: each use derives its own subkey with libsodium's KDF
 * (crypto_kdf_derive_from_key, BLAKE2b), so the 32 bytes given as an at-rest key (which still
 * open AES-256-GCM records of earlier releases) never serve two algorithms.
 */
import sodium from 'sodium-native'

export const AEAD_KEY_BYTES = 32
export const AEAD_NONCE_BYTES = 24
export const AEAD_TAG_BYTES = 16

/** A subkey of `master` for one purpose: `context` is exactly 8 ASCII characters (libsodium's KDF context). */
export function deriveAeadKey(master: Uint8Array, context: string): Buffer {
  if (master.byteLength !== AEAD_KEY_BYTES) throw new RangeError(`a key must be ${AEAD_KEY_BYTES} bytes`)
  if (context.length !== 8) throw new RangeError('a KDF context is 8 characters')
  const subkey = Buffer.alloc(AEAD_KEY_BYTES)
  sodium.crypto_kdf_derive_from_key(subkey, 1, Buffer.from(context, 'latin1'), Buffer.from(master.buffer, master.byteOffset, master.byteLength))
  return subkey
}

/**
 * Random nonces, drawn from a pool of libsodium's CSPRNG bytes refilled NONCES at a time: each
 * nonce is still 24 fresh random bytes, but one call to the generator serves NONCES seals. A
 * pool byte is handed out once, then overwritten by the next refill.
 */
const NONCES = 1024
export class NoncePool {
  private readonly pool = Buffer.alloc(NONCES * AEAD_NONCE_BYTES)
  private at = this.pool.byteLength // empty: filled on first use

  /** Writes a fresh nonce into `out` at `offset`. */
  writeInto(out: Uint8Array, offset: number): void {
    if (this.at === this.pool.byteLength) {
      sodium.randombytes_buf(this.pool)
      this.at = 0
    }
    this.pool.copy(out, offset, this.at, this.at + AEAD_NONCE_BYTES)
    this.at += AEAD_NONCE_BYTES
  }
}

/** Seals `plain` into `out` (exactly plain + AEAD_TAG_BYTES long): ciphertext, then tag. */
export function aeadSeal(out: Uint8Array, plain: Uint8Array, aad: Uint8Array, nonce: Uint8Array, key: Buffer): void {
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(out, plain, aad, null, nonce, key)
}

/**
 * Opens `sealed` (ciphertext then tag) into `out` (exactly sealed − AEAD_TAG_BYTES long).
 * False if it does not open: another key, another AAD, a changed byte. `out` then holds nothing
 * of the plain text.
 */
export function aeadOpen(out: Uint8Array, sealed: Uint8Array, aad: Uint8Array, nonce: Uint8Array, key: Buffer): boolean {
  if (sealed.byteLength < AEAD_TAG_BYTES || out.byteLength !== sealed.byteLength - AEAD_TAG_BYTES) return false
  try {
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(out, null, sealed, aad, nonce, key)
    return true
  } catch {
    return false
  }
}
