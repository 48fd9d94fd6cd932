/**
 * Translates StoreOps into abstract-level batch operations (one per StoreOp), validating
 * them first: a bad op must reject only the write() it came in, never the whole group
 * commit it would have joined.
 */
import type { AbstractBatchOperation } from 'abstract-level'
import { ConvergentError, LEAF_COUNT, leafOf, type StoreOp } from '@convergent/core'
import { encodeFeedEntry, encodeHead, FEED_LIMITS, HEAD_LIMITS } from './codec.js'
import { checkName, DELTA_INDEX_LIMIT, deltaKey, feedKey, headKey, leafKey, snapshotKey } from './keys.js'
import type { AnyLevel, Sublevels } from './sublevels.js'

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type LevelOp = AbstractBatchOperation<AnyLevel, string, any>

export function toLevelOps(ops: readonly StoreOp[], s: Sublevels): LevelOp[] {
  const out: LevelOp[] = new Array(ops.length)
  for (let i = 0; i < ops.length; i++) out[i] = toLevelOp(ops[i]!, s)
  return out
}

function toLevelOp(op: StoreOp, s: Sublevels): LevelOp {
  switch (op.type) {
    case 'head': {
      checkName('collection', op.collection)
      checkName('id', op.id)
      const { head } = op
      check(head.versionHash instanceof Uint8Array && head.versionHash.byteLength <= HEAD_LIMITS.maxHashBytes, 'head.versionHash must be a Uint8Array of at most 255 bytes')
      check(isIntIn(head.deltaCount, 0, HEAD_LIMITS.maxDeltaCount), 'head.deltaCount must be an integer in [0, 2^32)')
      check(typeof head.backend === 'string' && typeof head.deleted === 'boolean', 'head.backend must be a string and head.deleted a boolean')
      return { type: 'put', sublevel: s.heads, key: headKey(op.collection, leafOf(op.id), op.id), value: encodeHead(head) }
    }
    case 'snapshot':
      checkName('collection', op.collection)
      checkName('id', op.id)
      return { type: 'put', sublevel: s.snapshots, key: snapshotKey(op.collection, op.id), value: copy(op.bytes) }
    case 'delta':
      checkName('collection', op.collection)
      checkName('id', op.id)
      checkIndex(op.index)
      return { type: 'put', sublevel: s.deltas, key: deltaKey(op.collection, op.id, op.index), value: copy(op.bytes) }
    case 'delDelta':
      checkName('collection', op.collection)
      checkName('id', op.id)
      checkIndex(op.index)
      return { type: 'del', sublevel: s.deltas, key: deltaKey(op.collection, op.id, op.index) }
    case 'feed': {
      checkName('collection', op.collection)
      const { entry } = op
      checkName('feed entry id', entry.id)
      check(isIntIn(entry.seq, 1, Number.MAX_SAFE_INTEGER), 'feed entry seq must be a positive safe integer')
      check(typeof entry.time === 'number', 'feed entry time must be a number')
      check(['put', 'delete', 'remote'].includes(entry.kind), "feed entry kind must be 'put', 'delete' or 'remote'")
      check(typeof entry.origin === 'string' && Buffer.byteLength(entry.origin) <= FEED_LIMITS.maxOriginBytes, 'feed entry origin must be a string of at most 65,535 bytes')
      return { type: 'put', sublevel: s.feed, key: feedKey(op.collection, entry.seq), value: encodeFeedEntry(entry) }
    }
    case 'leaf': {
      checkName('collection', op.collection)
      check(isIntIn(op.leaf, 0, LEAF_COUNT - 1), `leaf must be an integer in [0, ${LEAF_COUNT})`)
      const key = leafKey(op.collection, op.leaf)
      // An all-zero leaf is an empty bucket: delete it so leaves() lists only non-empty ones.
      if (isAllZero(checkBytes(op.bytes))) return { type: 'del', sublevel: s.leaves, key }
      return { type: 'put', sublevel: s.leaves, key, value: copy(op.bytes) }
    }
    case 'collection':
      checkName('collection', op.collection)
      check(typeof op.meta?.backend === 'string', 'collection meta.backend must be a string')
      return { type: 'put', sublevel: s.collections, key: op.collection, value: { backend: op.meta.backend } }
    case 'meta':
      check(typeof op.key === 'string', 'meta key must be a string')
      return { type: 'put', sublevel: s.meta, key: op.key, value: copy(op.bytes) }
    default:
      throw invalid(`unknown op type '${(op as { type?: unknown }).type}'`)
  }
}

function checkIndex(index: number): void {
  check(isIntIn(index, 0, DELTA_INDEX_LIMIT - 1), 'delta index must be an integer in [0, 2^32)')
}

function checkBytes(bytes: Uint8Array): Uint8Array {
  check(bytes instanceof Uint8Array, 'bytes must be a Uint8Array')
  return bytes
}

/** The batch keeps its own copy, so the caller may reuse its buffer once write() returns. */
function copy(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(checkBytes(bytes)) // not .slice(): on a Buffer that is a view
}

function isAllZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false
  return true
}

function isIntIn(n: number, min: number, max: number): boolean {
  return Number.isInteger(n) && n >= min && n <= max
}

function check(ok: boolean, message: string): void {
  if (!ok) throw invalid(message)
}

function invalid(message: string): ConvergentError {
  return new ConvergentError('ERR_INVALID_ARGUMENT', `Invalid store op: ${message}.`)
}
