/**
 * Key layout. Every key is a UTF-8 string inside its sublevel; parts are joined with NUL,
 * which ids and collection names never contain, so a prefix such as `collection NUL id NUL`
 * can never match another entity's keys. Numbers are fixed-width so byte order is numeric
 * order:
 *
 *   heads      collection NUL leaf(4 hex) NUL id   → a leaf range is one contiguous range
 *   snapshots  collection NUL id
 *   deltas     collection NUL id NUL index(10 digits)
 *   feed       collection NUL seq(16 digits)   (a page of entries: its LAST entry's seq)
 *   leaves     collection NUL leaf(4 hex)
 *   collections collection
 *   meta       key
 *   quarantine time(16 digits) NUL keyspace NUL key   → records moved aside, oldest first
 *   store      'format' | 'migration' | 'batch' | 'drop' NUL collection | 'feedfloor' NUL collection
 *              (the store's own records)
 */
import { ConvergentError, LEAF_COUNT } from '@convergent/core'

const SEP = '\u0000'
/** The character right after SEP: `prefix + SEP` … `prefix + END` bounds everything under prefix. */
const END = '\u0001'

const INDEX_DIGITS = 10 // delta indexes < 2^32
const SEQ_DIGITS = 16 // every safe integer (< 2^53 ≈ 9.007e15) fits

export interface KeyRange {
  gte: string
  lt: string
}

export function leafHex(leaf: number): string {
  return leaf.toString(16).padStart(4, '0')
}

function pad(n: number, digits: number): string {
  return n.toString().padStart(digits, '0')
}

export function headKey(collection: string, leaf: number, id: string): string {
  return collection + SEP + leafHex(leaf) + SEP + id
}

/** Heads whose leaf is in [fromLeaf, toLeaf]; the whole collection without a range. */
export function headRange(collection: string, range?: { fromLeaf: number; toLeaf: number }): KeyRange | undefined {
  if (range === undefined) return collectionRange(collection)
  const from = Math.max(0, Math.ceil(range.fromLeaf))
  const to = Math.min(LEAF_COUNT - 1, Math.floor(range.toLeaf))
  if (!(from <= to)) return undefined // empty (also catches NaN)
  // Every key of leaf `to` is `… to NUL id` with a non-empty id, so it sorts below `… to END`.
  return { gte: collection + SEP + leafHex(from) + SEP, lt: collection + SEP + leafHex(to) + END }
}

/** The id part of a head key (after `collection NUL leaf NUL`). */
export function idOfHeadKey(collection: string, key: string): string {
  return key.slice(collection.length + 6)
}

export function snapshotKey(collection: string, id: string): string {
  return collection + SEP + id
}

export function deltaKey(collection: string, id: string, index: number): string {
  return collection + SEP + id + SEP + pad(index, INDEX_DIGITS)
}

export function feedKey(collection: string, seq: number): string {
  return collection + SEP + pad(seq, SEQ_DIGITS)
}

/** Feed entries with seq > since. */
export function feedRange(collection: string, since: number): KeyRange {
  const all = collectionRange(collection)
  if (!(since >= 1)) return all // 0, negative or NaN: everything
  if (since >= Number.MAX_SAFE_INTEGER) return { gte: all.lt, lt: all.lt } // nothing
  return { gte: feedKey(collection, Math.floor(since) + 1), lt: all.lt }
}

export function seqOfFeedKey(collection: string, key: string): number {
  return Number(key.slice(collection.length + 1))
}

export function leafKey(collection: string, leaf: number): string {
  return collection + SEP + leafHex(leaf)
}

export function leafOfLeafKey(collection: string, key: string): number {
  return parseInt(key.slice(collection.length + 1), 16)
}

/** Every key of one collection in a sublevel keyed `collection NUL …`. */
export function collectionRange(collection: string): KeyRange {
  return { gte: collection + SEP, lt: collection + END }
}

export const DELTA_INDEX_LIMIT = 2 ** 32

export function quarantineKey(time: number, keyspace: string, key: string): string {
  return pad(Math.max(0, Math.floor(time)), SEQ_DIGITS) + SEP + keyspace + SEP + key
}

/** The store keyspace's keys: its format version, a migration's progress, drops under way. */
export const FORMAT_KEY = 'format'
export const MIGRATION_KEY = 'migration'
/** The number of the last group-commit batch (see acked.ts). */
export const BATCH_KEY = 'batch'
const DROP = 'drop' + SEP

export function dropMarkerKey(collection: string): string {
  return DROP + collection
}

const FEED_FLOOR = 'feedfloor' + SEP

/**
 * The highest feed seq quarantine() moved aside in a collection: lastSeq never goes below it,
 * so seqs are not handed out twice after the last feed record was found damaged.
 */
export function feedFloorKey(collection: string): string {
  return FEED_FLOOR + collection
}

/** Every drop marker. */
export const DROP_MARKERS: KeyRange = { gte: DROP, lt: 'drop' + END }

export function collectionOfDropMarker(key: string): string {
  return key.slice(DROP.length)
}

/** Ids and collection names are joined with NUL in keys, so they must not contain one. */
export function checkName(what: string, name: string): void {
  if (typeof name !== 'string' || name.length === 0 || name.includes(SEP)) {
    throw new ConvergentError('ERR_INVALID_ID', `The ${what} must be a non-empty string without NUL characters.`)
  }
}
