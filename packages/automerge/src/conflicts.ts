import * as A from '@automerge/automerge'
import { isStoredMap } from './scalars.js'

/**
 * Concurrent creation of the same nested object. When two replicas each put a map at the same
 * key without having seen the other's (A puts {address: {city}}, B puts {address: {zip}}),
 * Automerge keeps both maps as conflicting values of the key and shows one of them. The
 * backend instead shows them merged, field by field, recursively: for every field the value
 * with the greatest operation id (Automerge's own last-writer order: counter, then actor)
 * among all the copies wins, and where that value is a map, every map among them is merged
 * the same way. The result depends only on the operations, so it is the same on every replica
 * whatever order they arrived in.
 *
 * Finding such keys takes a WASM call per map-valued key (~15–20 µs each), so it is not done
 * on every read: the backend knows for most documents that they have none (see backend.ts),
 * and scans a document once when it cannot know.
 */

/** Where the conflicts of a document are: a key of a map or an index of a list → deeper, or a conflict. */
export type ConflictTree = Map<string | number, ConflictTree | typeof CONFLICT>

/** Marks a map key that holds several maps, the winning value among them. */
export const CONFLICT = Symbol('conflict')

export type Handle = ReturnType<typeof A.getBackend>
/** A value as Automerge's low-level API gives it: maps and lists by object id (= their operation id). */
export type FullValue = [datatype: string, value: unknown, opId?: string]

/**
 * The keys (at any depth) of `root` — the document's object, or A.toJS of it, with its
 * object ids — whose winning value is a map and that hold more than one map; null if none.
 */
export function findConflicts(handle: Handle, root: Record<string, unknown>): ConflictTree | null {
  return scanMap(handle, root)
}

function scanMap(handle: Handle, map: Record<string, unknown>): ConflictTree | null {
  let tree: ConflictTree | null = null
  let id: A.ObjID | null | undefined
  for (const key of Object.keys(map)) {
    const value = map[key]
    let found: ConflictTree | typeof CONFLICT | null = null
    if (isStoredMap(value)) {
      id ??= objectId(map)
      found = mapIds(handle.getAll(id, key)).length > 1 ? CONFLICT : scanMap(handle, value)
    } else if (Array.isArray(value)) {
      found = scanList(handle, value)
    }
    if (found !== null) (tree ??= new Map()).set(key, found)
  }
  return tree
}

function scanList(handle: Handle, list: readonly unknown[]): ConflictTree | null {
  let tree: ConflictTree | null = null
  for (let i = 0; i < list.length; i++) {
    const value = list[i]
    const found = isStoredMap(value) ? scanMap(handle, value) : Array.isArray(value) ? scanList(handle, value) : null
    if (found !== null) (tree ??= new Map()).set(i, found)
  }
  return tree
}

/**
 * `root` with every conflict of `tree` replaced by its merged value, in the same form as the
 * document's own values (ImmutableString, Counter…): objects and lists on the way to a
 * conflict are copied, everything else is shared with `root`.
 */
export function mergeConflicts(handle: Handle, root: Record<string, unknown>, tree: ConflictTree): Record<string, unknown> {
  return mergeInto(handle, root, tree) as Record<string, unknown>
}

function mergeInto(handle: Handle, container: Record<string, unknown> | unknown[], tree: ConflictTree): Record<string, unknown> | unknown[] {
  const copy = (Array.isArray(container) ? [...container] : { ...container }) as Record<string | number, unknown>
  for (const [key, sub] of tree) {
    const value = (container as Record<string | number, unknown>)[key]
    if (sub === CONFLICT) copy[key] = mergedValue(handle, handle.getAll(objectId(container), key))
    else copy[key] = mergeInto(handle, value as Record<string, unknown> | unknown[], sub)
  }
  return copy
}

/** The value of a key from all its values (conflicting or not): see the module comment. */
function mergedValue(handle: Handle, values: FullValue[]): unknown {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => compareOpIds(opIdOf(b), opIdOf(a)))
  const top = sorted[0]!
  // A winning map takes in every other map of the key; anything else wins alone.
  return top[0] === 'map' ? mergedMap(handle, mapIds(sorted)) : fromFull(handle, top)
}

/** The maps `ids` (all copies of one map) merged into one plain object. */
function mergedMap(handle: Handle, ids: readonly A.ObjID[]): Record<string, unknown> {
  const keys = new Set<string>()
  for (const id of ids) for (const key of handle.keys(id)) keys.add(key)
  const out: Record<string, unknown> = {}
  for (const key of keys) {
    const values: FullValue[] = []
    for (const id of ids) values.push(...(handle.getAll(id, key) as FullValue[]))
    out[key] = mergedValue(handle, values)
  }
  return out
}

function readList(handle: Handle, id: A.ObjID): unknown[] {
  const out: unknown[] = []
  const length = handle.length(id)
  for (let i = 0; i < length; i++) out.push(fromFull(handle, handle.getWithType(id, i) as FullValue))
  return out
}

/** A value from Automerge's low-level API as the document object holds it. */
function fromFull(handle: Handle, [type, value]: FullValue): unknown {
  switch (type) {
    case 'map':
      // Its own keys may hold conflicts too.
      return mergedMap(handle, [value as A.ObjID])
    case 'list':
      return readList(handle, value as A.ObjID)
    case 'text':
      return handle.text(value as A.ObjID)
    case 'str':
      return new A.ImmutableString(value as string)
    case 'counter':
      return new A.Counter(value as number)
    default:
      return value
  }
}

/** The ids of the maps among a key's values. */
function mapIds(values: readonly FullValue[]): A.ObjID[] {
  const ids: A.ObjID[] = []
  for (const v of values) if (v[0] === 'map') ids.push(v[1] as A.ObjID)
  return ids
}

/** Inside a change: the maps at `key` of the map proxy `map`, conflicting ones included, as proxies. */
export function mapsAt(map: Record<string, unknown>, key: string): Record<string, unknown>[] {
  const conflicts = A.getConflicts(map, key)
  const values: unknown[] = conflicts === undefined ? [map[key]] : Object.values(conflicts)
  return values.filter(isStoredMap)
}

/** Every value (conflicting ones included) at `key` of a map, proxy or document object. */
export function valuesAt(handle: Handle, map: object, key: string): FullValue[] {
  return handle.getAll(objectId(map), key)
}

/** A value's operation id: a map's or list's is its object id, a scalar's comes third. */
export function opIdOf(v: FullValue): string {
  return v[0] === 'map' || v[0] === 'list' || v[0] === 'text' ? (v[1] as string) : v[2]!
}

/** Automerge's order of operation ids "counter@actor": by counter, then by actor. */
export function compareOpIds(a: string, b: string): number {
  const at = a.indexOf('@')
  const bt = b.indexOf('@')
  const diff = Number(a.slice(0, at)) - Number(b.slice(0, bt))
  if (diff !== 0) return diff
  const actorA = a.slice(at + 1)
  const actorB = b.slice(bt + 1)
  return actorA < actorB ? -1 : actorA > actorB ? 1 : 0
}

export function objectId(obj: object): A.ObjID {
  const id = A.getObjectId(obj)
  if (id === null) throw new Error('internal: a document value without its Automerge object id')
  return id
}
