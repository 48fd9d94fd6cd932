import { DEPTH, DIGEST_BYTES, FANOUT, LEAF_COUNT } from '../../digest.js'
import { encodeMessage, MessageType } from './envelope.js'
import { asArray, asBytes, asBytesOrNull, asDeltaEntries, asHash, asInt, asRecord, asString, invalid } from './fields.js'
import { decodeHeadTable, tableLeaves, unpackHeads, type HeadTable } from './head-table.js'
import { decodeSlot, encodeSlot, type DeltaSlot } from './parts.js'

/**
 * The anti-entropy protocol's bodies (see sync-client.ts for the round they make up). Each has
 * a typed form with readable names, an encoder and a decoder that checks shape and bounds.
 */

/** Bounds on what one message carries: a peer cannot make one message cost unbounded work. */
export const MAX_NODES_PER_REQUEST = 4096
export const MAX_LEAVES_PER_REQUEST = 256
export const MAX_IDS_PER_EXCHANGE = 512
export const MAX_RANGES_PER_REQUEST = 4096
export const MAX_DELTAS_PER_REQUEST = 1024
export const MAX_RANGE_ENTRIES = 4096
export const MAX_LEAVES_ENTRIES = 65_536
export const MAX_ROOTS_PER_PAGE = 1000
/** Collections a responder says it refuses (dropCollection), listed on the first roots page. */
export const MAX_REFUSED_NAMES = 1000
/** Roots an older responder (no pages) may list in one message. */
const MAX_ROOTS = 100_000

/** Feature bits a responder announces in its roots response. */
export const FEATURE_PARTS = 1
/** The peer reads deltas headed with signed heads (replication/heads.ts). */
export const FEATURE_HEADS = 2
/** The peer reads batches whose heads come in a table, each statement once (head-table.ts). */
export const FEATURE_HEAD_TABLES = 4

// --- roots -------------------------------------------------------------------------------

/** [collection, backend, root digest] */
export type RootEntry = [collection: string, backend: string, root: Uint8Array]

/**
 * RootsRequest: starts a round. `summary` — a digest of all the requester's roots — lets an
 * in-sync responder answer in one small message; `cursor` asks for the page after that name.
 * Wire { r: [] (older responders read it), k: 1 (reads pages), p?: cursor, h?: summary }.
 */
export interface RootsRequest {
  cursor?: string
  summary?: Uint8Array
  /** The requester's summary of the subject keys and tombstones it would share with the responder (key-exchange.ts). */
  keys?: Uint8Array
  /** The requester reads headed deltas (wire v: 1; older requesters omit it). */
  heads?: boolean
  /** … and head tables (wire z: 1; older requesters omit it). */
  headTables?: boolean
}

export function encodeRootsRequest(m: RootsRequest): Uint8Array {
  return encodeMessage(MessageType.RootsRequest, {
    r: [],
    k: 1,
    ...(m.cursor !== undefined ? { p: m.cursor } : {}),
    ...(m.summary !== undefined ? { h: m.summary } : {}),
    ...(m.keys !== undefined ? { y: m.keys } : {}),
    ...(m.heads === true ? { v: 1 } : {}),
    ...(m.heads === true && m.headTables === true ? { z: 1 } : {}),
  })
}

/** The request, and whether the requester reads pages (older ones get every root at once). */
export function decodeRootsRequest(body: unknown): RootsRequest & { paged: boolean } {
  const r = asRecord(body, 'roots request')
  decodeRootList(r.r ?? [], MAX_ROOTS) // checked, not used: the requester compares
  return {
    paged: r.k === 1,
    ...(r.p !== undefined ? { cursor: asString(r.p, 'cursor') } : {}),
    ...(r.h !== undefined ? { summary: asHash(r.h, 'summary') } : {}),
    ...(r.y !== undefined ? { keys: asHash(r.y, 'keys summary') } : {}),
    ...(r.v === 1 ? { heads: true } : {}),
    ...(r.v === 1 && r.z === 1 ? { headTables: true } : {}),
  }
}

/**
 * RootsResponse: a page of roots in name order; `next` is the cursor of the following page
 * (absent on the last), `same` says the summaries were equal (no roots follow), `features`
 * what the responder speaks (FEATURE_PARTS), `refused` the collections it dropped and does not
 * take back (so the requester does not send them every round; older responders omit it).
 * Wire { r: roots, n?: next, s?: 1, f?: features, x?: refused, y?: 1 (keys differ) }.
 */
export interface RootsResponse {
  roots: RootEntry[]
  next?: string
  same?: boolean
  features: number
  refused?: string[]
  /** The requester's keys summary differs from the responder's: a key exchange follows (wire y: 1). */
  keysDiffer?: boolean
}

export function encodeRootsResponse(m: RootsResponse): Uint8Array {
  return encodeMessage(MessageType.RootsResponse, {
    r: m.roots,
    ...(m.next !== undefined ? { n: m.next } : {}),
    ...(m.same === true ? { s: 1 } : {}),
    f: m.features,
    ...(m.refused !== undefined && m.refused.length > 0 ? { x: m.refused } : {}),
    ...(m.keysDiffer === true ? { y: 1 } : {}),
  })
}

export function decodeRootsResponse(body: unknown): RootsResponse {
  const r = asRecord(body, 'roots response')
  return {
    roots: decodeRootList(r.r, MAX_ROOTS),
    ...(r.n !== undefined && r.n !== null ? { next: asString(r.n, 'next cursor') } : {}),
    ...(r.s === 1 ? { same: true } : {}),
    features: r.f === undefined ? 0 : asInt(r.f, 'features', 0, 2 ** 31 - 1),
    ...(r.x !== undefined ? { refused: asArray(r.x, 'refused', MAX_REFUSED_NAMES).map((n, i) => asString(n, `refused ${i}`)) } : {}),
    ...(r.y === 1 ? { keysDiffer: true } : {}),
  }
}

function decodeRootList(v: unknown, max: number): RootEntry[] {
  return asArray(v, 'roots', max).map((e, i) => {
    const t = asArray(e, `root ${i}`, 3)
    const root = asBytes(t[2], `root ${i} digest`)
    if (root.byteLength !== DIGEST_BYTES) throw invalid(`root ${i} digest is ${root.byteLength} bytes`)
    return [asString(t[0], `root ${i} collection`), asString(t[1], `root ${i} backend`), root]
  })
}

// --- digest nodes ------------------------------------------------------------------------

/** NodesRequest: the children of some nodes at one level. Wire { c, l: level, n: nodes, z: reads sparse }. */
export interface NodesRequest {
  collection: string
  level: number
  nodes: number[]
  /** The requester reads sparse children (older requesters omit it). */
  sparse: boolean
}

export function encodeNodesRequest(m: NodesRequest): Uint8Array {
  return encodeMessage(MessageType.NodesRequest, { c: m.collection, l: m.level, n: m.nodes, ...(m.sparse ? { z: true } : {}) })
}

export function decodeNodesRequest(body: unknown): NodesRequest {
  const r = asRecord(body, 'nodes request')
  const level = asInt(r.l, 'level', 0, DEPTH - 1)
  const max = FANOUT ** level - 1
  return {
    collection: asString(r.c, 'collection'),
    level,
    nodes: asArray(r.n, 'nodes', MAX_NODES_PER_REQUEST).map((x) => asInt(x, 'node', 0, max)),
    sparse: r.z === true,
  }
}

/**
 * A node's FANOUT child digests, sparse (DigestTree.sparseChildren): [mask, digests]. Deep in
 * the tree most children are empty, and the dense form sends them as zeros.
 */
export type SparseChildren = [mask: number, digests: Uint8Array]

/** NodesResponse: wire { s: sparse children per node } or, for older requesters, { d: dense children }. */
export function encodeNodesResponse(children: { sparse: SparseChildren[] } | { dense: Uint8Array[] }): Uint8Array {
  return encodeMessage(MessageType.NodesResponse, 'sparse' in children ? { s: children.sparse } : { d: children.dense })
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

function popcount(n: number): number {
  let c = 0
  for (; n !== 0; n &= n - 1) c++
  return c
}

// --- leaves ------------------------------------------------------------------------------

/** LeavesRequest: (id, version hash) of every entity in some leaves. Wire { c, n: leaves }. */
export interface LeavesRequest {
  collection: string
  leaves: number[]
}

export function encodeLeavesRequest(m: LeavesRequest): Uint8Array {
  return encodeMessage(MessageType.LeavesRequest, { c: m.collection, n: m.leaves })
}

export function decodeLeavesRequest(body: unknown): LeavesRequest {
  const r = asRecord(body, 'leaves request')
  const max = FANOUT ** DEPTH - 1
  return { collection: asString(r.c, 'collection'), leaves: asArray(r.n, 'leaves', MAX_LEAVES_PER_REQUEST).map((x) => asInt(x, 'leaf', 0, max)) }
}

/**
 * LeavesResponse: [id, version hash] of the entities in the served leaves; `more` the leaves
 * not served (the entry cap was reached): ask again. Wire { e: entries, m?: more }.
 */
export interface LeavesResponse {
  entries: [id: string, versionHash: Uint8Array][]
  more?: number[]
}

export function encodeLeavesResponse(m: LeavesResponse): Uint8Array {
  return encodeMessage(MessageType.LeavesResponse, { e: m.entries, ...(m.more !== undefined ? { m: m.more } : {}) })
}

export function decodeLeavesResponse(body: unknown): LeavesResponse {
  const r = asRecord(body, 'leaves response')
  const entries = asArray(r.e, 'entries', MAX_LEAVES_ENTRIES).map((e, i): [string, Uint8Array] => {
    const t = asArray(e, `entry ${i}`, 2)
    return [asString(t[0], `entry ${i} id`), asBytes(t[1], `entry ${i} version hash`)]
  })
  if (r.m === undefined || r.m === null) return { entries }
  return { entries, more: asArray(r.m, 'more leaves', MAX_LEAVES_PER_REQUEST).map((x) => asInt(x, 'leaf', 0, FANOUT ** DEPTH - 1)) }
}

// --- exchange ----------------------------------------------------------------------------

/**
 * ExchangeRequest: the requester's versions of some entities (null: it does not have it); the
 * responder answers with what the requester lacks and its own versions.
 * Wire { c, b: backend, e: [[id, version or null], …], x?: 1 (the requester fetches parts) }.
 */
export interface ExchangeRequest {
  collection: string
  backend: string
  entries: [id: string, version: Uint8Array | null][]
  parts: boolean
}

export function encodeExchangeRequest(m: ExchangeRequest): Uint8Array {
  return encodeMessage(MessageType.ExchangeRequest, { c: m.collection, b: m.backend, e: m.entries, ...(m.parts ? { x: 1 } : {}) })
}

export function decodeExchangeRequest(body: unknown): ExchangeRequest {
  const r = asRecord(body, 'exchange request')
  return {
    collection: asString(r.c, 'collection'),
    backend: asString(r.b, 'backend'),
    entries: asArray(r.e, 'entries', MAX_IDS_PER_EXCHANGE).map((e, i) => {
      const t = asArray(e, `entry ${i}`, 2)
      return [asString(t[0], `entry ${i} id`), asBytesOrNull(t[1], `entry ${i} version`)]
    }),
    parts: r.x === 1,
  }
}

/**
 * ExchangeResponse: per entity, the delta the requester lacks (or a ticket; null: nothing or
 * busy) and the responder's version (null: it does not have it); `more` the ids not served
 * (size cap): ask again. Wire { e: [[id, slot or null, version or null], …], m: more }.
 */
export interface ExchangeResponse {
  entries: [id: string, delta: DeltaSlot | null, version: Uint8Array | null][]
  more: string[]
}

export function encodeExchangeResponse(m: ExchangeResponse): Uint8Array {
  return encodeMessage(MessageType.ExchangeResponse, {
    e: m.entries.map(([id, slot, version]) => [id, slot === null ? null : encodeSlot(slot), version]),
    m: m.more,
  })
}

export function decodeExchangeResponse(body: unknown): ExchangeResponse {
  const r = asRecord(body, 'exchange response')
  return {
    entries: asArray(r.e, 'entries', MAX_IDS_PER_EXCHANGE).map((e, i) => {
      const t = asArray(e, `entry ${i}`, 3)
      const delta = t[1] === null || t[1] === undefined ? null : decodeSlot(t[1], `entry ${i} delta`)
      return [asString(t[0], `entry ${i} id`), delta, asBytesOrNull(t[2], `entry ${i} version`)]
    }),
    more: asArray(r.m ?? [], 'more', MAX_IDS_PER_EXCHANGE).map((x, i) => asString(x, `more ${i}`)),
  }
}

// --- deltas ------------------------------------------------------------------------------

/**
 * DeltasRequest: deltas the responder lacks; answered with Ack. Wire { c, b, e: [[id, delta], …],
 * t?: head table }. Decoded with the table's heads back in their deltas.
 */
export interface DeltasRequest {
  collection: string
  backend: string
  entries: [id: string, delta: Uint8Array][]
  table?: HeadTable
}

export function encodeDeltasRequest(m: DeltasRequest): Uint8Array {
  return encodeMessage(MessageType.DeltasRequest, { c: m.collection, b: m.backend, e: m.entries, ...(m.table?.length ? { t: m.table } : {}) })
}

/**
 * `admit` is told how many entries the request holds, counting each head its table rebuilds as
 * one (a receiver's entry rate), before any is rebuilt; it throws to refuse them.
 */
export function decodeDeltasRequest(body: unknown, admit?: (entries: number) => void): DeltasRequest {
  const r = asRecord(body, 'deltas request')
  const collection = asString(r.c, 'collection')
  const backend = asString(r.b, 'backend')
  const entries = asDeltaEntries(r.e, MAX_DELTAS_PER_REQUEST)
  const table = r.t === undefined ? undefined : decodeHeadTable(r.t, entries.length)
  admit?.(entries.length + (table === undefined ? 0 : tableLeaves(table)))
  return { collection, backend, entries: table === undefined ? entries : unpackHeads<Uint8Array>(entries, table) }
}

/** Ack: how many of the deltas were applied. Wire { n }. */
export function encodeAck(applied: number): Uint8Array {
  return encodeMessage(MessageType.Ack, { n: applied })
}

// --- ranges (a late joiner) ----------------------------------------------------------------

/** [fromLeaf, toLeaf], inclusive */
export type LeafRange = [from: number, to: number]

/**
 * RangeRequest: every entity in some leaf ranges as full deltas — for subtrees the requester
 * holds nothing of, so no per-entity versions or ids travel first. `skip`: entities of the
 * first range's first leaf already served.
 * Wire { c, b, r: ranges (ascending), s: skip, x?: 1 (the requester fetches parts) }.
 */
export interface RangeRequest {
  collection: string
  backend: string
  ranges: LeafRange[]
  skip: number
  parts: boolean
}

export function encodeRangeRequest(m: RangeRequest): Uint8Array {
  return encodeMessage(MessageType.RangeRequest, { c: m.collection, b: m.backend, r: m.ranges, s: m.skip, ...(m.parts ? { x: 1 } : {}) })
}

export function decodeRangeRequest(body: unknown): RangeRequest {
  const r = asRecord(body, 'range request')
  return {
    collection: asString(r.c, 'collection'),
    backend: asString(r.b, 'backend'),
    ranges: decodeRanges(r.r, 'range'),
    skip: r.s === undefined ? 0 : asInt(r.s, 'skip'),
    parts: r.x === 1,
  }
}

/** Where a range response left off: what to ask for next. */
export interface RangeCursor {
  ranges: LeafRange[]
  skip: number
}

/**
 * RangeResponse: [id, every change of the entity (or a ticket for it)]; `next` what is left
 * to serve, absent when done. Wire { e: entries, n?: { r: ranges, s: skip }, t?: head table }.
 * Decoded with the table's heads back in their deltas.
 */
export interface RangeResponse {
  entries: [id: string, delta: DeltaSlot][]
  next?: RangeCursor
  table?: HeadTable
}

export function encodeRangeResponse(m: RangeResponse): Uint8Array {
  return encodeMessage(MessageType.RangeResponse, {
    e: m.entries.map(([id, slot]) => [id, encodeSlot(slot)]),
    ...(m.next !== undefined ? { n: { r: m.next.ranges, s: m.next.skip } } : {}),
    ...(m.table?.length ? { t: m.table } : {}),
  })
}

export function decodeRangeResponse(body: unknown): RangeResponse {
  const r = asRecord(body, 'range response')
  const listed = asArray(r.e, 'entries', MAX_RANGE_ENTRIES).map((x, i): [string, DeltaSlot] => {
    const t = asArray(x, `entry ${i}`, 2)
    return [asString(t[0], `entry ${i} id`), decodeSlot(t[1], `entry ${i} delta`)]
  })
  const entries = r.t === undefined ? listed : unpackHeads(listed, decodeHeadTable(r.t, listed.length))
  if (r.n === undefined || r.n === null) return { entries }
  const n = asRecord(r.n, 'next')
  return { entries, next: { ranges: decodeRanges(n.r, 'next range'), skip: asInt(n.s, 'next skip') } }
}

function decodeRanges(v: unknown, what: string): LeafRange[] {
  return asArray(v, what, MAX_RANGES_PER_REQUEST).map((e, i) => {
    const t = asArray(e, `${what} ${i}`, 2)
    const from = asInt(t[0], `${what} ${i} from`, 0, LEAF_COUNT - 1)
    const to = asInt(t[1], `${what} ${i} to`, from, LEAF_COUNT - 1)
    return [from, to]
  })
}
