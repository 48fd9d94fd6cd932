import { createHmac, createSecretKey, type KeyObject } from 'node:crypto'
import { ConvergentError } from '@convergent/core'

/** Characters in a pseudonym: 128 bits of HMAC-SHA256, base32 (RFC 4648 alphabet, lowercase, no padding). */
export const PSEUDONYM_LENGTH = 26

const LABEL = 'convergent/pseudonym/v1\u0000'
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'
const PSEUDONYM_BYTES = 16

export interface PseudonymOptions {
  /**
   * Keeps pseudonyms of different kinds apart under one key: the same natural key gives
   * unrelated pseudonyms in namespaces 'customers' and 'suppliers'. Default '' (no namespace).
   */
  namespace?: string
}

/**
 * A stable keyed pseudonym for a natural key — e.g. an email address that would otherwise be
 * an entity id — so that ids (visible metadata, even with encryption at rest) carry no personal
 * data: `customers.put(pseudonym(key, email, { namespace: 'customers' }), customer)`.
 *
 * HMAC-SHA256 (Node's crypto) under `key` over a domain label, the namespace (length-prefixed)
 * and the natural key (UTF-8), truncated to 128 bits and written as {@link PSEUDONYM_LENGTH}
 * lowercase base32 characters (`[a-z2-7]`, a valid entity id). The same key, namespace and
 * natural key always give the same pseudonym, on every replica and every run; without the key
 * it cannot be computed, so it cannot be reversed by trying candidate emails. Whoever holds the
 * key can: keep it like the at-rest key (a file or a secrets store, not in code), and use a key
 * of its own, not the at-rest or cluster key. Rotating it changes every pseudonym.
 *
 * The natural key is taken as it is: normalise it first if two spellings should meet (for
 * example `email.trim().toLowerCase()`).
 *
 * @param key 32 bytes: a Uint8Array, or 64 hex characters (whitespace around them ignored)
 * @throws ConvergentError ERR_INVALID_ARGUMENT for a malformed key (never echoed), a natural
 *   key or namespace that is not a string
 */
export function pseudonym(key: Uint8Array | string | KeyObject, naturalKey: string, options: PseudonymOptions = {}): string {
  const secret = pseudonymKey(key)
  if (typeof naturalKey !== 'string') throw invalid('the natural key must be a string.')
  const namespace = options?.namespace ?? ''
  if (typeof namespace !== 'string') throw invalid('options.namespace must be a string.')
  const ns = Buffer.from(namespace, 'utf8')
  const length = Buffer.alloc(4)
  length.writeUInt32BE(ns.byteLength)
  const mac = createHmac('sha256', secret).update(LABEL).update(length).update(ns).update(naturalKey, 'utf8').digest()
  return base32(mac.subarray(0, PSEUDONYM_BYTES))
}

/** A 32-byte secret key as a KeyObject; ERR_INVALID_ARGUMENT (the key not shown) otherwise. */
function pseudonymKey(key: unknown): KeyObject {
  if (typeof key === 'object' && key !== null && (key as KeyObject).type === 'secret' && typeof (key as KeyObject).export === 'function') {
    if ((key as KeyObject).symmetricKeySize !== 32) throw invalid('the key must be 32 bytes.')
    return key as KeyObject
  }
  let bytes: Buffer
  if (typeof key === 'string') {
    const hex = key.trim()
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw invalid('the key must be 32 bytes: 64 hex characters (it is not; its value is not shown).')
    bytes = Buffer.from(hex, 'hex')
  } else if (key instanceof Uint8Array) {
    bytes = Buffer.from(Uint8Array.from(key)) // measured on a copy: a subclass cannot misreport its length
    if (bytes.byteLength !== 32) throw invalid(`the key must be 32 bytes (got ${bytes.byteLength}).`)
  } else {
    throw invalid('the key must be a Uint8Array of 32 bytes or a string of 64 hex characters.')
  }
  if (bytes.every((b) => b === 0)) throw invalid('the key is all zeros: not a secret.')
  return createSecretKey(bytes)
}

function base32(bytes: Uint8Array): string {
  let out = ''
  let bits = 0
  let value = 0
  for (const byte of bytes) {
    value = ((value << 8) | byte) & 0xffff
    bits += 8
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31]
  return out
}

function invalid(why: string): ConvergentError {
  return new ConvergentError('ERR_INVALID_ARGUMENT', `pseudonym: ${why}`)
}
