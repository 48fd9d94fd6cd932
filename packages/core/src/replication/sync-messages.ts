import { DEPTH, DIGEST_BYTES, FANOUT, LEAF_COUNT } from '../digest.js'
import { asArray, asBytes, asBytesOrNull, asInt, asRecord, asString, invalid } from './wire.js'

/**
 * Bodies of the anti-entropy messages, with their decoders. Every decoder checks shape,
 * types and bounds before anything is used, and throws ERR_INVALID_MESSAGE otherwise.
 */
export const MAX_NODES_PER_REQUEST = 4096
export const MAX_LEAVES_PER_REQUEST = 256
export const MAX_IDS_PER_EXCHANGE = 512
export const MAX_RANGES_PER_REQUEST = 4096

/** [collection, backend, root digest] */
export type RootEntry = [string, string, Uint8Array]

export function decodeRoots(body: unknown): RootEntry[] {
  const r = asRecord(body, 'roots')
  return asArray(r.r, 'roots', 100_000).map((e, i) => {
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
}

export function decodeNodesRequest(body: unknown): NodesRequest {
  const r = asRecord(body, 'nodes request')
  const l = asInt(r.l, 'level', 0, DEPTH - 1)
  const max = FANOUT ** l - 1
  return { c: asString(r.c, 'collection'), l, n: asArray(r.n, 'nodes', MAX_NODES_PER_REQUEST).map((x) => asInt(x, 'node', 0, max)) }
}

export function decodeNodesResponse(body: unknown, expected: number): Uint8Array[] {
  const d = asArray(asRecord(body, 'nodes response').d, 'digests', MAX_NODES_PER_REQUEST).map((x) => asBytes(x, 'children'))
  if (d.length !== expected || d.some((x) => x.byteLength !== FANOUT * DIGEST_BYTES)) throw invalid('nodes response does not match the request')
  return d
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

/** [id, versionHash] */
export function decodeLeavesResponse(body: unknown): [string, Uint8Array][] {
  return asArray(asRecord(body, 'leaves response').e, 'entries').map((e, i) => {
    const t = asArray(e, `entry ${i}`, 2)
    return [asString(t[0], `entry ${i} id`), asBytes(t[1], `entry ${i} version hash`)]
  })
}

export interface ExchangeRequest {
  c: string
  b: string
  /** [id, requester's version or null when it does not have the entity] */
  e: [string, Uint8Array | null][]
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
  }
}

export interface ExchangeResponse {
  /** [id, delta the requester lacks or null, responder's version or null if it does not have it] */
  e: [string, Uint8Array | null, Uint8Array | null][]
  /** ids not served in this response (size cap): ask again */
  m: string[]
}

export function decodeExchangeResponse(body: unknown): ExchangeResponse {
  const r = asRecord(body, 'exchange response')
  return {
    e: asArray(r.e, 'entries', MAX_IDS_PER_EXCHANGE).map((e, i) => {
      const t = asArray(e, `entry ${i}`, 3)
      return [asString(t[0], `entry ${i} id`), asBytesOrNull(t[1], `entry ${i} delta`), asBytesOrNull(t[2], `entry ${i} version`)]
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
    e: asArray(r.e, 'entries').map((e, i) => {
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
  }
}

export interface RangeResponse {
  /** [id, every change of the entity (a delta from the empty version)] */
  e: [string, Uint8Array][]
  /** what is left to serve (the same shape as a request's r and s); absent when done */
  n?: { r: LeafRange[]; s: number }
}

export function decodeRangeResponse(body: unknown): RangeResponse {
  const r = asRecord(body, 'range response')
  const e = asArray(r.e, 'entries').map((x, i) => {
    const t = asArray(x, `entry ${i}`, 2)
    return [asString(t[0], `entry ${i} id`), asBytes(t[1], `entry ${i} delta`)] as [string, Uint8Array]
  })
  if (r.n === undefined || r.n === null) return { e }
  const n = asRecord(r.n, 'next')
  return { e, n: { r: decodeRanges(n.r, 'next range'), s: asInt(n.s, 'next skip') } }
}
