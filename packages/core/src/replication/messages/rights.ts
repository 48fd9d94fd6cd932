import { encodeMessage, MessageType } from './envelope.js'
import { asBytesOrNull, asInt, asRecord, asString } from './fields.js'

/**
 * RightsRequest (sync protocol): ask a peer for bounded-counter rights, with the requester's
 * version of the counter so the answer carries what it lacks.
 * Wire body: { c: collection, i: id, w: amount wanted, v: version or null }.
 */
export interface RightsRequest {
  collection: string
  id: string
  want: number
  version: Uint8Array | null
}

export function encodeRightsRequest(m: RightsRequest): Uint8Array {
  return encodeMessage(MessageType.RightsRequest, { c: m.collection, i: m.id, w: m.want, v: m.version })
}

export function decodeRightsRequest(body: unknown): RightsRequest {
  const r = asRecord(body, 'rights request')
  return { collection: asString(r.c, 'collection'), id: asString(r.i, 'id'), want: asInt(r.w, 'amount', 1), version: asBytesOrNull(r.v, 'version') }
}

/**
 * RightsResponse: how many rights were granted, and the delta that carries the transfer (null
 * when nothing was granted or it does not fit; the rights then arrive through sync).
 * Wire body: { g: granted, d: delta or null, b: backend }.
 */
export interface RightsResponse {
  granted: number
  delta: Uint8Array | null
  backend: string
}

export function encodeRightsResponse(m: RightsResponse): Uint8Array {
  return encodeMessage(MessageType.RightsResponse, { g: m.granted, d: m.delta, b: m.backend })
}

export function decodeRightsResponse(body: unknown): RightsResponse {
  const r = asRecord(body, 'rights response')
  const delta = asBytesOrNull(r.d, 'delta')
  return { granted: asInt(r.g, 'granted'), delta, backend: delta === null ? '' : asString(r.b, 'backend') }
}
