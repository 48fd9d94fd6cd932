import { ConvergentError, fromHex, toHex } from '@convergent/core'

/** Automerge heads are SHA-256 change hashes. */
const HASH_BYTES = 32

/** A version: the heads, sorted, as 32-byte hashes back to back (empty = no change yet). */
export function encodeHeads(heads: readonly string[]): Uint8Array {
  const sorted = [...heads].sort()
  const out = new Uint8Array(sorted.length * HASH_BYTES)
  sorted.forEach((h, i) => out.set(fromHex(h), i * HASH_BYTES))
  return out
}

export function decodeHeads(bytes: Uint8Array): string[] {
  if (bytes.byteLength % HASH_BYTES !== 0) {
    throw new ConvergentError(
      'ERR_INVALID_VERSION',
      `An Automerge version is a whole number of ${HASH_BYTES}-byte hashes; got ${bytes.byteLength} bytes. Pass the bytes version() returned.`,
    )
  }
  const heads: string[] = []
  for (let i = 0; i < bytes.byteLength; i += HASH_BYTES) heads.push(toHex(bytes.subarray(i, i + HASH_BYTES)))
  return heads
}
