/**
 * Compact binary bodies for heads and feed entries. A head is read for every entity in a
 * digest range scan, so it is kept small (~40 bytes) and cheap to decode; JSON would be
 * ~3× larger (hex version hash) and slower. Byte 0 is a format version so the layout can
 * change later without a migration of every record.
 *
 *   head:  [1][flags: bit0 deleted, bit1 has a snapshot][deltaCount u32 BE][hash length u8][hash …][backend utf8 …]
 *   feed:  [1][kind u8][time f64 BE][origin length u16 BE][origin utf8 …][id utf8 …]
 *          [2][kind u8][time f64 BE][origin length u16 BE][origin utf8 …][proof length u8][proof utf8 …][id utf8 …]
 *          (format 2 only for entries with a proof, a signed push's; the seq is the key)
 *   feed page: [3][count u16 BE] then `count` times [length u32 BE][entry body as above]
 *          (entries with consecutive seqs, the LAST one's is the key, so feed(since) is one
 *          range scan from since + 1: the store writes the feed entries of one write as one
 *          record, so one checksum or seal and one LevelDB op instead of one per entry; store
 *          format 3)
 *
 * These are record BODIES: on disk each sits behind the checksum header of record.ts, which
 * the encoders leave room for (`offset`) so sealing a record copies nothing.
 */
import type { CollectionMeta, EntityHead, FeedEntry } from '@convergent/core'

const FORMAT = 1
const HEAD_FIXED = 7
const FEED_FIXED = 12
/** The feed layout with a proof id (see the table above). */
const FEED_WITH_PROOF = 2
const KINDS: readonly FeedEntry['kind'][] = ['put', 'delete', 'remote']

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

/** Backend names are a handful of short strings: encoded once each. */
const backendBytes = new Map<string, Uint8Array>()

/** A head's body at `offset` of a new array (the bytes before it are left for a header). */
export function encodeHead(head: EntityHead, offset = 0): Uint8Array {
  let backend = backendBytes.get(head.backend)
  if (backend === undefined) {
    backend = encoder.encode(head.backend)
    if (backendBytes.size < 64) backendBytes.set(head.backend, backend)
  }
  const hash = head.versionHash
  const out = new Uint8Array(offset + HEAD_FIXED + hash.byteLength + backend.byteLength)
  const n = head.deltaCount
  out[offset] = FORMAT
  out[offset + 1] = (head.deleted ? 1 : 0) | (head.hasSnapshot === true ? 2 : 0)
  out[offset + 2] = n >>> 24
  out[offset + 3] = (n >>> 16) & 0xff
  out[offset + 4] = (n >>> 8) & 0xff
  out[offset + 5] = n & 0xff
  out[offset + 6] = hash.byteLength
  out.set(hash, offset + HEAD_FIXED)
  out.set(backend, offset + HEAD_FIXED + hash.byteLength)
  return out
}

/** Throws (a plain Error: the caller names the record) if the body is not a head. */
export function decodeHead(bytes: Uint8Array): EntityHead {
  if (bytes.byteLength < HEAD_FIXED || bytes[0] !== FORMAT) throw unreadable('head')
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const hashEnd = HEAD_FIXED + bytes[6]!
  if (hashEnd > bytes.byteLength) throw unreadable('head')
  return {
    backend: decoder.decode(bytes.subarray(hashEnd)),
    versionHash: new Uint8Array(bytes.subarray(HEAD_FIXED, hashEnd)), // a copy the caller may keep
    deltaCount: view.getUint32(2),
    deleted: (bytes[1]! & 1) === 1,
    ...((bytes[1]! & 2) === 2 ? { hasSnapshot: true } : {}),
  }
}

/** A feed entry's body at `offset` of a new array (the bytes before it are left for a header). */
export function encodeFeedEntry(entry: FeedEntry, offset = 0): Uint8Array {
  const origin = encoder.encode(entry.origin)
  const proof = entry.proof === undefined ? undefined : encoder.encode(entry.proof)
  if (proof !== undefined && proof.byteLength > FEED_LIMITS.maxProofBytes) throw new Error(`a feed entry's proof id of ${proof.byteLength} bytes`) // ops.ts checks first
  const id = encoder.encode(entry.id)
  const proofBytes = proof === undefined ? 0 : 1 + proof.byteLength
  const out = new Uint8Array(offset + FEED_FIXED + origin.byteLength + proofBytes + id.byteLength)
  const view = new DataView(out.buffer, offset)
  out[offset] = proof === undefined ? FORMAT : FEED_WITH_PROOF
  out[offset + 1] = KINDS.indexOf(entry.kind)
  view.setFloat64(2, entry.time)
  view.setUint16(10, origin.byteLength)
  let at = offset + FEED_FIXED
  out.set(origin, at)
  at += origin.byteLength
  if (proof !== undefined) {
    out[at] = proof.byteLength
    out.set(proof, at + 1)
    at += proofBytes
  }
  out.set(id, at)
  return out
}

/** Throws (a plain Error: the caller names the record) if the body is not a feed entry. */
export function decodeFeedEntry(seq: number, bytes: Uint8Array): FeedEntry {
  if (bytes.byteLength < FEED_FIXED || (bytes[0] !== FORMAT && bytes[0] !== FEED_WITH_PROOF)) throw unreadable('feed entry')
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const kind = KINDS[bytes[1]!]
  const originEnd = FEED_FIXED + view.getUint16(10)
  if (kind === undefined || originEnd > bytes.byteLength) throw unreadable('feed entry')
  let idStart = originEnd
  let proof: string | undefined
  if (bytes[0] === FEED_WITH_PROOF) {
    if (originEnd >= bytes.byteLength) throw unreadable('feed entry')
    idStart = originEnd + 1 + bytes[originEnd]!
    if (idStart > bytes.byteLength) throw unreadable('feed entry')
    proof = decoder.decode(bytes.subarray(originEnd + 1, idStart))
  }
  return {
    seq,
    id: decoder.decode(bytes.subarray(idStart)),
    origin: decoder.decode(bytes.subarray(FEED_FIXED, originEnd)),
    time: view.getFloat64(2),
    kind,
    ...(proof !== undefined ? { proof } : {}),
  }
}

/** A page's format byte (see the table above). */
export const FEED_PAGE = 3
/** Entries per page at most (a longer run of seqs is cut into several pages)… */
export const FEED_PAGE_MAX = 1024
/** …and entry bytes per page at most, so a read of READ_CHUNK records stays bounded as before pages. */
export const FEED_PAGE_BYTES = 64 * 1024

/** Entry bodies (encodeFeedEntry, no offset) of consecutive seqs as one page body at `offset` of a new array. */
export function encodeFeedPage(bodies: readonly Uint8Array[], offset = 0): Uint8Array {
  let size = offset + 3
  for (const b of bodies) size += 4 + b.byteLength
  const out = new Uint8Array(size)
  const view = new DataView(out.buffer)
  out[offset] = FEED_PAGE
  view.setUint16(offset + 1, bodies.length)
  let at = offset + 3
  for (const b of bodies) {
    view.setUint32(at, b.byteLength)
    out.set(b, at + 4)
    at += 4 + b.byteLength
  }
  return out
}

/** The entries of a feed record, an entry or a page, whose key says `lastSeq`; throws if it is neither. */
export function decodeFeedRecord(lastSeq: number, bytes: Uint8Array): FeedEntry[] {
  if (bytes[0] !== FEED_PAGE) return [decodeFeedEntry(lastSeq, bytes)]
  if (bytes.byteLength < 3) throw unreadable('feed page')
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const count = view.getUint16(1)
  if (count === 0 || count > lastSeq) throw unreadable('feed page')
  const first = lastSeq - count + 1
  const out: FeedEntry[] = []
  let at = 3
  for (let i = 0; i < count; i++) {
    if (at + 4 > bytes.byteLength) throw unreadable('feed page')
    const end = at + 4 + view.getUint32(at)
    if (end > bytes.byteLength || bytes[at + 4] === FEED_PAGE) throw unreadable('feed page')
    out.push(decodeFeedEntry(first + i, bytes.subarray(at + 4, end)))
    at = end
  }
  if (at !== bytes.byteLength) throw unreadable('feed page')
  return out
}

/** Limits the layouts above impose; write() checks them before anything is queued. */
export const HEAD_LIMITS = { maxHashBytes: 255, maxDeltaCount: 2 ** 32 - 1 }
export const FEED_LIMITS = { maxOriginBytes: 65_535, maxProofBytes: 255 }

/** A collection's meta: the JSON the store has always written for it. */
export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value))
}

/** Throws (a plain Error) if the body is not the JSON of a collection's meta. */
export function decodeCollectionMeta(bytes: Uint8Array): CollectionMeta {
  const meta = decodeJson(bytes, 'collection meta') as { backend?: unknown } | null
  if (typeof meta?.backend !== 'string') throw unreadable('collection meta')
  return { backend: meta.backend }
}

export function decodeJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(decoder.decode(bytes))
  } catch {
    throw unreadable(what)
  }
}

function unreadable(what: string): Error {
  return new Error(`not a ${what} of a known format`)
}
