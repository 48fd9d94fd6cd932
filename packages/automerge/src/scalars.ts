import * as A from '@automerge/automerge'
import type { JsonPrimitive, JsonValue } from '@convergent/core'

/**
 * JSON scalars as Automerge scalars. Strings become ImmutableString (a plain last-writer-wins
 * string; a bare JS string would become a collaborative text object). Integral numbers
 * beyond the safe range are written as f64 explicitly: Automerge would store 1e300 as a
 * saturated int64.
 */
export function toScalar(v: JsonPrimitive): unknown {
  if (typeof v === 'string') return new A.ImmutableString(v)
  if (needsExplicitF64(v)) return new A.Float64(v as number)
  return v
}

export function needsExplicitF64(v: JsonPrimitive): boolean {
  return typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v)
}

/** A stored Automerge value as JSON; `undefined` for maps and lists (the caller recurses). */
export function fromScalar(v: unknown): JsonValue | undefined {
  switch (typeof v) {
    case 'string': // a text object written by a foreign writer
    case 'boolean':
      return v
    case 'number':
      return Number.isFinite(v) ? v : null
    case 'bigint': // an int64 Automerge reads back as bigint (2^53 - 1 is one)
      return Number(v)
    case 'object':
      if (v === null) return null
      if (A.isImmutableString(v)) return v.val
      if (A.isCounter(v)) return v.value
      if (v instanceof Date) return v.toISOString()
      if (v instanceof Uint8Array) return null
      return undefined
    default:
      return null
  }
}

/** Whether a stored scalar already holds the JSON scalar `v` (so writing it would be a no-op). */
export function scalarEquals(stored: unknown, v: JsonPrimitive): boolean {
  if (typeof v === 'string') return A.isImmutableString(stored) && stored.val === v
  // Automerge reads some int64s back as bigint (2^53 - 1 among them).
  if (typeof stored === 'bigint') return typeof v === 'number' && Number(stored) === v
  return stored === v
}

/** A map (plain object or map proxy) as opposed to a list or a scalar object. */
export function isStoredMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype
}
