import { encodeMessage, MessageType } from './envelope.js'
import { asArray, asBytes, asRecord, asString, invalid } from './fields.js'

/** Largest signed policy (the same bound as POLICY_LIMITS.maxBytes) and signature accepted. */
const MAX_POLICY_BYTES = 256 * 1024
const MAX_SIGNATURE_BYTES = 256

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
  const bytes = asBytes(r.b, 'policy bytes')
  const signature = asBytes(r.g, 'policy signature')
  // Bounded here, before anything decodes or verifies them (trust/policy.ts POLICY_LIMITS.maxBytes).
  if (bytes.byteLength > MAX_POLICY_BYTES) throw invalid(`a policy of ${bytes.byteLength} bytes (at most ${MAX_POLICY_BYTES})`)
  if (signature.byteLength > MAX_SIGNATURE_BYTES) throw invalid(`a policy signature of ${signature.byteLength} bytes`)
  return { bytes, signedBy: asString(r.s, 'policy signer', 256), signature }
}

/** Most evidence policies one message carries (Access keeps at most as many). */
export const MAX_POLICY_EVIDENCE = 64

/** What a PolicyOffer or PolicyResponse carries: a signed policy (or none) and the evidence of revocations it lacks. */
export interface PolicyBody {
  policy: PolicyWire | null
  evidence: PolicyWire[]
}

/**
 * PolicyOffer (sync protocol, first request of a round, and sent to every peer when an admin
 * sets a policy): the requester's signed cluster policy, or null, and the signed policies whose
 * revocations it lacks (see Access). The responder adopts what verifies and is newer (or
 * revokes more), and answers with a PolicyResponse carrying its own when that one is newer
 * than the offer (else null), and its evidence.
 * Wire body: { p: { b: signed bytes, s: signer, g: signature } | null, e?: [same, …] }.
 */
export function encodePolicyOffer(p: PolicyWire | null, evidence: PolicyWire[] = []): Uint8Array {
  return encodeMessage(MessageType.PolicyOffer, bodyOf(p, evidence))
}

export function encodePolicyResponse(p: PolicyWire | null, evidence: PolicyWire[] = []): Uint8Array {
  return encodeMessage(MessageType.PolicyResponse, bodyOf(p, evidence))
}

function bodyOf(p: PolicyWire | null, evidence: PolicyWire[]): Record<string, unknown> {
  return { p: p === null ? null : encodePolicyWire(p), ...(evidence.length > 0 ? { e: evidence.map(encodePolicyWire) } : {}) }
}

/** The policy and evidence a PolicyOffer or PolicyResponse body carries (shape only; Access verifies them). */
export function decodePolicyBody(body: unknown): PolicyBody {
  const r = asRecord(body, 'policy message')
  return {
    policy: r.p === null || r.p === undefined ? null : decodePolicyWire(r.p),
    evidence: r.e === undefined ? [] : asArray(r.e, 'policy evidence', MAX_POLICY_EVIDENCE).map(decodePolicyWire),
  }
}
