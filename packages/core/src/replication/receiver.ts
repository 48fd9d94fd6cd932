import { isConvergentError } from '../errors.js'
import { applyAll } from './apply-all.js'
import { topicOf, type ReplicationContext } from './context.js'
import { decodeMessage, decodePush, UnsupportedVersionError, type DecodedMessage, type PushMessage } from './messages/index.js'
import type { DropReason, PeerStats } from './peer-stats.js'
import type { PeerRateLimiter } from './rate-limit.js'

/** Counts, remembers and logs one dropped message from a peer. */
export function dropMessage(ctx: ReplicationContext, stats: PeerStats, peer: string, reason: DropReason, message: string): void {
  stats.dropped[reason]++
  stats.lastDrop = { reason, message }
  ctx.logger.warn(`dropped a message from ${peer}: ${message}`, { peer, reason })
}

/** The reason a message that failed to decode is counted under. */
function dropReasonOf(err: unknown): DropReason {
  if (isConvergentError(err, 'ERR_TOO_LARGE')) return 'tooLarge'
  if (err instanceof UnsupportedVersionError) return 'unsupportedVersion'
  return 'malformed'
}

/**
 * Counts an inbound message against the peer, applies the rate bound and decodes its
 * envelope. Returns undefined (after counting and logging the drop) if it must be dropped.
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

/** The receive path for gossip: one push with deltas of one collection. */
export async function receivePush(ctx: ReplicationContext, limiter: PeerRateLimiter, topic: string, data: Uint8Array, from: string): Promise<void> {
  const msg = admit(ctx, limiter, from, data)
  if (msg === undefined) return
  const stats = ctx.stats.of(from)
  let push: PushMessage
  try {
    push = decodePush(msg.type, msg.body)
    if (topic !== topicOf(ctx.namespace, push.collection)) throw new Error(`collection '${push.collection}' does not belong on topic ${topic}`)
  } catch (err) {
    dropMessage(ctx, stats, from, 'malformed', (err as Error).message)
    return
  }
  if (!limiter.takeEntries(from, push.entries.length)) {
    stats.dropped.rateLimited++
    stats.lastDrop = { reason: 'rateLimited', message: `a push of ${push.entries.length} entries is over the inbound entry rate` }
    return
  }
  await applyAll(ctx, from, push.collection, push.backend, push.entries)
}
