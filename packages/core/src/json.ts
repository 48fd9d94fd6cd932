import { ConvergentError } from './errors.js'

/** The values an entity can hold: JSON data. */
export type JsonPrimitive = string | number | boolean | null
export type JsonValue = JsonPrimitive | JsonValue[] | JsonObject
export interface JsonObject {
  [key: string]: JsonValue
}

export interface ValueLimits {
  /** Largest JSON-encoded size of one entity value, in bytes. */
  maxValueBytes: number
  /** Deepest nesting of objects and arrays. */
  maxDepth: number
}

export const DEFAULT_VALUE_LIMITS: ValueLimits = { maxValueBytes: 1024 * 1024, maxDepth: 64 }

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v) as unknown
  return proto === Object.prototype || proto === null
}

function describe(v: unknown): string {
  if (typeof v === 'bigint') return 'a BigInt'
  if (typeof v === 'symbol') return 'a symbol'
  if (typeof v === 'function') return 'a function'
  if (v === undefined) return 'undefined'
  if (typeof v === 'number') return String(v)
  if (typeof v === 'object' && v !== null) return `an instance of ${v.constructor?.name ?? 'a class'}`
  return typeof v
}

/**
 * Checks that `value` is an entity value — a plain object of JSON data — and returns a
 * normalised deep copy (object properties that are `undefined` are dropped, as JSON does).
 * Throws ERR_INVALID_VALUE (naming the path of the offending part) or ERR_TOO_LARGE.
 * The copy shares nothing with the caller's object, so later mutations cannot leak in.
 */
export function toEntityValue(value: unknown, limits: ValueLimits = DEFAULT_VALUE_LIMITS): JsonObject {
  if (value === undefined) {
    throw new ConvergentError('ERR_INVALID_VALUE', 'The value is undefined; to remove an entity use delete(id).')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !isPlainObject(value)) {
    throw new ConvergentError(
      'ERR_INVALID_VALUE',
      `An entity value must be a plain object of JSON data, got ${Array.isArray(value) ? 'an array' : describe(value)}. Wrap it, e.g. { value: … }.`,
    )
  }
  const walk: Walk = { bytes: 0, limits, ancestors: [], path: [] }
  return copy(value, walk) as JsonObject
}

/**
 * The state of one toEntityValue: bytes charged so far, and the objects and keys from the
 * root down to the value being copied. The path is a stack of keys (array indexes as
 * numbers) turned into text such as `$.tags[1]` only when an error names it — building it
 * for every nested value was a measurable part of a small write. The ancestors stack finds
 * cycles; it is at most maxDepth deep, and a linear scan of a few entries beats a Set.
 */
interface Walk {
  bytes: number
  readonly limits: ValueLimits
  readonly ancestors: object[]
  readonly path: (string | number)[]
}

function pathOf(walk: Walk): string {
  let out = '$'
  for (const key of walk.path) out += typeof key === 'number' ? `[${key}]` : `.${key}`
  return out
}

function charge(walk: Walk, n: number): void {
  walk.bytes += n
  if (walk.bytes > walk.limits.maxValueBytes) {
    throw new ConvergentError(
      'ERR_TOO_LARGE',
      `The value is larger than maxValueBytes (${walk.limits.maxValueBytes} bytes as JSON). Split it into several entities or raise the limit.`,
    )
  }
}

function copy(v: unknown, walk: Walk): JsonValue {
  switch (typeof v) {
    case 'string':
      if (!v.isWellFormed()) {
        throw new ConvergentError('ERR_INVALID_VALUE', `${pathOf(walk)} is a string with a lone surrogate; it cannot be stored as UTF-8.`)
      }
      charge(walk, Buffer.byteLength(v) + 2)
      return v
    case 'number':
      if (!Number.isFinite(v)) {
        throw new ConvergentError('ERR_INVALID_VALUE', `${pathOf(walk)} is ${v}; only finite numbers are JSON data.`)
      }
      charge(walk, numberBytes(v))
      return v
    case 'boolean':
      charge(walk, 5)
      return v
    case 'object': {
      if (v === null) {
        charge(walk, 4)
        return null
      }
      const { ancestors, path } = walk
      if (ancestors.length >= walk.limits.maxDepth) {
        throw new ConvergentError('ERR_INVALID_VALUE', `${pathOf(walk)} is nested deeper than maxDepth (${walk.limits.maxDepth}).`)
      }
      if (ancestors.includes(v)) {
        throw new ConvergentError('ERR_INVALID_VALUE', `${pathOf(walk)} refers back to one of its ancestors (a cycle); JSON data is a tree.`)
      }
      ancestors.push(v)
      if (Array.isArray(v)) {
        charge(walk, 2)
        const arr: JsonValue[] = []
        for (let i = 0; i < v.length; i++) {
          const item: unknown = v[i]
          if (item === undefined) {
            throw new ConvergentError('ERR_INVALID_VALUE', `${pathOf(walk)}[${i}] is undefined (or a hole); use null in arrays.`)
          }
          path.push(i)
          arr.push(copy(item, walk))
          path.pop()
          charge(walk, 1)
        }
        ancestors.pop()
        return arr
      }
      if (!isPlainObject(v)) {
        throw new ConvergentError(
          'ERR_INVALID_VALUE',
          `${pathOf(walk)} is ${describe(v)}; only plain objects, arrays, strings, finite numbers, booleans and null are JSON data.`,
        )
      }
      charge(walk, 2)
      const obj: JsonObject = {}
      for (const key of Object.keys(v)) {
        const item = (v as Record<string, unknown>)[key]
        if (item === undefined) continue // absent, as in JSON
        if (!key.isWellFormed()) {
          throw new ConvergentError('ERR_INVALID_VALUE', `${pathOf(walk)} has a key with a lone surrogate.`)
        }
        charge(walk, Buffer.byteLength(key) + 4)
        path.push(key)
        const copied = copy(item, walk)
        // A "__proto__" field is data like any other: plain assignment would set the prototype.
        if (key === '__proto__') Object.defineProperty(obj, key, { value: copied, enumerable: true, writable: true, configurable: true })
        else obj[key] = copied
        path.pop()
      }
      if (Object.getOwnPropertySymbols(v).length > 0) {
        throw new ConvergentError('ERR_INVALID_VALUE', `${pathOf(walk)} has symbol keys; JSON data has string keys only.`)
      }
      ancestors.pop()
      return obj
    }
    default:
      throw new ConvergentError('ERR_INVALID_VALUE', `${pathOf(walk)} is ${describe(v)}; only JSON data can be stored.`)
  }
}

/**
 * The length of a finite number written as JSON. A 120,000-number array is about 240 KB of
 * JSON: charging a flat 8 bytes per number refused it as over 1 MiB.
 */
export function numberBytes(v: number): number {
  if (Number.isInteger(v) && v > -1e15 && v < 1e15) {
    let n = v < 0 ? 2 : 1
    for (let a = Math.abs(v); a >= 10; a = Math.floor(a / 10)) n++
    return n
  }
  return String(v).length
}

/** Deep copy of JSON data (values read from a backend are already JSON). */
export function cloneJson<T extends JsonValue>(v: T): T {
  return structuredClone(v)
}

/** Deep equality of JSON data; object key order does not matter. */
export function jsonEqual(a: JsonValue | undefined, b: JsonValue | undefined): boolean {
  if (a === b) return true
  if (a === null || b === null || a === undefined || b === undefined) return false
  if (typeof a !== 'object' || typeof b !== 'object') return false
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false
    return true
  }
  if (Array.isArray(b)) return false
  const ka = Object.keys(a)
  if (ka.length !== Object.keys(b).length) return false
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k) || !jsonEqual(a[k], b[k])) return false
  }
  return true
}

export interface NameLimits {
  /** Largest UTF-8 size of an entity id or collection name, in bytes. */
  maxIdBytes: number
}

export const DEFAULT_NAME_LIMITS: NameLimits = { maxIdBytes: 256 }

/** Checks an entity id or collection name: a non-empty well-formed string of at most maxIdBytes. */
export function checkId(id: unknown, what: 'id' | 'collection name', limits: NameLimits = DEFAULT_NAME_LIMITS): string {
  if (typeof id !== 'string') {
    throw new ConvergentError('ERR_INVALID_ID', `The ${what} must be a string, got ${describe(id)}.`)
  }
  if (id.length === 0) throw new ConvergentError('ERR_INVALID_ID', `The ${what} is empty.`)
  if (!id.isWellFormed()) throw new ConvergentError('ERR_INVALID_ID', `The ${what} has a lone surrogate.`)
  const bytes = Buffer.byteLength(id)
  if (bytes > limits.maxIdBytes) {
    throw new ConvergentError('ERR_INVALID_ID', `The ${what} is ${bytes} bytes of UTF-8; the limit is ${limits.maxIdBytes}.`)
  }
  if (id.includes('\u0000')) throw new ConvergentError('ERR_INVALID_ID', `The ${what} contains a NUL character.`)
  return id
}

/**
 * Why a value received from a peer breaks the value limits — 'tooLarge' (its JSON text would be
 * longer than maxBytes) or 'tooDeep' (it nests deeper than maxDepth) — or undefined if it keeps
 * them. Walks without recursion and stops as soon as a limit is crossed: a hostile value may be
 * arbitrarily deep or large.
 */
export function jsonWithin(value: JsonValue, limits: ValueLimits): 'tooLarge' | 'tooDeep' | undefined {
  let budget = limits.maxValueBytes
  const stack: [JsonValue, number][] = [[value, 0]]
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!
    switch (typeof v) {
      case 'string':
        budget -= Buffer.byteLength(v) + 2
        break
      case 'number':
        budget -= numberBytes(v)
        break
      case 'boolean':
        budget -= 5
        break
      default:
        if (v === null) budget -= 4
        else {
          // Counted as toEntityValue counts: the top-level object is at depth 0, none at maxDepth.
          if (depth >= limits.maxDepth) return 'tooDeep'
          if (Array.isArray(v)) {
            budget -= 2 + v.length
            for (const item of v) stack.push([item, depth + 1])
          } else {
            budget -= 2
            for (const key of Object.keys(v)) {
              budget -= Buffer.byteLength(key) + 4
              stack.push([v[key]!, depth + 1])
            }
          }
        }
    }
    if (budget < 0) return 'tooLarge'
  }
  return undefined
}

/**
 * How many elements two lists share at their start and at their end (the end never overlapping
 * the start), by `same`: what a backend keeps when it reconciles a stored list to a new value.
 */
export function commonEnds<A, B>(current: readonly A[], values: readonly B[], same: (a: A, b: B) => boolean): { start: number; end: number } {
  const shorter = Math.min(current.length, values.length)
  let start = 0
  while (start < shorter && same(current[start]!, values[start]!)) start++
  let end = 0
  while (end < shorter - start && same(current[current.length - 1 - end]!, values[values.length - 1 - end]!)) end++
  return { start, end }
}
