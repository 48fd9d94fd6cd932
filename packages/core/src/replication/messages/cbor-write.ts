/**
 * CBOR heads written by hand (RFC 8949 §3: major type and a definite length in the fewest
 * bytes) for the few records written once per entity on the catch-up path, where cborg.encode
 * (an object walked into tokens, then bytes) costs ~3× a hand-framed record. What is built from these
 * must be exactly the bytes cborg writes — a property test holds each user to that.
 */
export type Major = 0 | 2 | 3 | 4 | 5

/** The bytes of a head for length (or unsigned value) `n`. */
export function headLength(n: number): number {
  if (n < 24) return 1
  if (n < 0x100) return 2
  if (n < 0x10000) return 3
  if (n <= 0xffffffff) return 5
  throw new RangeError(`a CBOR length of ${n}`)
}

/** Writes a head into `out` at `pos`; the position after it. */
export function writeHead(out: Uint8Array, pos: number, major: Major, n: number): number {
  const type = major << 5
  const bytes = headLength(n)
  if (bytes === 1) {
    out[pos] = type | n
  } else if (bytes === 2) {
    out[pos] = type | 24
    out[pos + 1] = n
  } else if (bytes === 3) {
    out[pos] = type | 25
    out[pos + 1] = n >> 8
    out[pos + 2] = n & 0xff
  } else {
    out[pos] = type | 26
    out[pos + 1] = (n >>> 24) & 0xff
    out[pos + 2] = (n >>> 16) & 0xff
    out[pos + 3] = (n >>> 8) & 0xff
    out[pos + 4] = n & 0xff
  }
  return pos + bytes
}

/** A head on its own. */
export function cborHead(major: Major, n: number): Uint8Array {
  const out = new Uint8Array(headLength(n))
  writeHead(out, 0, major, n)
  return out
}

/** Writes a one-letter text (a map key as cborg writes it); the position after it. */
export function writeKey(out: Uint8Array, pos: number, letter: string): number {
  out[pos] = 0x61
  out[pos + 1] = letter.charCodeAt(0)
  return pos + 2
}

/** Writes a byte string, head and bytes; the position after it. */
export function writeBytes(out: Uint8Array, pos: number, bytes: Uint8Array): number {
  pos = writeHead(out, pos, 2, bytes.byteLength)
  out.set(bytes, pos)
  return pos + bytes.byteLength
}

/** The bytes writeBytes takes. */
export function bytesLength(bytes: Uint8Array): number {
  return headLength(bytes.byteLength) + bytes.byteLength
}
