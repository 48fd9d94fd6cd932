import { encodeMessage, MessageType } from './envelope.js'
import { asBytes, asBytesOrNull, asRecord, asString, invalid } from './fields.js'

/**
 * The largest version a holds query or answer carries. A Yjs version grows with the writers
 * and delete ranges of the entity; far above any honest one, small enough that one query
 * costs a responder little to decode and compare.
 */
export const MAX_HOLDS_VERSION_BYTES = 64 * 1024

/**
 * HoldsRequest (sync protocol): does the responder hold, durably, every operation of this
 * entity at `version`? A writer asks it to acknowledge a write (put(…, { ack })).
 * Wire { c: collection, b: backend, i: id, v: version }.
 */
export interface HoldsRequest {
  collection: string
  backend: string
  id: string
  version: Uint8Array
}

export function encodeHoldsRequest(m: HoldsRequest): Uint8Array {
  return encodeMessage(MessageType.HoldsRequest, { c: m.collection, b: m.backend, i: m.id, v: m.version })
}

export function decodeHoldsRequest(body: unknown): HoldsRequest {
  const r = asRecord(body, 'holds request')
  return {
    collection: asString(r.c, 'collection'),
    backend: asString(r.b, 'backend'),
    id: asString(r.i, 'id'),
    version: boundedVersion(asBytes(r.v, 'version')),
  }
}

/**
 * HoldsResponse: `held`, and when not, the responder's own version (null: it holds nothing of
 * the entity) so the writer can send what it lacks; absent when it cannot say (too large,
 * unknown collection). Wire { h: 1 | 0, v?: version or null }.
 */
export interface HoldsResponse {
  held: boolean
  version?: Uint8Array | null
}

export function encodeHoldsResponse(m: HoldsResponse): Uint8Array {
  return encodeMessage(MessageType.HoldsResponse, { h: m.held ? 1 : 0, ...(m.version !== undefined ? { v: m.version } : {}) })
}

export function decodeHoldsResponse(body: unknown): HoldsResponse {
  const r = asRecord(body, 'holds response')
  if (r.h !== 0 && r.h !== 1) throw invalid('holds answer is not 0 or 1')
  if (r.h === 1 || !('v' in r)) return { held: r.h === 1 }
  const version = asBytesOrNull(r.v, 'version')
  return { held: false, version: version === null ? null : boundedVersion(version) }
}

function boundedVersion(v: Uint8Array): Uint8Array {
  if (v.byteLength > MAX_HOLDS_VERSION_BYTES) throw invalid(`version of ${v.byteLength} bytes (at most ${MAX_HOLDS_VERSION_BYTES})`)
  return v
}
