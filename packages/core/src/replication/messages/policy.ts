import { encodeMessage, MessageType } from './envelope.js'
import { asBytes, asRecord, asString } from './fields.js'

/** A signed policy as it travels and is stored: the signed bytes (trust/policy.ts), the signer, the signature. */
export interface PolicyWire {
  bytes: Uint8Array
  signedBy: string
  signature: Uint8Array
}

/** Wire form: { b: signed bytes, s: signer, g: signature }. */
export function encodePolicyWire(w: PolicyWire): Record<string, unknown> {
  return { b: w.bytes, s: w.signedBy, g: w.signature }
}

/** Shape only (the signature is checked by Access.offer). */
export function decodePolicyWire(body: unknown): PolicyWire {
  const r = asRecord(body, 'signed policy')
  return { bytes: asBytes(r.b, 'policy bytes'), signedBy: asString(r.s, 'policy signer', 256), signature: asBytes(r.g, 'policy signature') }
}

/**
 * PolicyOffer (sync protocol, first request of a round, and sent to every peer when an admin
 * sets a policy): the requester's signed cluster policy, or null. The responder adopts it if
 * it verifies and is newer, and answers with a PolicyResponse carrying its own if that one is
 * newer than the offer (else null). Wire body: { p: { b: signed bytes, s: signer, g: signature } | null }.
 */
export function encodePolicyOffer(p: PolicyWire | null): Uint8Array {
  return encodeMessage(MessageType.PolicyOffer, { p: p === null ? null : encodePolicyWire(p) })
}

export function encodePolicyResponse(p: PolicyWire | null): Uint8Array {
  return encodeMessage(MessageType.PolicyResponse, { p: p === null ? null : encodePolicyWire(p) })
}

/** The policy a PolicyOffer or PolicyResponse body carries (shape only; Access verifies it). */
export function decodePolicyBody(body: unknown): PolicyWire | null {
  const r = asRecord(body, 'policy message')
  return r.p === null || r.p === undefined ? null : decodePolicyWire(r.p)
}
