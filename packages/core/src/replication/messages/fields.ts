import { InvalidMessageError } from './envelope.js'

// Small validators for decoded bodies: the shape is checked before anything is used.

export function invalid(why: string): InvalidMessageError {
  return new InvalidMessageError(why)
}

export function asRecord(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) throw invalid(`${what} is not a map`)
  return v as Record<string, unknown>
}

export function asString(v: unknown, what: string, maxBytes = 1024): string {
  if (typeof v !== 'string' || v.length === 0 || Buffer.byteLength(v) > maxBytes) throw invalid(`${what} is not a valid string`)
  return v
}

export function asBytes(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw invalid(`${what} is not bytes`)
  return v
}

export function asBytesOrNull(v: unknown, what: string): Uint8Array | null {
  return v === null || v === undefined ? null : asBytes(v, what)
}

/** Exactly `bytes` bytes. */
export function asSizedBytes(v: unknown, bytes: number, what: string): Uint8Array {
  const b = asBytes(v, what)
  if (b.byteLength !== bytes) throw invalid(`${what} is ${b.byteLength} bytes, not ${bytes}`)
  return b
}

/** 32 bytes (a SHA-256 or a digest). */
export function asHash(v: unknown, what: string): Uint8Array {
  return asSizedBytes(v, 32, what)
}

export function asArray(v: unknown, what: string, maxLength: number): unknown[] {
  if (!Array.isArray(v) || v.length > maxLength) throw invalid(`${what} is not a list of at most ${maxLength}`)
  return v
}

export function asInt(v: unknown, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalid(`${what} is not an integer in [${min}, ${max}]`)
  return v
}

/** [id, delta] pairs, at most `max`. */
export function asDeltaEntries(v: unknown, max: number): [string, Uint8Array][] {
  return asArray(v, 'entries', max).map((e, i) => {
    const t = asArray(e, `entry ${i}`, 2)
    return [asString(t[0], `entry ${i} id`), asBytes(t[1], `entry ${i} delta`)]
  })
}
