import { encode, decode, Tokenizer, Type, type Token } from 'cborg'
import { ConvergentError } from '../../errors.js'
import { decodeSimple, MISS } from './simple-cbor.js'

/**
 * The envelope of every message Convergent sends: a magic byte and a format version, then a
 * type byte, then a CBOR body. A receiver rejects any other magic or version instead of
 * guessing, so a future format can coexist. One file per protocol next to this one holds the
 * bodies: push.ts (gossip, plain and signed), announce.ts, sync.ts (anti-entropy), parts.ts (large deltas),
 * rights.ts (bounded counters), holds.ts (write acknowledgements), policy.ts (the cluster policy), keys.ts (subject keys), reply.ts (errors). Bodies travel with one-letter keys; the
 * typed messages the code uses have readable names, and every decoder checks shape, types
 * and bounds before anything is used.
 */
export const WIRE_MAGIC = 0xc7
export const WIRE_VERSION = 1

export const MessageType = {
  /** gossip: deltas of one collection, coalesced per entity (push.ts). */
  Push: 1,
  /** sync: per-collection digest roots, in pages (sync.ts). */
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
  /** bounded counters: ask a peer for rights (rights.ts). */
  RightsRequest: 21,
  RightsResponse: 22,
  /** sync: every entity in some leaf ranges, as full deltas (a late joiner). */
  RangeRequest: 23,
  RangeResponse: 24,
  /** sync: a part of a delta the responder handed out as a ticket (parts.ts). */
  FetchRequest: 25,
  FetchResponse: 26,
  /** sync: a part of a delta the requester sends in parts; answered with Ack. */
  UploadRequest: 27,
  /** gossip, on the namespace's announce topic: a collection a replica created (announce.ts). */
  Announce: 28,
  /** sync: does the responder durably hold an entity at a version? (a write's ack, holds.ts) */
  HoldsRequest: 29,
  HoldsResponse: 30,
  /** sync: the requester's signed cluster policy; answered by the responder's if newer (policy.ts). */
  PolicyOffer: 32,
  PolicyResponse: 33,
  /** Not sent alone: the signed bytes of a policy document travel inside the two above. */
  PolicyDocument: 34,
  /** sync: subject keys and forget tombstones the responder holds, in pages (keys.ts). */
  KeysRequest: 35,
  KeysResponse: 36,
  /** sync: subject keys and tombstones the requester holds and the responder lacks; answered with Ack. */
  KeysOffer: 37,
  /** gossip: a push signed by its author (push.ts; the payload it signs: trust/signed-push.ts). */
  SignedPush: 38,
} as const
export type MessageTypeValue = (typeof MessageType)[keyof typeof MessageType]

/** Bytes that are not a message this node can read (garbage, truncated, wrong shape). */
export class InvalidMessageError extends ConvergentError {
  constructor(why: string) {
    super('ERR_INVALID_MESSAGE', `invalid message: ${why}`)
  }
}

/** A message in a wire format version this node does not speak. */
export class UnsupportedVersionError extends InvalidMessageError {
  constructor(readonly version: number) {
    super(`unsupported wire version ${version} (this node speaks ${WIRE_VERSION})`)
  }
}

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

/**
 * The most CBOR items one body may hold, by message type, and the longest list or map in any:
 * each bound is a little above the largest honest body of that type (a push: 1,024 entries of
 * 3 items; a leaves response: 65,536 entries of 3; a deltas request or range response: 4,096
 * entries and a head table of up to 8,256 leaves of ~16 items), so a peer cannot make one
 * message build millions of objects before the per-message bounds are checked.
 */
const MAX_LENGTH = 65_536
function maxItemsOf(type: number): number {
  switch (type) {
    case MessageType.LeavesResponse:
      return 200_000
    case MessageType.Push:
    case MessageType.SignedPush:
      return 4_096
    // A batch of deltas with its head table (head-table.ts): up to ~16 items a head.
    case MessageType.DeltasRequest:
    case MessageType.RangeResponse:
      return 200_000
    default:
      return 50_000
  }
}

/** No indefinite lengths (they would slip past the bounds), no undefined, no BigInt: none is in our bodies. */
const DECODE_OPTIONS = { allowIndefinite: false, allowUndefined: false, allowBigInt: false, strict: false }

/** cborg's tokenizer, counting as it goes: over a bound, the decode stops before building more. */
class BoundedTokenizer extends Tokenizer {
  private items = 0

  constructor(
    data: Uint8Array,
    options: object,
    private readonly maxItems: number,
  ) {
    super(data, options)
  }

  override next(): Token {
    const token = super.next()
    if (++this.items > this.maxItems) throw new InvalidMessageError(`more than ${this.maxItems} items in one message of this type`)
    if ((token.type === Type.array || token.type === Type.map) && (token.value as number) > MAX_LENGTH) {
      throw new InvalidMessageError(`a list or map of ${String(token.value)} entries (at most ${MAX_LENGTH} in one message)`)
    }
    return token
  }
}

/** The type and CBOR body; ERR_TOO_LARGE over maxBytes, InvalidMessageError otherwise. */
export function decodeMessage(bytes: Uint8Array, maxBytes: number): DecodedMessage {
  if (!(bytes instanceof Uint8Array)) throw new InvalidMessageError('not bytes')
  if (bytes.byteLength > maxBytes) {
    throw new ConvergentError('ERR_TOO_LARGE', `message of ${bytes.byteLength} bytes exceeds the limit of ${maxBytes}`)
  }
  if (bytes.byteLength < 4) throw new InvalidMessageError(`truncated: only ${bytes.byteLength} bytes`)
  if (bytes[0] !== WIRE_MAGIC) throw new InvalidMessageError(`bad magic byte 0x${bytes[0]!.toString(16)}`)
  if (bytes[1] !== WIRE_VERSION) throw new UnsupportedVersionError(bytes[1]!)
  return { type: bytes[2]!, body: decodeBounded(bytes.subarray(3), maxItemsOf(bytes[2]!), 'body') }
}

/**
 * CBOR within the bounds of a message body (at most `maxItems` items, no list or map over
 * 65,536, no indefinite lengths): for a body, and for CBOR a body carries as bytes (a signed
 * push's payload), which the body's own bounds do not reach into. InvalidMessageError if not.
 */
export function decodeBounded(data: Uint8Array, maxItems: number, what: string): unknown {
  // What our encoders write is read without cborg's tokenizer (the same values, ~2× faster on a head proof); the rest through it.
  const simple = decodeSimple(data, maxItems)
  return simple !== MISS ? simple : decodeWithCborg(data, maxItems, what)
}

/** decodeBounded through cborg's tokenizer, for what decodeSimple leaves (exported for its equivalence test). */
export function decodeWithCborg(data: Uint8Array, maxItems: number, what: string): unknown {
  let decoded: unknown
  try {
    // Maps as Maps, made plain objects below: cborg assigns each key, so a map key '__proto__'
    // would set the object's prototype (fields a peer chose, inherited, not its own) or vanish.
    decoded = decode(data, { ...DECODE_OPTIONS, useMaps: true, tokenizer: new BoundedTokenizer(data, DECODE_OPTIONS, maxItems) })
  } catch (err) {
    if (err instanceof InvalidMessageError) throw err
    throw new InvalidMessageError(`undecodable ${what}: ${(err as Error).message}`)
  }
  return plainOf(decoded, what, 0)
}

/** Maps (from cborg's useMaps) as plain objects whose every key is their own, '__proto__' too; only text keys. */
function plainOf(value: unknown, what: string, depth: number): unknown {
  if (depth > MAX_PLAIN_DEPTH) throw new InvalidMessageError(`undecodable ${what}: nested more than ${MAX_PLAIN_DEPTH} deep`)
  if (Array.isArray(value)) return value.map((item: unknown) => plainOf(item, what, depth + 1))
  if (!(value instanceof Map)) return value
  const out: Record<string, unknown> = {}
  for (const [key, item] of value as Map<unknown, unknown>) {
    if (typeof key !== 'string') throw new InvalidMessageError(`undecodable ${what}: a map key that is not text (${typeof key})`)
    Object.defineProperty(out, key, { value: plainOf(item, what, depth + 1), enumerable: true, writable: true, configurable: true })
  }
  return out
}

/** Deeper than any message of ours (the fast reader's bound is lower still). */
const MAX_PLAIN_DEPTH = 256
