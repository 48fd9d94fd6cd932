/**
 * Translates StoreOps into batch operations on the ROOT database (one per StoreOp),
 * validating them first: a bad op must reject only the write() it came in, never the whole
 * group commit it would have joined.
 *
 * Keys are given already prefixed with their sublevel's prefix and values already encoded,
 * so the bytes on disk are exactly what the sublevels (which the reads still use) would
 * write. Why not sublevel ops: abstract-level re-encodes and re-prefixes every sublevel op
 * of a batch — with the array batch classic-level then read back from C++ op by op, about a
 * third of a small write's cost. See writeBatch() in level-store.ts.
 *
 * Every put's value is a checksummed record (record.ts): the body is written behind the room
 * its header needs, and the header sealed over the full key — one checksum per op.
 */
import { ConvergentError, LEAF_COUNT, leafOf, type FeedEntry, type StoreOp } from '@convergent/core'
import { encodeFeedEntry, encodeFeedPage, encodeHead, encodeJson, FEED_LIMITS, FEED_PAGE_BYTES, FEED_PAGE_MAX, HEAD_LIMITS } from './codec.js'
import { HEADER_BYTES, type RecordSealer } from './record.js'
import { checkName, DELTA_INDEX_LIMIT, deltaKey, feedKey, headKey, leafKey, snapshotKey } from './keys.js'
import type { Sublevels } from './sublevels.js'

export type LevelOp = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string }

/** A put of a sealed record holding a copy of `body` (the caller may reuse its buffer once write() returns). */
export function putRecord(key: string, body: Uint8Array, sealer: RecordSealer): LevelOp {
  return { type: 'put', key, value: sealer.sealCopy(key, body) }
}

/** Each sublevel's key prefix (e.g. '!heads!'): what it puts in front of its keys on disk. */
export type Prefixes = Record<keyof Sublevels, string>

export function prefixesOf(s: Sublevels): Prefixes {
  const out = {} as Record<string, string>
  for (const [name, sublevel] of Object.entries(s) as [string, { prefix: string }][]) out[name] = sublevel.prefix
  return out as Prefixes
}

/**
 * The batch operations of `ops`. The feed entries of one collection whose seqs follow each other
 * are written as pages (codec.ts: one record, so one checksum or seal and one LevelDB op, per run
 * of up to FEED_PAGE_MAX entries or FEED_PAGE_BYTES); `paged` says whether any page was made. A
 * seq given twice keeps the later entry, as the later put of a key would (a seq must not be
 * written again by a LATER write: see Store).
 */
export function toLevelOps(ops: readonly StoreOp[], s: Prefixes, sealer: RecordSealer): LevelOp[] & { paged?: boolean } {
  const out: LevelOp[] & { paged?: boolean } = []
  const feeds = new Map<string, Map<number, FeedEntry>>()
  for (const op of ops) {
    if (op.type === 'feed') {
      checkFeedOp(op)
      let bySeq = feeds.get(op.collection)
      if (bySeq === undefined) feeds.set(op.collection, (bySeq = new Map<number, FeedEntry>()))
      bySeq.set(op.entry.seq, op.entry)
    } else if (op.type === 'delEntity') {
      checkName('collection', op.collection)
      checkName('id', op.id)
      // Its head and snapshot go; its deltas become unreachable (the head counted them).
      out.push({ type: 'del', key: s.heads + headKey(op.collection, leafOf(op.id), op.id) })
      out.push({ type: 'del', key: s.snapshots + snapshotKey(op.collection, op.id) })
    } else {
      out.push(toLevelOp(op, s, sealer))
    }
  }
  for (const [collection, bySeq] of feeds) {
    let bodies: Uint8Array[] = []
    let bytes = 0
    let last = 0 // the seq of the run's last entry
    const flush = (): void => {
      const key = s.feed + feedKey(collection, last)
      if (bodies.length === 1) out.push({ type: 'put', key, value: sealer.sealCopy(key, bodies[0]!) })
      else {
        out.push({ type: 'put', key, value: sealer.seal(key, encodeFeedPage(bodies, HEADER_BYTES)) })
        out.paged = true
      }
      bodies = []
      bytes = 0
    }
    for (const e of [...bySeq.values()].sort((x, y) => x.seq - y.seq)) {
      const body = encodeFeedEntry(e)
      // A run ends at a gap in the seqs, or at the page's entry or byte limit.
      if (bodies.length > 0 && (e.seq !== last + 1 || bodies.length === FEED_PAGE_MAX || bytes + body.byteLength > FEED_PAGE_BYTES)) flush()
      bodies.push(body)
      bytes += body.byteLength
      last = e.seq
    }
    if (bodies.length > 0) flush()
  }
  return out
}

function checkFeedOp(op: Extract<StoreOp, { type: 'feed' }>): void {
  checkName('collection', op.collection)
  const { entry } = op
  checkName('feed entry id', entry.id)
  check(isIntIn(entry.seq, 1, Number.MAX_SAFE_INTEGER), 'feed entry seq must be a positive safe integer')
  check(typeof entry.time === 'number', 'feed entry time must be a number')
  check(entry.kind === 'put' || entry.kind === 'delete' || entry.kind === 'remote', "feed entry kind must be 'put', 'delete' or 'remote'")
  // (A string of n UTF-16 units has at most 3n UTF-8 bytes: most need no counting.)
  check(
    typeof entry.origin === 'string' &&
      (entry.origin.length * 3 <= FEED_LIMITS.maxOriginBytes || Buffer.byteLength(entry.origin) <= FEED_LIMITS.maxOriginBytes),
    'feed entry origin must be a string of at most 65,535 bytes',
  )
  check(
    entry.proof === undefined || (typeof entry.proof === 'string' && Buffer.byteLength(entry.proof) <= FEED_LIMITS.maxProofBytes),
    'feed entry proof must be a string of at most 255 bytes',
  )
}

function toLevelOp(op: Exclude<StoreOp, { type: 'delEntity' | 'feed' }>, s: Prefixes, sealer: RecordSealer): LevelOp {
  switch (op.type) {
    case 'head': {
      checkName('collection', op.collection)
      checkName('id', op.id)
      const { head } = op
      check(
        head.versionHash instanceof Uint8Array && head.versionHash.byteLength <= HEAD_LIMITS.maxHashBytes,
        'head.versionHash must be a Uint8Array of at most 255 bytes',
      )
      check(isIntIn(head.deltaCount, 0, HEAD_LIMITS.maxDeltaCount), 'head.deltaCount must be an integer in [0, 2^32)')
      check(typeof head.backend === 'string' && typeof head.deleted === 'boolean', 'head.backend must be a string and head.deleted a boolean')
      const key = s.heads + headKey(op.collection, leafOf(op.id), op.id)
      return { type: 'put', key, value: sealer.seal(key, encodeHead(head, HEADER_BYTES)) }
    }
    case 'snapshot':
      checkName('collection', op.collection)
      checkName('id', op.id)
      return putRecord(s.snapshots + snapshotKey(op.collection, op.id), checkBytes(op.bytes), sealer)
    case 'delta':
      checkName('collection', op.collection)
      checkName('id', op.id)
      checkIndex(op.index)
      return putRecord(s.deltas + deltaKey(op.collection, op.id, op.index), checkBytes(op.bytes), sealer)
    case 'delDelta':
      checkName('collection', op.collection)
      checkName('id', op.id)
      checkIndex(op.index)
      return { type: 'del', key: s.deltas + deltaKey(op.collection, op.id, op.index) }
    case 'leaf': {
      checkName('collection', op.collection)
      check(isIntIn(op.leaf, 0, LEAF_COUNT - 1), `leaf must be an integer in [0, ${LEAF_COUNT})`)
      const key = s.leaves + leafKey(op.collection, op.leaf)
      // An all-zero leaf is an empty bucket: delete it so leaves() lists only non-empty ones.
      if (isAllZero(checkBytes(op.bytes))) return { type: 'del', key }
      return putRecord(key, op.bytes, sealer)
    }
    case 'collection':
      checkName('collection', op.collection)
      check(typeof op.meta?.backend === 'string', 'collection meta.backend must be a string')
      return putRecord(s.collections + op.collection, encodeJson({ backend: op.meta.backend }), sealer)
    case 'meta':
      check(typeof op.key === 'string', 'meta key must be a string')
      return putRecord(s.meta + op.key, checkBytes(op.bytes), sealer)
    case 'delMeta':
      check(typeof op.key === 'string', 'meta key must be a string')
      return { type: 'del', key: s.meta + op.key }
    default:
      throw invalid(`unknown op type '${String((op as { type?: unknown }).type)}'`)
  }
}

function checkIndex(index: number): void {
  check(isIntIn(index, 0, DELTA_INDEX_LIMIT - 1), 'delta index must be an integer in [0, 2^32)')
}

function checkBytes(bytes: Uint8Array): Uint8Array {
  check(bytes instanceof Uint8Array, 'bytes must be a Uint8Array')
  return bytes
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
