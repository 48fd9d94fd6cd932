import { toHex } from '../hash.js'
import type { HeadLeaf, HeadProof } from './signed-heads.js'

/**
 * Head proofs and leaves read by position, for the exact bytes our encoders write
 * (encodeHeadProof, encodeLeaf: keys in cborg's order, every length in its shortest form), with
 * byte strings as views of the record rather than copies. Anything else — another key order,
 * a longer length head, non-ASCII text, a bound broken, trailing bytes — is `undefined`, and the
 * caller decodes it with the general reader (decodeBounded), which gives the same values or the
 * error. A property test holds the two to that (head-proof-reader.test.ts).
 *
 * Why: a catch-up decodes a head proof per entity at the sender (the stored head) and at the
 * receiver (the head it got). Copied, its ten byte strings are ten ArrayBuffers a proof (~2 KB
 * of allocation, swept by V8's worker threads): in W3 the cluster's extra garbage showed up as
 * +100 µs per entity of CPU on those threads.
 */

/** A position in CBOR bytes; each read returns undefined or -1 (and the caller gives up) on anything but the shortest form. */
export class Cursor {
  pos = 0
  constructor(readonly data: Uint8Array) {}

  /** The argument of a head of major type `major`, in its shortest form; -1 if it is not one. */
  arg(major: number): number {
    const data = this.data
    if (this.pos >= data.byteLength) return -1
    const b = data[this.pos]!
    if (b >> 5 !== major) return -1
    const minor = b & 31
    if (minor < 24) {
      this.pos += 1
      return minor
    }
    const n = minor === 24 ? 1 : minor === 25 ? 2 : minor === 26 ? 4 : 0 // 8-byte arguments: left to the general reader
    if (n === 0 || this.pos + 1 + n > data.byteLength) return -1
    let v = 0
    for (let i = 1; i <= n; i++) v = v * 256 + data[this.pos + i]!
    if (v < (n === 1 ? 24 : n === 2 ? 0x100 : 0x10000)) return -1
    this.pos += 1 + n
    return v
  }

  /** A one-letter map key (a text of one byte). */
  key(letter: number): boolean {
    if (this.pos + 2 > this.data.byteLength || this.data[this.pos] !== 0x61 || this.data[this.pos + 1] !== letter) return false
    this.pos += 2
    return true
  }

  /** A byte string as a view, of at most `max` bytes (exactly `exact`, if given). */
  bytes(max: number, exact?: number): Uint8Array | undefined {
    const n = this.arg(2)
    if (n < 0 || n > max || (exact !== undefined && n !== exact) || this.pos + n > this.data.byteLength) return undefined
    this.pos += n
    return this.data.subarray(this.pos - n, this.pos)
  }

  /** A non-empty ASCII text of at most `max` bytes. */
  ascii(max: number): string | undefined {
    const n = this.arg(3)
    if (n < 1 || n > max || this.pos + n > this.data.byteLength) return undefined
    let out = ''
    for (let i = this.pos; i < this.pos + n; i++) {
      const c = this.data[i]!
      if (c >= 0x80) return undefined
      out += String.fromCharCode(c)
    }
    this.pos += n
    return out
  }

  get done(): boolean {
    return this.pos === this.data.byteLength
  }
}

/** The bounds decodeHeadProof checks. */
export interface ProofBounds {
  maxSignature: number
  maxIndex: number
  maxPath: number
}

/** `{ g: signature, i: index, l: leaf, p: [hash, …], s: statement }` read by position, or undefined (see the module). */
export function readHeadProof(bytes: Uint8Array, bounds: ProofBounds): HeadProof | undefined {
  const c = new Cursor(bytes)
  if (bytes.byteLength === 0 || bytes[0] !== 0xa5) return undefined // a map of five
  c.pos = 1
  if (!c.key(0x67)) return undefined // 'g'
  const signature = c.bytes(bounds.maxSignature)
  if (signature === undefined || !c.key(0x69)) return undefined // 'i'
  const index = c.arg(0)
  if (index < 0 || index > bounds.maxIndex || !c.key(0x6c)) return undefined // 'l'
  const leaf = c.bytes(Number.MAX_SAFE_INTEGER)
  if (leaf === undefined || !c.key(0x70)) return undefined // 'p'
  const hashes = c.arg(4)
  if (hashes < 0 || hashes > bounds.maxPath) return undefined
  const path: Uint8Array[] = new Array<Uint8Array>(hashes)
  for (let i = 0; i < hashes; i++) {
    const hash = c.bytes(32, 32)
    if (hash === undefined) return undefined
    path[i] = hash
  }
  if (!c.key(0x73)) return undefined // 's'
  const statement = c.bytes(Number.MAX_SAFE_INTEGER)
  if (statement === undefined || !c.done) return undefined
  return { statement, signature, leaf, index, path }
}

/** `[id, actor, seq, hash]` read by position, or undefined (see the module): an ASCII id of at most `maxId` bytes, an actor of `actorBytes`, a seq ≥ 1. */
export function readHeadLeaf(bytes: Uint8Array, actorBytes: number, maxId: number): HeadLeaf | undefined {
  const c = new Cursor(bytes)
  if (c.arg(4) !== 4) return undefined
  const id = c.ascii(maxId)
  if (id === undefined) return undefined
  const actor = c.bytes(actorBytes, actorBytes)
  if (actor === undefined) return undefined
  const seq = c.arg(0)
  if (seq < 1) return undefined
  const hash = c.bytes(32, 32)
  if (hash === undefined || !c.done) return undefined
  return { id, actor: toHex(actor), seq, hash: toHex(hash) }
}
