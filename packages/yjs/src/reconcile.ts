import * as Y from 'yjs'
import { commonEnds, type JsonObject, type JsonValue } from '@convergent/core'
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
  const { start, end } = commonEnds(current, values, storedEquals)

  if (current.length === values.length) {
    // Elements reconciled in place where they can be; each run of the others replaced in one
    // delete and one insert (an index lookup per element is O(n) for some lists, see insertValues).
    const stop = current.length - end
    let i = start
    while (i < stop) {
      if (reconcileInPlace(current[i], values[i]!)) {
        i++
        continue
      }
      let j = i + 1
      while (j < stop && !reconcileInPlace(current[j], values[j]!)) j++
      arr.delete(i, j - i)
      insertValues(arr, i, values.slice(i, j))
      i = j + 1 // element j (if any) was reconciled in place by the loop above
    }
    return
  }
  const removed = current.length - start - end
  if (removed > 0) arr.delete(start, removed)
  insertValues(arr, start, values.slice(start, values.length - end))
}

/** Reconciles a stored element into `value` where it can stay; false when it must be replaced. */
function reconcileInPlace(current: unknown, value: JsonValue): boolean {
  if (current instanceof Y.Map && isJsonObject(value)) reconcileMap(current, value)
  else if (current instanceof Y.Array && Array.isArray(value)) reconcileArray(current, value)
  else return storedEquals(current, value)
  return true
}

/**
 * Inserts JSON values at `index` in one insert: scalars as they are (Yjs packs each run into one
 * item), objects and arrays as fresh Y.Maps and Y.Arrays, which are then filled through the
 * instances we hold. Never by index after the insert: Yjs' index lookup (findMarker) walks left
 * over every neighbour with consecutive clocks, and empty containers inserted one after another
 * are exactly that, so a lookup per element made a list of n empty objects cost O(n²).
 */
export function insertValues(arr: Y.Array<unknown>, index: number, values: readonly JsonValue[]): void {
  if (values.length === 0) return
  const content: unknown[] = new Array(values.length)
  for (let i = 0; i < values.length; i++) {
    const value = values[i]!
    content[i] = isJsonObject(value) ? new Y.Map() : Array.isArray(value) ? new Y.Array() : value
  }
  arr.insert(index, content)
  for (let i = 0; i < values.length; i++) {
    const value = values[i]!
    if (isJsonObject(value)) reconcileMap(content[i] as Y.Map<unknown>, value)
    else if (Array.isArray(value)) insertValues(content[i] as Y.Array<unknown>, 0, value)
  }
}
