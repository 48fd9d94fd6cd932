import { DEPTH, DIGEST_BYTES, FANOUT, LEAF_COUNT } from '../digest.js'
import { decodeDeltaSlot, type DeltaSlot } from './parts.js'
import { asArray, asBytes, asBytesOrNull, asInt, asRecord, asString, invalid } from './wire.js'

/**
 * Bodies of the anti-entropy messages, with their decoders. Every decoder checks shape,
 * types and bounds before anything is used, and throws ERR_INVALID_MESSAGE otherwise.
 */
export const MAX_NODES_PER_REQUEST = 4096
export const MAX_LEAVES_PER_REQUEST = 256
export const MAX_IDS_PER_EXCHANGE = 512
export const MAX_RANGES_PER_REQUEST = 4096
/** Entries one message may carry: a peer cannot make one message cost unbounded work. */
export const MAX_DELTAS_PER_REQUEST = 1024
export const MAX_RANGE_ENTRIES = 4096
export const MAX_LEAVES_ENTRIES = 65_536
export const MAX_ROOTS_PER_PAGE = 1000

/** [collection, backend, root digest] */
export type RootEntry = [string, string, Uint8Array]

/**
 * Roots request: `r` is empty (older responders read it; they list all their roots at once),
 * `k` says the requester reads pages, `p` is the cursor (the last name of the previous page),
 * `h` the requester's summary of all its roots (see Entities.summary) — equal summaries end the
 * round in one message.
 */
export interface RootsRequest {
  r: RootEntry[]
  k?: 1
  p?: string
  h?: Uint8Array
}

export function decodeRootsRequest(body: unknown): RootsRequest {
  const r = asRecord(body, 'roots request')
  const out: RootsRequest = { r: decodeRootList(r.r ?? [], 100_000) }
  if (r.k === 1) out.k = 1
  if (r.p !== undefined) out.p = asString(r.p, 'cursor')
  if (r.h !== undefined) {
    const h = asBytes(r.h, 'summary')
    if (h.byteLength !== DIGEST_BYTES) throw invalid('summary is not 32 bytes')
    out.h = h
  }
  return out
}

/**
 * Roots response: a page of roots in name order; `n` the cursor of the next page (absent on
 * the last), `s` set when the summaries were equal (no roots follow), `f` the responder's
 * features (FEATURE_PARTS).
 */
export interface RootsResponse {
  r: RootEntry[]
  n?: string
  s?: 1
  f?: number
}

export function decodeRootsResponse(body: unknown, paged: boolean): RootsResponse {
  const r = asRecord(body, 'roots response')
  const out: RootsResponse = { r: decodeRootList(r.r, paged ? MAX_ROOTS_PER_PAGE : 100_000) }
  if (r.n !== undefined && r.n !== null) out.n = asString(r.n, 'next cursor')
  if (r.s === 1) out.s = 1
  if (r.f !== undefined) out.f = asInt(r.f, 'features', 0, 2 ** 31 - 1)
  return out
}

function decodeRootList(v: unknown, max: number): RootEntry[] {
  return asArray(v, 'roots', max).map((e, i) => {
    const t = asArray(e, `root ${i}`, 3)
    const root = asBytes(t[2], `root ${i} digest`)
    if (root.byteLength !== DIGEST_BYTES) throw invalid(`root ${i} digest is ${root.byteLength} bytes`)
    return [asString(t[0], `root ${i} collection`), asString(t[1], `root ${i} backend`), root]
  })
}

export interface NodesRequest {
  c: string
  l: number
  n: number[]
  /** The requester reads sparse children (`s` in the response). Older requesters omit it. */
  z?: boolean
}

export function decodeNodesRequest(body: unknown): NodesRequest {
  const r = asRecord(body, 'nodes request')
  const l = asInt(r.l, 'level', 0, DEPTH - 1)
  const max = FANOUT ** l - 1
  const n = asArray(r.n, 'nodes', MAX_NODES_PER_REQUEST).map((x) => asInt(x, 'node', 0, max))
  return { c: asString(r.c, 'collection'), l, n, ...(r.z === true ? { z: true } : {}) }
}

/**
 * A node's FANOUT child digests, sparse (DigestTree.sparseChildren): [mask, digests]. Deep in
 * the tree most children are empty (1,000 entities leave ~15 of a level-3 node's 16 leaves
 * empty), and the dense form sends them as zeros: 16 × 32 bytes per node.
 */
export type SparseChildren = [number, Uint8Array]

function denseChildren([mask, digests]: SparseChildren): Uint8Array {
  const dense = new Uint8Array(FANOUT * DIGEST_BYTES)
  let at = 0
  for (let k = 0; k < FANOUT; k++) {
    if ((mask & (1 << k)) === 0) continue
    dense.set(digests.subarray(at, at + DIGEST_BYTES), k * DIGEST_BYTES)
    at += DIGEST_BYTES
  }
  return dense
}

/** Each requested node's children, dense (FANOUT × DIGEST_BYTES), from either response form. */
export function decodeNodesResponse(body: unknown, expected: number): Uint8Array[] {
  const r = asRecord(body, 'nodes response')
  let d: Uint8Array[]
  if (r.s !== undefined) {
    const sparse = asArray(r.s, 'sparse digests', MAX_NODES_PER_REQUEST)
    // Counted before anything is expanded: each entry grows to FANOUT × DIGEST_BYTES.
    if (sparse.length !== expected) throw invalid('nodes response does not match the request')
    d = sparse.map((x, i) => {
      const t = asArray(x, `node ${i}`, 2)
      const mask = asInt(t[0], `node ${i} mask`, 0, 2 ** FANOUT - 1)
      const digests = asBytes(t[1], `node ${i} digests`)
      if (digests.byteLength !== popcount(mask) * DIGEST_BYTES) throw invalid(`node ${i}: ${digests.byteLength} digest bytes for mask ${mask}`)
      return denseChildren([mask, digests])
    })
  } else {
    d = asArray(r.d, 'digests', MAX_NODES_PER_REQUEST).map((x) => asBytes(x, 'children'))
  }
  if (d.length !== expected || d.some((x) => x.byteLength !== FANOUT * DIGEST_BYTES)) throw invalid('nodes response does not match the request')
  return d
}

function popcount(n: number): number {
  let c = 0
  for (; n !== 0; n &= n - 1) c++
  return c
}

export interface LeavesRequest {
  c: string
  n: number[]
}

export function decodeLeavesRequest(body: unknown): LeavesRequest {
  const r = asRecord(body, 'leaves request')
  const max = FANOUT ** DEPTH - 1
  return { c: asString(r.c, 'collection'), n: asArray(r.n, 'leaves', MAX_LEAVES_PER_REQUEST).map((x) => asInt(x, 'leaf', 0, max)) }
}

/**
 * Leaves response: `e` [id, versionHash] of every entity in the served leaves; `m` the
 * requested leaves not served (the entry cap was reached): ask for them again.
 */
export interface LeavesResponse {
  e: [string, Uint8Array][]
  m?: number[]
}

export function decodeLeavesResponse(body: unknown): LeavesResponse {
  const r = asRecord(body, 'leaves response')
  const e = asArray(r.e, 'entries', MAX_LEAVES_ENTRIES).map((e, i): [string, Uint8Array] => {
    const t = asArray(e, `entry ${i}`, 2)
    return [asString(t[0], `entry ${i} id`), asBytes(t[1], `entry ${i} version hash`)]
  })
  if (r.m === undefined || r.m === null) return { e }
  return { e, m: asArray(r.m, 'more leaves', MAX_LEAVES_PER_REQUEST).map((x) => asInt(x, 'leaf', 0, FANOUT ** DEPTH - 1)) }
}

export interface ExchangeRequest {
  c: string
  b: string
  /** [id, requester's version or null when it does not have the entity] */
  e: [string, Uint8Array | null][]
  /** The requester fetches deltas in parts (tickets in the response). */
  x?: 1
}

export function decodeExchangeRequest(body: unknown): ExchangeRequest {
  const r = asRecord(body, 'exchange request')
  return {
    c: asString(r.c, 'collection'),
    b: asString(r.b, 'backend'),
    e: asArray(r.e, 'entries', MAX_IDS_PER_EXCHANGE).map((e, i) => {
      const t = asArray(e, `entry ${i}`, 2)
      return [asString(t[0], `entry ${i} id`), asBytesOrNull(t[1], `entry ${i} version`)]
    }),
    ...(r.x === 1 ? { x: 1 as const } : {}),
  }
}

export interface ExchangeResponse {
  /** [id, delta the requester lacks (or a ticket) or null, responder's version or null if it does not have it] */
  e: [string, DeltaSlot | null, Uint8Array | null][]
  /** ids not served in this response (size cap): ask again */
  m: string[]
}

export function decodeExchangeResponse(body: unknown, maxDeltaBytes: number): ExchangeResponse {
  const r = asRecord(body, 'exchange response')
  return {
    e: asArray(r.e, 'entries', MAX_IDS_PER_EXCHANGE).map((e, i) => {
      const t = asArray(e, `entry ${i}`, 3)
      const delta = t[1] === null || t[1] === undefined ? null : decodeDeltaSlot(t[1], `entry ${i} delta`, maxDeltaBytes)
      return [asString(t[0], `entry ${i} id`), delta, asBytesOrNull(t[2], `entry ${i} version`)]
    }),
    m: asArray(r.m ?? [], 'more', MAX_IDS_PER_EXCHANGE).map((x, i) => asString(x, `more ${i}`)),
  }
}

export interface DeltasRequest {
  c: string
  b: string
  e: [string, Uint8Array][]
}

export function decodeDeltasRequest(body: unknown): DeltasRequest {
  const r = asRecord(body, 'deltas request')
  return {
    c: asString(r.c, 'collection'),
    b: asString(r.b, 'backend'),
    e: asArray(r.e, 'entries', MAX_DELTAS_PER_REQUEST).map((e, i) => {
      const t = asArray(e, `entry ${i}`, 2)
      return [asString(t[0], `entry ${i} id`), asBytes(t[1], `entry ${i} delta`)]
    }),
  }
}

/** [fromLeaf, toLeaf], inclusive */
export type LeafRange = [number, number]

export interface RangeRequest {
  c: string
  b: string
  /** leaf ranges, ascending */
  r: LeafRange[]
  /** entities of the first range's first leaf to skip (already served) */
  s: number
  /** The requester fetches deltas in parts (tickets in the response). */
  x?: 1
}

function decodeRanges(v: unknown, what: string): LeafRange[] {
  return asArray(v, what, MAX_RANGES_PER_REQUEST).map((e, i) => {
    const t = asArray(e, `${what} ${i}`, 2)
    const from = asInt(t[0], `${what} ${i} from`, 0, LEAF_COUNT - 1)
    const to = asInt(t[1], `${what} ${i} to`, from, LEAF_COUNT - 1)
    return [from, to]
  })
}

export function decodeRangeRequest(body: unknown): RangeRequest {
  const r = asRecord(body, 'range request')
  return {
    c: asString(r.c, 'collection'),
    b: asString(r.b, 'backend'),
    r: decodeRanges(r.r, 'range'),
    s: r.s === undefined ? 0 : asInt(r.s, 'skip'),
    ...(r.x === 1 ? { x: 1 as const } : {}),
  }
}

export interface RangeResponse {
  /** [id, every change of the entity (a delta from the empty version) or a ticket for it] */
  e: [string, DeltaSlot][]
  /** what is left to serve (the same shape as a request's r and s); absent when done */
  n?: { r: LeafRange[]; s: number }
}

export function decodeRangeResponse(body: unknown, maxDeltaBytes: number): RangeResponse {
  const r = asRecord(body, 'range response')
  const e = asArray(r.e, 'entries', MAX_RANGE_ENTRIES).map((x, i) => {
    const t = asArray(x, `entry ${i}`, 2)
    return [asString(t[0], `entry ${i} id`), decodeDeltaSlot(t[1], `entry ${i} delta`, maxDeltaBytes)] as [string, DeltaSlot]
  })
  if (r.n === undefined || r.n === null) return { e }
  const n = asRecord(r.n, 'next')
  return { e, n: { r: decodeRanges(n.r, 'next range'), s: asInt(n.s, 'next skip') } }
}
