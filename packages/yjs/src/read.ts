import * as Y from 'yjs'
import type { JsonObject, JsonValue } from '@convergent/core'

/** A fresh plain object with the fields of `map`, keys sorted so every replica reads the same. */
export function readMap(map: Y.Map<unknown>): JsonObject {
  const out: JsonObject = {}
  for (const key of sortSmall(liveKeys(map))) setOwn(out, key, readValue(map.get(key)))
  return out
}

/**
 * The keys of `map` that hold a value, straight from its entry table: Y.Map.keys() goes
 * through three lib0 iterator wrappers, allocated on every read and every put.
 */
export function liveKeys(map: Y.Map<unknown>): string[] {
  const keys: string[] = []
  for (const [key, item] of map._map) if (!item.deleted) keys.push(key)
  return keys
}

/** Sorts in place like Array.prototype.sort; insertion sort (no allocation) for a few keys. */
function sortSmall(keys: string[]): string[] {
  if (keys.length > 16) return keys.sort()
  for (let i = 1; i < keys.length; i++) {
    const k = keys[i]!
    let j = i - 1
    while (j >= 0 && keys[j]! > k) {
      keys[j + 1] = keys[j]!
      j--
    }
    keys[j + 1] = k
  }
  return keys
}

export function readValue(v: unknown): JsonValue {
  if (v instanceof Y.Map) return readMap(v)
  if (v instanceof Y.Array) return v.toArray().map(readValue)
  return readScalar(v)
}

/** Scalars are stored as themselves; anything a foreign writer may have put there is mapped to JSON. */
function readScalar(v: unknown): JsonValue {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return v
    case 'number':
      return Number.isFinite(v) ? v : null
    case 'bigint':
      return Number(v)
    default:
      if (v instanceof Y.Text) return v.toString()
      return null // null, undefined, binary
  }
}

/** Sets a property even when the key is '__proto__' (which plain assignment would not). */
export function setOwn(obj: JsonObject, key: string, value: JsonValue): void {
  if (key === '__proto__') {
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true })
  } else {
    obj[key] = value
  }
}

/** Deep equality of a stored Yjs value and a JSON value, without materialising the Yjs side. */
export function storedEquals(stored: unknown, json: JsonValue): boolean {
  if (stored instanceof Y.Map) {
    if (!isJsonObject(json) || stored.size !== Object.keys(json).length) return false
    for (const key of Object.keys(json)) {
      if (!stored.has(key) || !storedEquals(stored.get(key), json[key]!)) return false
    }
    return true
  }
  if (stored instanceof Y.Array) {
    if (!Array.isArray(json) || stored.length !== json.length) return false
    const items = stored.toArray()
    for (let i = 0; i < items.length; i++) if (!storedEquals(items[i], json[i]!)) return false
    return true
  }
  return stored === json
}

export function isJsonObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
