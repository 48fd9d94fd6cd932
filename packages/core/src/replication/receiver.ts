import { isConvergentError } from '../errors.js'
import { applyAll } from './apply-all.js'
import { topicOf, type ReplicationContext } from './context.js'
import { decodeMessage, decodePush, UnsupportedVersionError, type DecodedMessage, type PushMessage } from './messages/index.js'
import type { DropReason } from './peer-stats.js'
import type { PeerRateLimiter } from './rate-limit.js'
import { startApplySpan } from '../tracing.js'
import { context, trace } from '@opentelemetry/api'

/**
 * Counts, remembers and logs one dropped message or delta from a peer (with the collection
 * and entity when known). Over-the-rate drops are counted quietly, and the log keeps to a few
 * lines per peer per window (DropLog): a flooding peer must not flood the log too.
 */
export function drop(ctx: ReplicationContext, peer: string, reason: DropReason, message: string, where: { collection?: string; entity?: string } = {}): void {
  ctx.stats.drop(peer, reason, message)
  if (reason !== 'rateLimited') ctx.dropLog.log(peer, message, { peer, reason, ...where })
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
export function admit(
  ctx: ReplicationContext,
  limiter: PeerRateLimiter,
  peer: string,
  data: Uint8Array,
  maxBytes = ctx.limits.maxMessageBytes,
): DecodedMessage | undefined {
  const stats = ctx.stats.of(peer)
  stats.messagesIn++
  stats.bytesIn += data.byteLength
  if (!limiter.take(peer, data.byteLength)) {
    drop(ctx, peer, 'rateLimited', 'over the inbound rate bound')
    return undefined
  }
  try {
    return decodeMessage(data, maxBytes)
  } catch (err) {
    drop(ctx, peer, dropReasonOf(err), (err as Error).message)
    return undefined
  }
}

/**
 * The receive path for gossip: one push with deltas of one collection, applied in a
 * `convergent.apply` span — a child of the writer's span when the push carried its trace
 * context — with the push's commit time handed on for replication lag.
 */
export async function receivePush(ctx: ReplicationContext, limiter: PeerRateLimiter, topic: string, data: Uint8Array, from: string): Promise<void> {
  const msg = admit(ctx, limiter, from, data, Math.min(ctx.limits.maxPushBytes, ctx.limits.maxMessageBytes))
  if (msg === undefined) return
  let push: PushMessage
  try {
    push = decodePush(msg.type, msg.body)
    if (topic !== topicOf(ctx.namespace, push.collection)) throw new Error(`collection '${push.collection}' does not belong on topic ${topic}`)
  } catch (err) {
    drop(ctx, from, 'malformed', (err as Error).message)
    return
  }
  if (!limiter.takeEntries(from, push.entries.length)) {
    drop(ctx, from, 'rateLimited', `a push of ${push.entries.length} entries is over the inbound entry rate`)
    return
  }
  const span = startApplySpan(ctx.tracer, push.traceparent, {
    'convergent.collection': push.collection,
    'convergent.peer': from,
    'convergent.origin': push.origin,
    'convergent.deltas': push.entries.length,
  })
  try {
    const results = await context.with(trace.setSpan(context.active(), span), () => applyAll(ctx, from, push.collection, push.backend, push.entries, push.time))
    if (span.isRecording()) span.setAttributes(countResults(results))
  } finally {
    span.end()
  }
}

function countResults(results: readonly string[]): { 'convergent.applied': number; 'convergent.duplicates': number; 'convergent.dropped': number } {
  let applied = 0
  let duplicates = 0
  for (const r of results) {
    if (r === 'applied') applied++
    else if (r === 'duplicate') duplicates++
  }
  return { 'convergent.applied': applied, 'convergent.duplicates': duplicates, 'convergent.dropped': results.length - applied - duplicates }
}
