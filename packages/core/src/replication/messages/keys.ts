import { BUCKET_DIGEST_BYTES, BUCKETS } from '../../personal/share-digest.js'
import { encodeMessage, MessageType } from './envelope.js'
import { asArray, asBytes, asBytesOrNull, asHash, asRecord, asSizedBytes, asString, invalid } from './fields.js'

/**
 * Subject keys and forget tombstones (personal fields, see personal/subject-keys.ts). Keys
 * are secrets: they travel only inside the sync protocol's request/response streams, which
 * libp2p protects with Noise (encrypted and authenticated per connection), and only to peers
 * that may read the key's collection. Tombstones go to every member.
 */

/** Most keys, and most tombstones, in one message. */
export const MAX_KEY_RECORDS = 1000
/** Longest subject id, bytes (as entity ids). */
export const MAX_SUBJECT_BYTES = 256

/** A subject key as it travels: its collection, subject and the 32 key bytes (the id is derived from them). */
export interface KeyWire {
  collection: string
  subject: string
  key: Uint8Array
}

/** A tombstone as it travels and is stored: its encoded bytes and the forgetter's signature (none without a policy). */
export interface TombstoneWire {
  bytes: Uint8Array
  signature: Uint8Array | null
}

/** Bytes of a request's bucket digests, and of a bucket bitmap (see personal/share-digest.ts). */
export const BUCKET_DIGESTS_BYTES = BUCKETS * BUCKET_DIGEST_BYTES
export const BUCKET_BITMAP_BYTES = BUCKETS / 8

/**
 * KeysRequest: { h: summary of what the requester holds | null, a: page cursor | absent,
 * b: its bucket digests (with the first request), d: the buckets that differ (with the next
 * pages, as the responder named them) }. Releases before buckets send neither b nor d, and
 * ignore them: they get, and send, everything.
 */
export interface KeysRequest {
  summary: Uint8Array | null
  after?: string
  buckets?: Uint8Array
  differ?: Uint8Array
}

/** KeysResponse: { e: true } when the summaries are equal, else a page { t, k, n?, d? } (d: the buckets it pages through; absent: all). */
export interface KeysResponse {
  same: boolean
  tombstones: TombstoneWire[]
  keys: KeyWire[]
  next?: string
  differ?: Uint8Array
}

function keyToWire(k: KeyWire): Record<string, unknown> {
  return { c: k.collection, s: k.subject, k: k.key }
}

function tombstoneToWire(t: TombstoneWire): Record<string, unknown> {
  return { b: t.bytes, g: t.signature }
}

function decodeKeys(v: unknown): KeyWire[] {
  return asArray(v ?? [], 'keys', MAX_KEY_RECORDS).map((e, i) => {
    const r = asRecord(e, `key ${i}`)
    const key = asSizedBytes(r.k, 32, `key ${i} bytes`)
    return { collection: asString(r.c, `key ${i} collection`, 1024), subject: asString(r.s, `key ${i} subject`, MAX_SUBJECT_BYTES), key }
  })
}

function decodeTombstones(v: unknown): TombstoneWire[] {
  return asArray(v ?? [], 'tombstones', MAX_KEY_RECORDS).map((e, i) => {
    const r = asRecord(e, `tombstone ${i}`)
    const bytes = asBytes(r.b, `tombstone ${i} bytes`)
    if (bytes.byteLength > 4096) throw invalid(`tombstone ${i} is over 4096 bytes`)
    const signature = asBytesOrNull(r.g, `tombstone ${i} signature`)
    if (signature !== null && signature.byteLength > 1024) throw invalid(`tombstone ${i} signature is over 1024 bytes`)
    return { bytes, signature }
  })
}

export function encodeKeysRequest(req: KeysRequest): Uint8Array {
  const body: Record<string, unknown> = { h: req.summary }
  if (req.after !== undefined) body.a = req.after
  if (req.buckets !== undefined) body.b = req.buckets
  if (req.differ !== undefined) body.d = req.differ
  return encodeMessage(MessageType.KeysRequest, body)
}

export function decodeKeysRequest(body: unknown): KeysRequest {
  const r = asRecord(body, 'keys request')
  const out: KeysRequest = { summary: r.h === null || r.h === undefined ? null : asHash(r.h, 'keys summary') }
  if (r.a !== undefined) out.after = asString(r.a, 'keys cursor', 2048)
  if (r.b !== undefined) out.buckets = asSizedBytes(r.b, BUCKET_DIGESTS_BYTES, 'keys bucket digests')
  if (r.d !== undefined) out.differ = asSizedBytes(r.d, BUCKET_BITMAP_BYTES, 'keys bucket bitmap')
  return out
}

export function encodeKeysResponse(res: KeysResponse): Uint8Array {
  if (res.same) return encodeMessage(MessageType.KeysResponse, { e: true })
  const body: Record<string, unknown> = { t: res.tombstones.map(tombstoneToWire), k: res.keys.map(keyToWire) }
  if (res.next !== undefined) body.n = res.next
  if (res.differ !== undefined) body.d = res.differ
  return encodeMessage(MessageType.KeysResponse, body)
}

export function decodeKeysResponse(body: unknown): KeysResponse {
  const r = asRecord(body, 'keys response')
  if (r.e === true) return { same: true, tombstones: [], keys: [] }
  const res: KeysResponse = { same: false, tombstones: decodeTombstones(r.t), keys: decodeKeys(r.k) }
  if (r.n !== undefined) res.next = asString(r.n, 'keys cursor', 2048)
  if (r.d !== undefined) res.differ = asSizedBytes(r.d, BUCKET_BITMAP_BYTES, 'keys bucket bitmap')
  return res
}

/** KeysOffer: tombstones and keys the requester holds and the responder lacks; answered with Ack. */
export function encodeKeysOffer(tombstones: TombstoneWire[], keys: KeyWire[]): Uint8Array {
  return encodeMessage(MessageType.KeysOffer, { t: tombstones.map(tombstoneToWire), k: keys.map(keyToWire) })
}

export function decodeKeysOffer(body: unknown): { tombstones: TombstoneWire[]; keys: KeyWire[] } {
  const r = asRecord(body, 'keys offer')
  return { tombstones: decodeTombstones(r.t), keys: decodeKeys(r.k) }
}
