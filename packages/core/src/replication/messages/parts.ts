import { ConvergentError } from '../../errors.js'
import { encodeMessage, MessageType } from './envelope.js'
import { asBytes, asHash, asInt, asRecord, asString, invalid } from './fields.js'

/**
 * Large deltas travel in parts (see ../parts.ts for who keeps what). In a response, a delta
 * too large to go inline is replaced by a ticket: wire { t: ticket id, n: size, h: SHA-256 }.
 */
export interface Ticket {
  ticket: number
  size: number
  hash: Uint8Array
}

/** A delta slot of a sync message: the bytes, or a ticket to fetch them by. */
export type DeltaSlot = Uint8Array | Ticket

export function isTicket(slot: DeltaSlot): slot is Ticket {
  return !(slot instanceof Uint8Array)
}

/** The wire form of a slot. */
export function encodeSlot(slot: DeltaSlot): unknown {
  return slot instanceof Uint8Array ? slot : { t: slot.ticket, n: slot.size, h: slot.hash }
}

/**
 * A slot: bytes, or a ticket. A ticket announcing more than this replica's maxDeltaBytes is
 * decoded all the same (nothing is allocated for it here) and dropped, unfetched, by whoever
 * would fetch it (SyncClient.applySlots): a peer whose maxDeltaBytes is larger sends such
 * entities honestly, and refusing its whole answer for one of them lost every other entity in it.
 */
export function decodeSlot(v: unknown, what: string): DeltaSlot {
  if (v instanceof Uint8Array) return v
  const r = asRecord(v, what)
  return { ticket: asInt(r.t, `${what} ticket`), size: asInt(r.n, `${what} size`, 1), hash: asHash(r.h, `${what} hash`) }
}

/** FetchRequest: part of a ticket's bytes from an offset. Wire { t: ticket, o: offset }. */
export interface FetchRequest {
  ticket: number
  offset: number
}

export function encodeFetchRequest(m: FetchRequest): Uint8Array {
  return encodeMessage(MessageType.FetchRequest, { t: m.ticket, o: m.offset })
}

export function decodeFetchRequest(body: unknown): FetchRequest {
  const r = asRecord(body, 'fetch request')
  return { ticket: asInt(r.t, 'ticket'), offset: asInt(r.o, 'offset') }
}

/** FetchResponse: the part. Wire { b: bytes }. */
export function encodeFetchResponse(part: Uint8Array): Uint8Array {
  return encodeMessage(MessageType.FetchResponse, { b: part })
}

export function decodeFetchResponse(body: unknown): Uint8Array {
  return asBytes(asRecord(body, 'fetch response').b, 'part')
}

/**
 * UploadRequest: one part of a delta the requester sends in parts, in order; the responder
 * applies it once whole and matching its hash. Answered with Ack.
 * Wire { c: collection, b: backend, i: id, n: size, h: SHA-256, o: offset, d: part }.
 */
export interface UploadRequest {
  collection: string
  backend: string
  id: string
  size: number
  hash: Uint8Array
  offset: number
  part: Uint8Array
}

export function encodeUploadRequest(m: UploadRequest): Uint8Array {
  return encodeMessage(MessageType.UploadRequest, { c: m.collection, b: m.backend, i: m.id, n: m.size, h: m.hash, o: m.offset, d: m.part })
}

export function decodeUploadRequest(body: unknown, maxBytes: number): UploadRequest {
  const r = asRecord(body, 'upload request')
  const size = asInt(r.n, 'upload size', 1)
  // ERR_TOO_LARGE, not malformed: a peer whose maxDeltaBytes is larger uploads such a delta honestly.
  if (size > maxBytes) throw new ConvergentError('ERR_TOO_LARGE', `upload announces ${size} bytes, over maxDeltaBytes ${maxBytes}`)
  const offset = asInt(r.o, 'upload offset', 0, size - 1)
  const part = asBytes(r.d, 'upload part')
  if (part.byteLength === 0 || offset + part.byteLength > size) throw invalid('upload part does not fit the announced size')
  return {
    collection: asString(r.c, 'collection'),
    backend: asString(r.b, 'backend'),
    id: asString(r.i, 'id'),
    size,
    hash: asHash(r.h, 'upload hash'),
    offset,
    part,
  }
}
