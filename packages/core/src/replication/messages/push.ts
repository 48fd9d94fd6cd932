import { encodeMessage, InvalidMessageError, MessageType } from './envelope.js'
import { asDeltaEntries, asInt, asRecord, asString } from './fields.js'

/** Deltas one push may carry (a pusher packs more into several messages). */
export const MAX_PUSH_ENTRIES = 1024

/**
 * Push (gossip, on a collection's topic): durable local deltas of one collection, one per
 * entity (coalesced). Wire body: { c: collection, b: backend, o: origin, s: sequence, e: [[id, delta], …] }.
 */
export interface PushMessage {
  collection: string
  /** The backend the deltas are for ('yjs', 'automerge'). */
  backend: string
  /** The replica that made the changes (its peer id), and its push sequence number. */
  origin: string
  sequence: number
  entries: [id: string, delta: Uint8Array][]
}

export function encodePush(m: PushMessage): Uint8Array {
  return encodeMessage(MessageType.Push, { c: m.collection, b: m.backend, o: m.origin, s: m.sequence, e: m.entries })
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
  }
}
