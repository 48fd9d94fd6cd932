import * as Y from 'yjs'
import type { JsonObject, JsonValue } from '@convergent/core'
import { isJsonObject, liveKeys, storedEquals } from './read.js'

/**
 * Makes `map` deep-equal to `obj` with as few Yjs operations as it can: fields that did not
 * change get no operation, so concurrent writes of other fields (at any depth) survive.
 * Must run inside a transaction on an integrated map.
 */
export function reconcileMap(map: Y.Map<unknown>, obj: JsonObject): void {
  for (const key of liveKeys(map)) {
    if (!Object.prototype.hasOwnProperty.call(obj, key)) map.delete(key)
  }
  for (const key of Object.keys(obj)) reconcileField(map, key, obj[key]!)
}

function reconcileField(map: Y.Map<unknown>, key: string, value: JsonValue): void {
  const current = map.get(key)
  if (isJsonObject(value)) {
    // Reconcile into the existing map rather than replacing it: a replacement would drop
    // whatever a concurrent writer puts into the old one.
    reconcileMap(current instanceof Y.Map ? current : map.set(key, new Y.Map()), value)
  } else if (Array.isArray(value)) {
    if (current instanceof Y.Array) reconcileArray(current, value)
    else insertValues(map.set(key, new Y.Array()), 0, value)
  } else if (!map.has(key) || current !== value) {
    map.set(key, value)
  }
}

/**
 * Keeps the longest common prefix and suffix (by deep equality) and rewrites the middle.
 * When the lengths are equal the middle is reconciled element by element instead, so an
 * edit inside one object of a list of objects touches only that object.
 */
export function reconcileArray(arr: Y.Array<unknown>, values: readonly JsonValue[]): void {
  const current = arr.toArray()
  const shorter = Math.min(current.length, values.length)
  let start = 0
  while (start < shorter && storedEquals(current[start], values[start]!)) start++
  let end = 0
  while (end < shorter - start && storedEquals(current[current.length - 1 - end], values[values.length - 1 - end]!)) end++

  if (current.length === values.length) {
    for (let i = start; i < current.length - end; i++) reconcileElement(arr, i, current[i], values[i]!)
    return
  }
  const removed = current.length - start - end
  if (removed > 0) arr.delete(start, removed)
  insertValues(arr, start, values.slice(start, values.length - end))
}

function reconcileElement(arr: Y.Array<unknown>, index: number, current: unknown, value: JsonValue): void {
  if (current instanceof Y.Map && isJsonObject(value)) reconcileMap(current, value)
  else if (current instanceof Y.Array && Array.isArray(value)) reconcileArray(current, value)
  else if (!storedEquals(current, value)) {
    arr.delete(index, 1)
    insertValues(arr, index, [value])
  }
}

/** Inserts JSON values at `index`: runs of scalars as one insert, objects and arrays as Yjs types. */
export function insertValues(arr: Y.Array<unknown>, index: number, values: readonly JsonValue[]): void {
  let i = 0
  while (i < values.length) {
    const value = values[i]!
    if (isJsonObject(value)) {
      arr.insert(index, [new Y.Map()])
      reconcileMap(arr.get(index) as Y.Map<unknown>, value)
      index++
      i++
    } else if (Array.isArray(value)) {
      arr.insert(index, [new Y.Array()])
      insertValues(arr.get(index) as Y.Array<unknown>, 0, value)
      index++
      i++
    } else {
      let j = i + 1
      while (j < values.length && !isContainer(values[j]!)) j++
      arr.insert(index, values.slice(i, j))
      index += j - i
      i = j
    }
  }
}

function isContainer(v: JsonValue): boolean {
  return typeof v === 'object' && v !== null
}
