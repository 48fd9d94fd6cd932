import { createHash, hash } from 'node:crypto'

/** SHA-256 of the given chunks. Used for version hashes, digest buckets and entity keys. */
export function sha256(...chunks: (Uint8Array | string)[]): Uint8Array {
  // One chunk (most calls, once per write): the one-shot API is ~40 % cheaper than a Hash object.
  if (chunks.length === 1) {
    const d = hash('sha256', chunks[0]!, 'buffer')
    return new Uint8Array(d.buffer, d.byteOffset, d.byteLength) // a plain Uint8Array view, not a copy
  }
  const h = createHash('sha256')
  for (const c of chunks) h.update(c)
  return new Uint8Array(h.digest())
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

export function fromHex(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, 'hex'))
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false
  // Past a hash's length, Node's native compare beats the loop (a head statement is ~150 bytes).
  if (a.byteLength > 64) return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}

/** The chunks one after another, in one new array (the only chunk itself when there is one). */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let offset = 0
  for (const p of parts) {
    out.set(p, offset)
    offset += p.byteLength
  }
  return out
}

/** a ^= b in place (equal lengths). */
export function xorInto(a: Uint8Array, b: Uint8Array): void {
  for (let i = 0; i < a.length; i++) a[i]! ^= b[i]!
}

/** The bytes as a string of one char each (latin1): an exact Map key for bytes, half the length of hex. */
export function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')
}
