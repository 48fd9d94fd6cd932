import { commonEnds, type JsonObject, type JsonPrimitive, type JsonValue } from '@convergent/core'
import { CONFLICT, compareOpIds, mapsAt, objectId, opIdOf, valuesAt, type ConflictTree, type Handle } from './conflicts.js'
import { isStoredMap, needsExplicitF64, scalarEquals, toScalar } from './scalars.js'

/**
 * Reconciliation over Automerge change proxies: makes a map or list deep-equal to a JSON
 * value with as few operations as it can (unchanged fields get none, nested objects are
 * reconciled field by field, lists keep their common prefix and suffix). Runs inside
 * A.change. `keep` names keys of the map that are not part of the value (the delete flag).
 *
 * `base`, when given, is the current value of `map` as plain, already materialised data (a
 * part of the document object from before the change): everything is compared against it
 * and the proxy is only touched where something differs. Every read through a proxy is a
 * WASM call, so this makes an update of one field of a large value cheap. Without `base`,
 * the proxy is read (for documents whose object cannot be trusted; see backend.ts).
 */
export function reconcileMap(map: Record<string, unknown>, obj: JsonObject, keep?: string, base?: Record<string, unknown>, conflicts?: Conflicts): void {
  const src = base ?? map
  for (const key of Object.keys(src)) {
    // A removal supersedes every value of the key, conflicting ones included.
    if (key !== keep && !Object.prototype.hasOwnProperty.call(obj, key)) delete map[key]
  }
  const plain = base !== undefined
  for (const key of Object.keys(obj)) reconcileField(map, key, obj[key]!, src[key], plain, conflicts && below(conflicts, key))
}

/**
 * Where a document's conflicting nested maps are (conflicts.ts), for the part being
 * reconciled; `base` then holds merged values, as read() shows them.
 */
export interface Conflicts {
  readonly tree: ConflictTree | typeof CONFLICT
  readonly handle: Handle
}

function below(conflicts: Conflicts, key: string | number): Conflicts | undefined {
  if (conflicts.tree === CONFLICT) return undefined
  const tree = conflicts.tree.get(key)
  return tree === undefined ? undefined : { tree, handle: conflicts.handle }
}

/** `current` is the field's value in the base (plain) or in the proxy. */
function reconcileField(map: Record<string, unknown>, key: string, value: JsonValue, current: unknown, plain: boolean, conflicts?: Conflicts): void {
  if (isJsonObject(value)) {
    if (conflicts?.tree === CONFLICT) {
      // Several maps at this key, read merged: the write goes through to them.
      if (!storedEquals(current, value)) reconcileCopies(conflicts.handle, mapsAt(map, key), value, current as Record<string, unknown>)
      return
    }
    // Reconcile into the existing map rather than replacing it, so concurrent writes of its
    // other fields survive.
    if (!isStoredMap(current)) {
      map[key] = {}
      reconcileMap(map[key] as Record<string, unknown>, value, undefined, {})
    } else if (!plain) {
      reconcileMap(current, value) // current is the proxy
    } else if (!storedEquals(current, value)) {
      reconcileMap(map[key] as Record<string, unknown>, value, undefined, current, conflicts)
    }
  } else if (Array.isArray(value)) {
    if (!Array.isArray(current)) {
      map[key] = []
      insertValues(map[key] as unknown[], 0, value)
    } else if (!plain) {
      reconcileList(current, value)
    } else if (!storedEquals(current, value)) {
      reconcileList(map[key] as unknown[], value, current, conflicts)
    }
  } else if (!scalarEquals(current, value)) {
    map[key] = toScalar(value) // supersedes every value of the key
  }
}

/**
 * Makes the merged view (conflicts.ts) of `copies` — several maps that are one value — equal to
 * `obj`, writing through to the copies rather than replacing them (so concurrent writes of
 * other fields, in any copy, survive as they would in one map). `merged` is their merged view.
 * A field removed is removed from every copy; a field written is written once, where its
 * winning value is (a list is edited in place), and removed from the other copies, so no
 * losing value can come back; a map merged from several is reconciled through its copies.
 */
function reconcileCopies(handle: Handle, copies: readonly Record<string, unknown>[], obj: JsonObject, merged: Record<string, unknown>): void {
  for (const key of Object.keys(merged)) {
    if (!Object.prototype.hasOwnProperty.call(obj, key)) for (const copy of copies) if (copy[key] !== undefined) delete copy[key]
  }
  for (const key of Object.keys(obj)) {
    const value = obj[key]!
    const current = merged[key]
    if (current !== undefined && storedEquals(current, value)) continue
    if (isJsonObject(value) && isStoredMap(current)) {
      reconcileCopies(
        handle,
        copies.flatMap((copy) => mapsAt(copy, key)),
        value,
        current,
      )
      continue
    }
    const holder = winningCopy(handle, copies, key)
    if (isJsonObject(value)) {
      holder[key] = {}
      reconcileMap(holder[key] as Record<string, unknown>, value, undefined, {})
    } else {
      reconcileField(holder, key, value, holder[key], false)
    }
    for (const copy of copies) if (copy !== holder && copy[key] !== undefined) delete copy[key]
  }
}

/** The copy holding the winning value of `key` (the greatest operation id), or the winning copy. */
function winningCopy(handle: Handle, copies: readonly Record<string, unknown>[], key: string): Record<string, unknown> {
  let best: [copy: Record<string, unknown>, opId: string] | undefined
  for (const copy of copies) {
    for (const v of valuesAt(handle, copy, key)) {
      const opId = opIdOf(v)
      if (best === undefined || compareOpIds(opId, best[1]) > 0) best = [copy, opId]
    }
  }
  if (best !== undefined) return best[0]
  return copies.reduce((a, b) => (compareOpIds(objectId(a), objectId(b)) >= 0 ? a : b))
}

/**
 * Keeps the common prefix and suffix; same length → element by element; else splices the
 * middle. `base`: as in reconcileMap.
 */
export function reconcileList(list: unknown[], values: readonly JsonValue[], base?: readonly unknown[], conflicts?: Conflicts): void {
  const src = base ?? list
  const { start, end } = commonEnds(src, values, storedEquals)

  if (src.length === values.length) {
    // Each differing element is replaced in place, so indexes of `src` stay those of `list`.
    for (let i = start; i < src.length - end; i++) reconcileElement(list, i, values[i]!, src[i], base !== undefined, conflicts && below(conflicts, i))
    return
  }
  const removed = src.length - start - end
  if (removed > 0) listOps(list).deleteAt(start, removed)
  insertValues(list, start, values.slice(start, values.length - end))
}

function reconcileElement(list: unknown[], index: number, value: JsonValue, current: unknown, plain: boolean, conflicts?: Conflicts): void {
  if (isStoredMap(current) && isJsonObject(value)) {
    if (plain) reconcileMap(list[index] as Record<string, unknown>, value, undefined, current, conflicts)
    else reconcileMap(current, value)
  } else if (Array.isArray(current) && Array.isArray(value)) {
    if (plain) reconcileList(list[index] as unknown[], value, current, conflicts)
    else reconcileList(current, value)
  } else if (!storedEquals(current, value)) {
    listOps(list).deleteAt(index, 1)
    insertValues(list, index, [value])
  }
}

/** Most values one insertAt call takes (they are spread into its arguments). */
const INSERT_SLICE = 8_192

/** Inserts JSON values: runs of scalars in one call per slice, maps and lists created empty and filled. */
function insertValues(list: unknown[], index: number, values: readonly JsonValue[]): void {
  let i = 0
  while (i < values.length) {
    const value = values[i]!
    if (isJsonObject(value)) {
      listOps(list).insertAt(index, {})
      reconcileMap(list[index] as Record<string, unknown>, value, undefined, {}) // empty: nothing to read
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
      // In slices: a run is passed as arguments, and too many overflow the call stack.
      while (i < j) {
        const run = values.slice(i, Math.min(j, i + INSERT_SLICE)) as JsonPrimitive[]
        listOps(list).insertAt(index, ...run.map((v) => (needsExplicitF64(v) ? null : toScalar(v))))
        // Automerge 3.5's list insert mangles Float64 wrappers (it stores { value: <int64> });
        // assigning an element handles them, so big integers are set after the insert.
        run.forEach((v, k) => {
          if (needsExplicitF64(v)) list[index + k] = toScalar(v)
        })
        index += run.length
        i += run.length
      }
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
