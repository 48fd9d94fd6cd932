import { encode, decode } from 'cborg'
import { ConvergentError } from '../errors.js'

/**
 * The wire format of every message Convergent sends: two header bytes — a magic byte and a
 * format version — then a type byte, then a CBOR body. A receiver rejects any other magic or
 * version with ERR_INVALID_MESSAGE instead of guessing, so a future format can coexist.
 */
export const WIRE_MAGIC = 0xc7
export const WIRE_VERSION = 1

export const MessageType = {
  /** gossip: deltas of one collection, coalesced per entity. */
  Push: 1,
  /** sync: per-collection digest roots. */
  RootsRequest: 10,
  RootsResponse: 11,
  /** sync: children digests of differing tree nodes. */
  NodesRequest: 12,
  NodesResponse: 13,
  /** sync: (id, versionHash) of every entity in some leaves. */
  LeavesRequest: 14,
  LeavesResponse: 15,
  /** sync: requester's versions of entities → responder's missing deltas and versions. */
  ExchangeRequest: 16,
  ExchangeResponse: 17,
  /** sync: deltas the responder lacks. */
  DeltasRequest: 18,
  Ack: 19,
  Error: 20,
  /** bounded counters: ask a peer for rights (requester's version of the counter attached). */
  RightsRequest: 21,
  /** how many rights were granted, and the delta that carries the transfer. */
  RightsResponse: 22,
  /**
   * sync: every entity in some leaf ranges, as full deltas — for subtrees the requester holds
   * nothing of (a late joiner), so no per-entity versions or ids travel first.
   */
  RangeRequest: 23,
  RangeResponse: 24,
  /** sync: a part of a delta the responder handed out as a ticket (see parts.ts). */
  FetchRequest: 25,
  FetchResponse: 26,
  /** sync: a part of a delta the requester sends in parts; answered with Ack. */
  UploadRequest: 27,
  /** gossip, on the namespace's announce topic: a collection this replica has (see announce.ts). */
  Announce: 28,
} as const
export type MessageTypeValue = (typeof MessageType)[keyof typeof MessageType]

export function encodeMessage(type: MessageTypeValue, body: unknown): Uint8Array {
  const payload = encode(body)
  const out = new Uint8Array(3 + payload.byteLength)
  out[0] = WIRE_MAGIC
  out[1] = WIRE_VERSION
  out[2] = type
  out.set(payload, 3)
  return out
}

export interface DecodedMessage {
  type: number
  body: unknown
}

export function decodeMessage(bytes: Uint8Array, maxBytes: number): DecodedMessage {
  if (!(bytes instanceof Uint8Array)) throw invalid('not bytes')
  if (bytes.byteLength > maxBytes) {
    throw new ConvergentError('ERR_TOO_LARGE', `message of ${bytes.byteLength} bytes exceeds the limit of ${maxBytes}`)
  }
  if (bytes.byteLength < 4) throw invalid(`truncated: only ${bytes.byteLength} bytes`)
  if (bytes[0] !== WIRE_MAGIC) throw invalid(`bad magic byte 0x${bytes[0]!.toString(16)}`)
  if (bytes[1] !== WIRE_VERSION) throw invalid(`unsupported wire version ${bytes[1]} (this node speaks ${WIRE_VERSION})`)
  let body: unknown
  try {
    body = decode(bytes.subarray(3))
  } catch (err) {
    throw invalid(`undecodable body: ${(err as Error).message}`)
  }
  return { type: bytes[2]!, body }
}

/**
 * The body of an Error reply: a message for logs, and `u` — the request's message type — when
 * the server does not serve that type, so a client can fall back without parsing the text.
 */
export interface ErrorBody {
  m: string
  u?: number
}

/** A request of a type the server does not serve (a newer client talking to an older server). */
export class UnsupportedTypeError extends ConvergentError {
  constructor(readonly type: number) {
    super('ERR_INVALID_MESSAGE', `invalid message: unexpected type ${type} on the sync protocol`)
  }
}

/** A peer's Error reply to a sync request. */
export class SyncRefusedError extends ConvergentError {
  constructor(
    peer: string,
    readonly body: Partial<ErrorBody>,
  ) {
    super('ERR_NETWORK', `peer ${peer} refused a sync request: ${typeof body.m === 'string' ? body.m : 'unknown error'}`)
  }

  /** Whether the peer does not serve requests of this message type. */
  unsupported(type: number): boolean {
    // Servers from before the `u` field said so only in the text.
    return this.body.u === type || (typeof this.body.m === 'string' && this.body.m.includes(`unexpected type ${type} `))
  }
}

export function invalid(why: string): ConvergentError {
  return new ConvergentError('ERR_INVALID_MESSAGE', `invalid message: ${why}`)
}

// --- small validators for decoded bodies: the shape is checked before anything is used ---

export function asRecord(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) throw invalid(`${what} is not a map`)
  return v as Record<string, unknown>
}

export function asString(v: unknown, what: string, maxBytes = 1024): string {
  if (typeof v !== 'string' || v.length === 0 || Buffer.byteLength(v) > maxBytes) throw invalid(`${what} is not a valid string`)
  return v
}

export function asBytes(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw invalid(`${what} is not bytes`)
  return v
}

export function asBytesOrNull(v: unknown, what: string): Uint8Array | null {
  return v === null || v === undefined ? null : asBytes(v, what)
}

export function asArray(v: unknown, what: string, maxLength = 1_000_000): unknown[] {
  if (!Array.isArray(v) || v.length > maxLength) throw invalid(`${what} is not a list (or is too long)`)
  return v
}

export function asInt(v: unknown, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalid(`${what} is not an integer in [${min}, ${max}]`)
  return v
}
