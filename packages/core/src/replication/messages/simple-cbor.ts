/**
 * A fast reader for the plain CBOR our own encoder writes — maps with ASCII text keys, arrays,
 * byte strings, ASCII text, unsigned integers, true, false, null, every length in its shortest
 * form — giving exactly what cborg's decode gives for those bytes (byte strings copied as cborg
 * copies them, maps as plain objects). Anything else is a MISS, and the caller decodes it with
 * cborg as before: floats, negative numbers, tags, non-ASCII text, non-shortest lengths,
 * duplicate or `__proto__` keys, more items than allowed, trailing or missing bytes. So it
 * never accepts what cborg refuses nor reads anything differently; a property test holds it to
 * that (simple-cbor.test.ts).
 *
 * Why: a catch-up decodes a few CBOR records per entity (the headed delta, its head proofs,
 * their leaves and statements): a head proof takes ~7.5 µs through cborg's tokenizer and
 * ~3–4.5 µs here (copying its byte strings is ~1 µs of that).
 */
export const MISS: unique symbol = Symbol('not simple CBOR')

/** Thrown inside the reader when the bytes leave its subset (one instance: a miss allocates nothing). */
class Miss extends Error {}
const MISSED = new Miss('not simple CBOR')

/** Lists and maps at most this long (the bound decodeBounded sets). */
const MAX_LENGTH = 65_536
/** Nesting deeper than ours (a few levels) is left to cborg. */
const MAX_DEPTH = 32
/** Text up to this long is built char by char; longer ASCII text through a TextDecoder. */
const SHORT_TEXT = 64
const ascii = new TextDecoder('utf-8')

class Reader {
  pos = 0
  private items = 0

  constructor(
    private readonly data: Uint8Array,
    private readonly maxItems: number,
  ) {}

  /** The argument of the last head read. */
  private arg = 0

  /** Reads an item's head: returns its major type, its argument goes to `arg`. */
  private head(): number {
    const data = this.data
    if (this.pos >= data.byteLength) throw MISSED
    if (++this.items > this.maxItems) throw MISSED // cborg's bounded tokenizer throws the error
    const b = data[this.pos++]!
    const minor = b & 31
    if (minor < 24) {
      this.arg = minor
      return b >> 5
    }
    const n = minor === 24 ? 1 : minor === 25 ? 2 : minor === 26 ? 4 : minor === 27 ? 8 : 0
    if (n === 0 || this.pos + n > data.byteLength) throw MISSED
    let v = 0
    if (n === 8) {
      const hi = ((data[this.pos]! << 24) >>> 0) + (data[this.pos + 1]! << 16) + (data[this.pos + 2]! << 8) + data[this.pos + 3]!
      if (hi === 0 || hi > 0x1fffff) throw MISSED // not shortest, or past Number.MAX_SAFE_INTEGER
      const lo = ((data[this.pos + 4]! << 24) >>> 0) + (data[this.pos + 5]! << 16) + (data[this.pos + 6]! << 8) + data[this.pos + 7]!
      v = hi * 0x1_0000_0000 + lo
    } else {
      for (let i = 0; i < n; i++) v = v * 256 + data[this.pos + i]!
      if (v < (n === 1 ? 24 : n === 2 ? 0x100 : 0x10000)) throw MISSED // not the shortest form
    }
    this.pos += n
    this.arg = v
    return b >> 5
  }

  item(depth: number): unknown {
    switch (this.head()) {
      case 0:
        return this.arg
      case 2:
        return this.bytes()
      case 3:
        return this.text()
      case 4: {
        const n = this.arg
        // Each item takes a byte at least: a length the bytes left cannot hold is not allocated.
        if (n > MAX_LENGTH || n > this.data.byteLength - this.pos || depth >= MAX_DEPTH) throw MISSED
        const out: unknown[] = new Array(n)
        for (let i = 0; i < n; i++) out[i] = this.item(depth + 1)
        return out
      }
      case 5: {
        const n = this.arg
        if (n > MAX_LENGTH || 2 * n > this.data.byteLength - this.pos || depth >= MAX_DEPTH) throw MISSED
        const out: Record<string, unknown> = {}
        for (let i = 0; i < n; i++) {
          if (this.head() !== 3) throw MISSED
          const key = this.text()
          if (key === '__proto__' || Object.hasOwn(out, key)) throw MISSED
          out[key] = this.item(depth + 1)
        }
        return out
      }
      case 7:
        if (this.arg === 20) return false
        if (this.arg === 21) return true
        if (this.arg === 22) return null
        throw MISSED
      default:
        throw MISSED
    }
  }

  private bytes(): Uint8Array {
    const end = this.pos + this.arg
    if (end > this.data.byteLength) throw MISSED
    // As cborg: `slice` (a copy of a Uint8Array, a view of a Buffer); an empty one is a plain Uint8Array.
    const out = this.arg === 0 ? new Uint8Array(0) : this.data.slice(this.pos, end)
    this.pos = end
    return out
  }

  private text(): string {
    const data = this.data
    const end = this.pos + this.arg
    if (end > data.byteLength) throw MISSED
    for (let i = this.pos; i < end; i++) if (data[i]! >= 0x80) throw MISSED
    let out: string
    if (this.arg <= SHORT_TEXT) {
      out = ''
      for (let i = this.pos; i < end; i++) out += String.fromCharCode(data[i]!)
    } else {
      out = ascii.decode(data.subarray(this.pos, end))
    }
    this.pos = end
    return out
  }
}

/** The value of `data` if it is simple CBOR of at most `maxItems` items (counted as cborg's tokens), else MISS. */
export function decodeSimple(data: Uint8Array, maxItems: number): unknown {
  const reader = new Reader(data, maxItems)
  try {
    const value = reader.item(0)
    return reader.pos === data.byteLength ? value : MISS
  } catch (err) {
    if (err === MISSED) return MISS
    throw err
  }
}
