import { ConvergentError } from '../errors.js'
import { applyAll } from './apply-all.js'
import { topicOf, type ReplicationContext } from './context.js'
import type { DropReason, PeerStats } from './peer-stats.js'
import type { PeerRateLimiter } from './rate-limit.js'
import { asArray, asBytes, asInt, asRecord, asString, decodeMessage, MessageType, type DecodedMessage } from './wire.js'

/** Deltas one push message may carry (a pusher packs more into several messages). */
export const MAX_PUSH_ENTRIES = 1024

/** Counts, remembers and logs one dropped message from a peer. */
export function dropMessage(ctx: ReplicationContext, stats: PeerStats, peer: string, reason: DropReason, message: string): void {
  stats.dropped[reason]++
  stats.lastDrop = { reason, message }
  ctx.logger.warn(`dropped a message from ${peer}: ${message}`, { peer, reason })
}

/** Maps a decode failure to the reason it is counted under. */
export function dropReasonOf(err: unknown): DropReason {
  if (err instanceof ConvergentError) {
    if (err.code === 'ERR_TOO_LARGE') return 'tooLarge'
    if (err.message.includes('unsupported wire version')) return 'unsupportedVersion'
  }
  return 'malformed'
}

/**
 * Counts an inbound message against the peer, applies the rate bound and decodes it.
 * Returns undefined (after counting and logging the drop) if it must be dropped.
 */
export function admit(ctx: ReplicationContext, limiter: PeerRateLimiter, peer: string, data: Uint8Array): DecodedMessage | undefined {
  const stats = ctx.stats.of(peer)
  stats.messagesIn++
  stats.bytesIn += data.byteLength
  if (!limiter.take(peer, data.byteLength)) {
    stats.dropped.rateLimited++
    stats.lastDrop = { reason: 'rateLimited', message: 'over the inbound rate bound' }
    return undefined
  }
  try {
    return decodeMessage(data, ctx.limits.maxMessageBytes)
  } catch (err) {
    dropMessage(ctx, stats, peer, dropReasonOf(err), (err as Error).message)
    return undefined
  }
}

/** The receive path for gossip: one Push message with deltas of one collection. */
export async function receivePush(ctx: ReplicationContext, limiter: PeerRateLimiter, topic: string, data: Uint8Array, from: string): Promise<void> {
  const msg = admit(ctx, limiter, from, data)
  if (msg === undefined) return
  const stats = ctx.stats.of(from)
  let collection: string, backend: string, entries: [string, Uint8Array][]
  try {
    if (msg.type !== MessageType.Push) throw new Error(`unexpected message type ${msg.type} on a gossip topic`)
    const body = asRecord(msg.body, 'push')
    collection = asString(body.c, 'collection')
    backend = asString(body.b, 'backend')
    asString(body.o, 'origin')
    asInt(body.s, 'sequence')
    if (topic !== topicOf(ctx.namespace, collection)) throw new Error(`collection '${collection}' does not belong on topic ${topic}`)
    entries = asArray(body.e, 'entries', MAX_PUSH_ENTRIES).map((e, i) => {
      const pair = asArray(e, `entry ${i}`, 2)
      return [asString(pair[0], `entry ${i} id`), asBytes(pair[1], `entry ${i} delta`)] as [string, Uint8Array]
    })
  } catch (err) {
    dropMessage(ctx, stats, from, 'malformed', (err as Error).message)
    return
  }
  if (!limiter.takeEntries(from, entries.length)) {
    stats.dropped.rateLimited++
    stats.lastDrop = { reason: 'rateLimited', message: `a push of ${entries.length} entries is over the inbound entry rate` }
    return
  }
  await applyAll(ctx, from, collection, backend, entries)
}
