import type { JsonObject, JsonValue } from '@convergent/core'
import { fromScalar, isStoredMap } from './scalars.js'
import { DELETED_KEY } from './schema.js'

/** The entity value: the root's fields without the delete flag, as a fresh plain object. */
export function readRoot(root: Record<string, unknown>): JsonObject {
  const out: JsonObject = {}
  // Sorted: replicas materialise keys in arrival order, and readers should all see the same.
  for (const key of Object.keys(root).sort()) {
    if (key !== DELETED_KEY) out[key] = readValue(root[key])
  }
  return out
}

function readValue(v: unknown): JsonValue {
  if (Array.isArray(v)) return v.map(readValue)
  const scalar = fromScalar(v)
  if (scalar !== undefined) return scalar
  if (isStoredMap(v)) {
    const out: JsonObject = {}
    for (const key of Object.keys(v).sort()) out[key] = readValue(v[key])
    return out
  }
  return null
}
