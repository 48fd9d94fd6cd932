import { encodeMessage, InvalidMessageError, MessageType } from './envelope.js'
import { asRecord, asString } from './fields.js'

/**
 * Announce (gossip, on the namespace's announce topic): a replica created a collection.
 * Wire body: { c: collection, b: backend }.
 */
export interface AnnounceMessage {
  collection: string
  backend: string
}

export function encodeAnnounce(m: AnnounceMessage): Uint8Array {
  return encodeMessage(MessageType.Announce, { c: m.collection, b: m.backend })
}

export function decodeAnnounce(type: number, body: unknown): AnnounceMessage {
  if (type !== MessageType.Announce) throw new InvalidMessageError(`unexpected message type ${type} on the announce topic`)
  const r = asRecord(body, 'announce')
  return { collection: asString(r.c, 'collection'), backend: asString(r.b, 'backend') }
}
