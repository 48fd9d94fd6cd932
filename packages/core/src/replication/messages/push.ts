import { encodeMessage, InvalidMessageError, MessageType } from './envelope.js'
import { asDeltaEntries, asInt, asRecord, asString } from './fields.js'
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
