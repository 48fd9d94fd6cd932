import { isConvergentError } from '../errors.js'
import { applyAll } from './apply-all.js'
import { topicOf, type ReplicationContext } from './context.js'
import {
  decodeMessage,
  decodePush,
  decodeSignedPush,
  MAX_PUSH_ENTRIES,
  MessageType,
  UnsupportedVersionError,
  type DecodedMessage,
  type PushMessage,
  type SignedPushMessage,
  type PushHeads,
} from './messages/index.js'
import { decodePayload, deltasMatch, encodeProof, proofIdOf, signingInput, type PushPayload, type SignedBy } from '../trust/signed-push.js'
import type { DropReason } from './peer-stats.js'
import type { PeerRateLimiter } from './rate-limit.js'
import { startApplySpan } from '../tracing.js'
import type { VerifiedHead } from '../trust/signed-heads.js'
import { context, trace } from '@opentelemetry/api'

/**
 * How long a signature check may take before the push is refused (not counted against its
 * sender): a TrustOptions.verify that never answers must not stall the sender's checks for good.
 */
export const VERIFY_TIMEOUT_MS = 5_000

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
  const admitted = admitOrWhy(ctx, limiter, peer, data, maxBytes)
  return 'dropped' in admitted ? undefined : admitted
}

/** As admit, but says why a message was dropped (the sync server tells the requester). */
export function admitOrWhy(
  ctx: ReplicationContext,
  limiter: PeerRateLimiter,
  peer: string,
  data: Uint8Array,
  maxBytes = ctx.limits.maxMessageBytes,
): DecodedMessage | { dropped: DropReason } {
  const stats = ctx.stats.of(peer)
  stats.messagesIn++
  stats.bytesIn += data.byteLength
  if (!limiter.take(peer, data.byteLength)) {
    drop(ctx, peer, 'rateLimited', 'over the inbound rate bound')
    return { dropped: 'rateLimited' }
  }
  try {
    return decodeMessage(data, maxBytes)
  } catch (err) {
    const reason = dropReasonOf(err)
    drop(ctx, peer, reason, (err as Error).message)
    return { dropped: reason }
  }
}

/**
 * The author's heads of a signed push's entries (heads.ts), checked once for the whole push. Heads
 * that do not check out are counted against the sender and left out: the deltas then wait for
 * anti-entropy (the heads travel outside the push's signature, so a relay may have garbled them).
 */
async function pushHeadsOf(
  ctx: ReplicationContext,
  from: string,
  push: PushMessage,
  heads: PushHeads | undefined,
): Promise<(Map<string, VerifiedHead> | undefined)[] | undefined> {
  if (ctx.heads === undefined || heads === undefined) return undefined
  const checked = await ctx.heads.verifyPush(
    push.collection,
    heads,
    push.entries.map(([id]) => id),
    from,
  )
  if (Array.isArray(checked)) return checked
  drop(ctx, from, checked.reason, `the heads of a push of '${push.collection}': ${checked.refused}`, { collection: push.collection })
  return undefined
}

/**
 * What became of a push: 'waits' when a delta of it was answered 'later' (it waits for changes
 * or heads this copy did not bring — in a cluster, a push that overtook the one before it);
 * its gaps: the entities taken with changes left waiting for ones this replica lacks (a push
 * before it was lost, or too large to push), where none waited before. Anti-entropy with the
 * sender brings them, so the replicator starts a round with it soon rather than at the next
 * scheduled one (for gaps: gap-rounds.ts).
 */
export type PushOutcome = 'done' | 'waits' | { collection: string; gaps: string[] }

/**
 * The receive path for gossip: one push with deltas of one collection, applied in a
 * `convergent.apply` span — a child of the writer's span when the push carried its trace
 * context — with the push's commit time handed on for replication lag. A signed push
 * (SignedPush, sent in a cluster) is its author's: its signature and every delta's hash are
 * checked first, and then only the author's right to write counts, whoever relayed it. Once a
 * policy is in force an unsigned push is dropped (badSignature).
 */
export async function receivePush(ctx: ReplicationContext, limiter: PeerRateLimiter, topic: string, data: Uint8Array, from: string): Promise<PushOutcome> {
  const msg = admit(ctx, limiter, from, data, Math.min(ctx.limits.maxPushBytes, ctx.limits.maxMessageBytes))
  if (msg === undefined) return 'done'
  let push: PushMessage
  let signed: SignedPushMessage | undefined
  let payload: PushPayload | undefined
  try {
    if (msg.type === MessageType.SignedPush) {
      signed = decodeSignedPush(msg.body)
      payload = decodePayload(signed.payload, MAX_PUSH_ENTRIES)
      if (payload.namespace !== ctx.namespace) throw new Error(`a push signed for namespace '${payload.namespace}'`)
      if (payload.entries.length !== signed.deltas.length)
        throw new Error(`a signed push of ${payload.entries.length} entries carrying ${signed.deltas.length} deltas`)
      push = pushOf(payload, signed)
    } else {
      push = decodePush(msg.type, msg.body)
    }
    if (topic !== topicOf(ctx.namespace, push.collection)) throw new Error(`collection '${push.collection}' does not belong on topic ${topic}`)
  } catch (err) {
    drop(ctx, from, 'malformed', (err as Error).message)
    return 'done'
  }
  if (!limiter.takeEntries(from, push.entries.length)) {
    drop(ctx, from, 'rateLimited', `a push of ${push.entries.length} entries is over the inbound entry rate`)
    return 'done'
  }
  let by: SignedBy | undefined
  if (signed !== undefined && payload !== undefined && ctx.access.signsWrites) {
    const admitted = await admitSigned(ctx, from, signed, payload, push)
    if (admitted === undefined) return 'done'
    by = admitted
  } else if (signed === undefined && ctx.access.requiresSignedWrites) {
    drop(ctx, from, 'badSignature', `an unsigned push of '${push.collection}': in this cluster gossip must be signed by its author`, {
      collection: push.collection,
    })
    return 'done'
  }
  const span = startApplySpan(ctx.tracer, push.traceparent, {
    'convergent.collection': push.collection,
    'convergent.peer': from,
    'convergent.origin': push.origin,
    'convergent.deltas': push.entries.length,
  })
  try {
    const heads = by === undefined ? undefined : await pushHeadsOf(ctx, from, push, signed?.heads)
    // Entities that held changes waiting already: a delta taken with them still waiting made no
    // gap of its own. Else one change that waits for good (a peer's dangling change, or one whose
    // dependency was lost for good) would make every later push of the entity, honest ones, start
    // a round with its sender — which cannot bring what never existed.
    const waitedBefore = push.entries.map(([id]) => ctx.entities.holdsWaiting(push.collection, id))
    const results = await context.with(trace.setSpan(context.active(), span), () =>
      applyAll(ctx, from, push.collection, push.backend, push.entries, push.time, by, heads),
    )
    if (span.isRecording()) span.setAttributes(countResults(results))
    const waits = results.includes('later')
    const gaps = push.entries
      .filter(([id], i) => results[i] === 'applied' && !waitedBefore[i] && ctx.entities.holdsWaiting(push.collection, id))
      .map(([id]) => id)
    if (by !== undefined) {
      // A delta that did not reach the store (a failed write), or that waits ('later': for its
      // heads, which travel outside the push's signature — a relay may have stripped, garbled or
      // swapped them — or for changes it depends on), or that was not judged now (rateLimited: its
      // author's history reads spent this minute, apply.ts): a replay may bring it after all.
      if (results.includes('storeFailed') || results.includes('later') || results.includes('rateLimited'))
        ctx.entities.proofs.failed(push.collection, by.proof.id)
      else {
        ctx.entities.proofs.complete(push.collection, by.proof.id)
        // Verified, but every delta was held already: no commit carried its proof. Stored anyway,
        // so that a replay of it stays a duplicate after PushProofs forgot it (or a restart).
        if (results.length > 0 && results.every((r) => r === 'duplicate') && ctx.isOpen()) {
          await ctx.entities.storeProof(push.collection, by.proof).catch(() => undefined) // a failed write is the tick's writers' to report
        }
      }
    }
    return waits ? 'waits' : gaps.length > 0 ? { collection: push.collection, gaps } : 'done'
  } finally {
    span.end()
  }
}

/**
 * The checks a signed push goes through before its deltas are applied, cheapest first (a
 * verify costs ~0.15 ms for an Ed25519 key, milliseconds for a secp256k1 one): the author's
 * right to write (the claim is not verified yet, so a drop counts against the sender only);
 * a replay of a push already stored (a duplicate: nothing to verify or apply again); the
 * sender's budget of failed checks; the signature; every delta against its signed hash.
 * Returns the verified author and the proof to store, or undefined (dropped and counted).
 */
async function admitSigned(
  ctx: ReplicationContext,
  from: string,
  signed: SignedPushMessage,
  payload: PushPayload,
  push: PushMessage,
): Promise<SignedBy | undefined> {
  const where = { collection: push.collection }
  if (!ctx.access.mayWrite(payload.author, push.collection)) {
    drop(ctx, from, 'forbidden', `a push of '${push.collection}' in the name of ${payload.author}, who may not write it (its signature not checked)`, where)
    return undefined
  }
  const id = proofIdOf(signed.signature)
  const duplicate = (): undefined => {
    ctx.stats.of(from).deltasDuplicate += push.entries.length
    return undefined
  }
  // A copy of a push being checked waits for that check (one verify and one apply per push,
  // however many copies arrive at once); if that one was refused, this one is checked itself
  // (waiting once only: copies waking each other up in turns would cost n² for n copies).
  const earlier = ctx.entities.proofs.admission(push.collection, id)
  if (earlier === true || (earlier !== undefined && (await earlier)) || ctx.entities.proofs.admission(push.collection, id) === true) return duplicate()
  const verdict = ctx.entities.proofs.begin(push.collection, id)
  let passed = false
  try {
    if (await ctx.entities.proofs.stored(push.collection, id)) {
      passed = true
      return duplicate()
    }
    // One check per sender at a time: its budget of failed checks is then exact (concurrent
    // checks could all pass the budget before any failure counted), and honest bursts cost
    // nothing more (a verify is synchronous CPU work either way). Only failures count.
    const refused = await ctx.pushChecks.run(from, async () => {
      if (!ctx.access.mayCheckPushFrom(from, ctx.clock.now()))
        return `a signed push of '${push.collection}' not checked: ${from} sent too many that failed in the last minute`
      const why = await checkSignedPush(ctx, signed, payload, push.entries)
      if (typeof why === 'object') return why.why // the fault is local, not the sender's
      if (why !== undefined) ctx.access.pushCheckFailed(from, ctx.clock.now())
      return why
    })
    if (refused !== undefined) {
      drop(ctx, from, 'badSignature', refused, where)
      return undefined
    }
    passed = true
    return { author: payload.author, proof: { id, record: encodeProof(signed) } }
  } finally {
    if (passed) verdict.passed()
    else verdict.refused()
  }
}

/** A signed push as the plain push it carries. */
function pushOf(payload: PushPayload, signed: SignedPushMessage): PushMessage {
  return {
    collection: payload.collection,
    backend: payload.backend,
    origin: payload.author,
    sequence: payload.sequence,
    entries: payload.entries.map(([id], i): [string, Uint8Array] => [id, signed.deltas[i]!]),
    ...(payload.time !== undefined ? { time: payload.time } : {}),
    ...(signed.traceparent !== undefined ? { traceparent: signed.traceparent } : {}),
  }
}

/**
 * Why a signed push does not verify (its author's signature, then each delta against its signed hash), or undefined;
 * `late` if the signature check had no answer in time (VERIFY_TIMEOUT_MS).
 */
async function checkSignedPush(
  ctx: ReplicationContext,
  signed: SignedPushMessage,
  payload: PushPayload,
  entries: PushMessage['entries'],
): Promise<string | { why: string; late: true } | undefined> {
  let timer: ReturnType<ReplicationContext['clock']['setTimeout']> | undefined
  const late = new Promise<'late'>((resolve) => (timer = ctx.clock.setTimeout(() => resolve('late'), VERIFY_TIMEOUT_MS)))
  const ok = await Promise.race([ctx.access.verifyBy(payload.author, signingInput(signed.payload), signed.signature), late]).finally(() =>
    ctx.clock.clearTimeout(timer!),
  )
  if (ok === 'late')
    return { why: `a push of '${payload.collection}' not checked: its signature check had no answer within ${VERIFY_TIMEOUT_MS} ms`, late: true }
  if (!ok) return `a push of '${payload.collection}' whose signature does not verify under its author ${payload.author}`
  if (!deltasMatch(payload, entries)) return `a push of '${payload.collection}' signed by ${payload.author} whose deltas do not match the hashes it signs`
  return undefined
}

function countResults(results: readonly string[]): { 'convergent.applied': number; 'convergent.duplicates': number; 'convergent.dropped': number } {
  let applied = 0
  let duplicates = 0
  for (const r of results) {
    if (r === 'applied') applied++
    else if (r === 'duplicate' || r === 'later') duplicates++
  }
  return { 'convergent.applied': applied, 'convergent.duplicates': duplicates, 'convergent.dropped': results.length - applied - duplicates }
}
