import { encodeMessage, InvalidMessageError, MessageType } from './envelope.js'
import { asArray, asBytes, asDeltaEntries, asInt, asRecord, asString, invalid } from './fields.js'
import { encodePayload, MAX_PAYLOAD_BYTES, MAX_SIGNATURE_BYTES, payloadOf, signingInput } from '../../trust/signed-push.js'
import { parseTraceparent } from '../../traceparent.js'

/** Deltas one push may carry (a pusher packs more into several messages). */
export const MAX_PUSH_ENTRIES = 1024

/**
 * Push (gossip, on a collection's topic): durable local deltas of one collection, one per
 * entity (coalesced). Wire body: { c: collection, b: backend, o: origin, s: sequence, e: [[id, delta], …],
 * t?: time, p?: traceparent }. The optional fields are absent in pushes of older replicas and
 * ignored by them; a malformed one is ignored too (the deltas still apply).
 */
export interface PushMessage {
  collection: string
  /** The backend the deltas are for ('yjs', 'automerge'). */
  backend: string
  /** The replica that made the changes (its peer id), and its push sequence number. */
  origin: string
  sequence: number
  entries: [id: string, delta: Uint8Array][]
  /**
   * When the oldest change in it was committed at the origin (ms since the epoch, the origin's
   * clock): where replication lag is measured from.
   */
  time?: number
  /** The W3C traceparent of a write in it (see tracing.ts), so its apply joins the writer's trace. */
  traceparent?: string
}

export function encodePush(m: PushMessage): Uint8Array {
  const body: Record<string, unknown> = { c: m.collection, b: m.backend, o: m.origin, s: m.sequence, e: m.entries }
  if (m.time !== undefined) body.t = m.time
  if (m.traceparent !== undefined) body.p = m.traceparent
  return encodeMessage(MessageType.Push, body)
}

/**
 * SignedPush (gossip, in a cluster): a push whose author signed it (trust/signed-push.ts).
 * Wire body: { p: signed payload, g: signature, d: [delta, …] (in the payload's order), x?: traceparent }.
 * The payload carries everything a plain push does but the deltas, whose SHA-256 it carries
 * instead; the trace context is a hint outside the signature.
 */
export interface SignedPushMessage {
  payload: Uint8Array
  signature: Uint8Array
  deltas: Uint8Array[]
  traceparent?: string
  /** The author's signed heads of the entries (trust/signed-heads.ts); older replicas ignore them. */
  heads?: PushHeads
}

/**
 * The author's heads of a push's entries: one signed statement, and per entry its leaf (null
 * for entries without one, e.g. a backend without history). Receivers rebuild each entry's
 * inclusion path from the leaves. Wire k: { s, g, l: [leaf or null, …] }.
 */
export interface PushHeads {
  statement: Uint8Array
  signature: Uint8Array
  leaves: (Uint8Array | null)[]
}

export function encodeSignedPush(m: SignedPushMessage): Uint8Array {
  const body: Record<string, unknown> = { p: m.payload, g: m.signature, d: m.deltas }
  if (m.traceparent !== undefined) body.x = m.traceparent
  if (m.heads !== undefined) body.k = { s: m.heads.statement, g: m.heads.signature, l: m.heads.leaves }
  return encodeMessage(MessageType.SignedPush, body)
}

/**
 * A push signed by its author (`sign`: its key) as a SignedPush message: the payload (ids and
 * delta hashes, see trust/signed-push.ts), one signature over it, the deltas beside it.
 */
export async function signPush(
  namespace: string,
  push: PushMessage,
  sign: (data: Uint8Array) => Promise<Uint8Array | undefined>,
  heads?: PushHeads,
): Promise<Uint8Array> {
  const { collection, backend, origin: author, sequence, time } = push
  const payload = encodePayload(payloadOf({ namespace, collection, backend, author, sequence, ...(time !== undefined ? { time } : {}) }, push.entries))
  const signature = await sign(signingInput(payload))
  if (signature === undefined) throw new Error('this replica has no signing key')
  return encodeSignedPush({
    payload,
    signature,
    deltas: push.entries.map(([, delta]) => delta),
    ...(push.traceparent !== undefined ? { traceparent: push.traceparent } : {}),
    ...(heads !== undefined ? { heads } : {}),
  })
}

export function decodeSignedPush(body: unknown): SignedPushMessage {
  const r = asRecord(body, 'signed push')
  const signature = asBytes(r.g, 'signed push signature')
  if (signature.byteLength > MAX_SIGNATURE_BYTES) throw invalid(`a signature of ${signature.byteLength} bytes`)
  const payload = asBytes(r.p, 'signed push payload')
  if (payload.byteLength > MAX_PAYLOAD_BYTES) throw invalid(`a signed push payload of ${payload.byteLength} bytes`)
  return {
    payload,
    signature,
    deltas: asArray(r.d, 'signed push deltas', MAX_PUSH_ENTRIES).map((d, i) => asBytes(d, `signed push delta ${i}`)),
    ...(parseTraceparent(r.x) !== undefined ? { traceparent: r.x as string } : {}),
    ...(r.k !== undefined ? { heads: decodePushHeads(r.k) } : {}),
  }
}

function decodePushHeads(v: unknown): PushHeads {
  const r = asRecord(v, 'push heads')
  const signature = asBytes(r.g, 'push heads signature')
  if (signature.byteLength > MAX_SIGNATURE_BYTES) throw invalid(`a heads signature of ${signature.byteLength} bytes`)
  return {
    statement: asBytes(r.s, 'push heads statement'),
    signature,
    leaves: asArray(r.l, 'push heads leaves', MAX_PUSH_ENTRIES).map((l, i) => (l === null ? null : asBytes(l, `push head leaf ${i}`))),
  }
}

export function decodePush(type: number, body: unknown): PushMessage {
  if (type !== MessageType.Push) throw new InvalidMessageError(`unexpected message type ${type} on a gossip topic`)
  const r = asRecord(body, 'push')
  return {
    collection: asString(r.c, 'collection'),
    backend: asString(r.b, 'backend'),
    origin: asString(r.o, 'origin'),
    sequence: asInt(r.s, 'sequence'),
    entries: asDeltaEntries(r.e, MAX_PUSH_ENTRIES),
    ...optionalFields(r),
  }
}

/** The optional fields, each only when well-formed: they are hints, never a reason to drop a push. */
function optionalFields(r: Record<string, unknown>): Pick<PushMessage, 'time' | 'traceparent'> {
  const out: Pick<PushMessage, 'time' | 'traceparent'> = {}
  if (typeof r.t === 'number' && Number.isSafeInteger(r.t) && r.t >= 0) out.time = r.t
  if (parseTraceparent(r.p) !== undefined) out.traceparent = r.p as string
  return out
}
