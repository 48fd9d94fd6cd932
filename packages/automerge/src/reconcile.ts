import type { JsonObject, JsonPrimitive, JsonValue } from '@convergent/core'
import { isStoredMap, needsExplicitF64, scalarEquals, toScalar } from './scalars.js'

/**
 * Reconciliation over Automerge change proxies: makes a map or list deep-equal to a JSON
 * value with as few operations as it can (unchanged fields get none, nested objects are
 * reconciled field by field, lists keep their common prefix and suffix). Runs inside
 * A.change. `keep` names keys of the map that are not part of the value (the delete flag).
 */
export function reconcileMap(map: Record<string, unknown>, obj: JsonObject, keep?: string): void {
  for (const key of Object.keys(map)) {
    if (key !== keep && !Object.prototype.hasOwnProperty.call(obj, key)) delete map[key]
  }
  for (const key of Object.keys(obj)) reconcileField(map, key, obj[key]!)
}

function reconcileField(map: Record<string, unknown>, key: string, value: JsonValue): void {
  const current = map[key]
  if (isJsonObject(value)) {
    // Reconcile into the existing map rather than replacing it, so concurrent writes of its
    // other fields survive.
    if (!isStoredMap(current)) map[key] = {}
    reconcileMap(map[key] as Record<string, unknown>, value)
  } else if (Array.isArray(value)) {
    if (Array.isArray(current)) reconcileList(current, value)
    else {
      map[key] = []
      insertValues(map[key] as unknown[], 0, value)
    }
  } else if (!scalarEquals(current, value)) {
    map[key] = toScalar(value)
  }
}

/** Keeps the common prefix and suffix; same length → element by element; else splices the middle. */
export function reconcileList(list: unknown[], values: readonly JsonValue[]): void {
  const shorter = Math.min(list.length, values.length)
  let start = 0
  while (start < shorter && storedEquals(list[start], values[start]!)) start++
  let end = 0
  while (end < shorter - start && storedEquals(list[list.length - 1 - end], values[values.length - 1 - end]!)) end++

  if (list.length === values.length) {
    for (let i = start; i < list.length - end; i++) reconcileElement(list, i, values[i]!)
    return
  }
  const removed = list.length - start - end
  if (removed > 0) listOps(list).deleteAt(start, removed)
  insertValues(list, start, values.slice(start, values.length - end))
}

function reconcileElement(list: unknown[], index: number, value: JsonValue): void {
  const current = list[index]
  if (isStoredMap(current) && isJsonObject(value)) reconcileMap(current, value)
  else if (Array.isArray(current) && Array.isArray(value)) reconcileList(current, value)
  else if (!storedEquals(current, value)) {
    listOps(list).deleteAt(index, 1)
    insertValues(list, index, [value])
  }
}

/** Inserts JSON values: runs of scalars in one call, maps and lists created empty and filled. */
function insertValues(list: unknown[], index: number, values: readonly JsonValue[]): void {
  let i = 0
  while (i < values.length) {
    const value = values[i]!
    if (isJsonObject(value)) {
      listOps(list).insertAt(index, {})
      reconcileMap(list[index] as Record<string, unknown>, value)
      index++
      i++
    } else if (Array.isArray(value)) {
      listOps(list).insertAt(index, [])
      insertValues(list[index] as unknown[], 0, value)
      index++
      i++
    } else {
      let j = i + 1
      while (j < values.length && !isContainer(values[j]!)) j++
      const run = values.slice(i, j) as JsonPrimitive[]
      listOps(list).insertAt(index, ...run.map((v) => (needsExplicitF64(v) ? null : toScalar(v))))
      // Automerge 3.5's list insert mangles Float64 wrappers (it stores { value: <int64> });
      // assigning an element handles them, so big integers are set after the insert.
      run.forEach((v, k) => {
        if (needsExplicitF64(v)) list[index + k] = toScalar(v)
      })
      index += run.length
      i = j
    }
  }
}

/** Deep equality of a stored value (proxy or materialised) and a JSON value. */
function storedEquals(stored: unknown, json: JsonValue): boolean {
  if (Array.isArray(stored)) {
    if (!Array.isArray(json) || stored.length !== json.length) return false
    for (let i = 0; i < json.length; i++) if (!storedEquals(stored[i], json[i]!)) return false
    return true
  }
  if (isJsonObject(json)) {
    if (!isStoredMap(stored)) return false
    const keys = Object.keys(json)
    if (Object.keys(stored).length !== keys.length) return false
    for (const key of keys) if (!storedEquals(stored[key], json[key]!)) return false
    return true
  }
  if (Array.isArray(json)) return false
  return scalarEquals(stored, json)
}

interface ListOps {
  insertAt(index: number, ...values: unknown[]): void
  deleteAt(index: number, count?: number): void
}

/** Automerge list proxies carry insertAt/deleteAt. */
function listOps(list: unknown[]): ListOps {
  return list as unknown as ListOps
}

function isJsonObject(v: JsonValue): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function isContainer(v: JsonValue): boolean {
  return typeof v === 'object' && v !== null
}
