import { documentUntouched, type Backend, type DeltaLimits } from '../backend.js'
import { randomBytes } from '../clock.js'
import type { CollectionState } from '../entities.js'
import { isDead, type LoadedEntity } from '../entity-cache.js'
import { ConvergentError, ForkedActorError, isConvergentError, RefusedChangeError } from '../errors.js'
import { bytesEqual } from '../hash.js'
import { checkId, jsonWithin, type JsonObject, type ValueLimits } from '../json.js'
import { writeTo, type Made, type PendingWrite } from '../write.js'
import type { ReplicationContext } from './context.js'
import type { SignedBy } from '../trust/signed-push.js'
import type { DropReason } from './peer-stats.js'
import { drop } from './receiver.js'
import { causalSteps, rowsVerdictAhead, verdictOf, type ChangesJudged, type RowsVerdict } from './row-guard.js'
import { decodeHeaded, isHeaded, type CarriedHead } from './heads.js'
import { authorOf, changesOf, heldBeside, judgeHeads, judgeHeadsAhead, leavesWaiting, staleHeld, type Vouching } from './head-judge.js'
import { isBoundActor } from '../trust/actor-binding.js'
import type { VerifiedHead } from '../trust/signed-heads.js'
import type { CollectionHold } from './provisional.js'
import { HistoryWork, relayedBy } from './history-work.js'
import { forkRefusal, forkSigner } from './forks.js'

/**
 * Change records of an entity's history one peer may make this replica read, per minute, to
 * judge the changes it wrote (Automerge: ops named on an old base, op-refs.ts; ~13 µs each, so
 * ~2.6 s of CPU; charged per author: history-work.ts). Honest deltas read a few; a member can craft one that reads every change since an old
 * base (~1.2 s at 100,000 changes of history) and send it again and again.
 */
export const HISTORY_READS_PER_MINUTE = 200_000

/** How often a delta waits out writes of its entity in flight before the stored heads of its waiting changes are read (see applyHeld). */
const MAX_WAITS_FOR_HEADS = 16

/** Beyond this (either way) an origin's commit time is not taken as a lag sample. */
const MAX_PLAUSIBLE_LAG_MS = 24 * 3600_000

/**
 * 'later': nothing taken now, the delta waits for what this copy did not bring (changes it
 * depends on, or its authors' signed heads); counted as a duplicate, but unlike one, a signed
 * push holding it is not done with (receiver.ts): its heads travel outside its signature, so a
 * copy stripped of them must not make the genuine copy a duplicate.
 */
export type ApplyResult = 'applied' | 'duplicate' | 'later' | DropReason

/**
 * The receive path for one delta from a peer: check names and sizes → find the collection
 * (creating it only once a delta for it has applied cleanly) → apply, all or nothing →
 * persist → emit (writeEntity: the same sequence a local write takes). Bad input is dropped, counted against the peer and logged; it never throws,
 * never reaches the store, and never changes any state: a delta that fails to apply leaves no
 * trace in the document (it is discarded and reloaded from the store), the cache, the version
 * hash, the collection list or a collection's backend.
 */
export async function applyRemoteDelta(
  ctx: ReplicationContext,
  peer: string,
  collection: string,
  backendName: string,
  id: string,
  /** The delta, or a headed delta (heads.ts): the delta with its authors' signed heads. */
  received: Uint8Array,
  /** When the change was committed at the origin (its clock), if the message said: for replication lag. */
  originTime?: number,
  /** A signed push's verified author and proof: only its author's right to write counts, and the feed names it. */
  signed?: SignedBy,
  /** The author's heads a push carried for this entity, checked already (by actor). */
  pushHeads?: ReadonlyMap<string, VerifiedHead>,
): Promise<ApplyResult> {
  // The collection it made or used, while still provisional: kept only if the delta is taken.
  const held: { hold?: CollectionHold } = {}
  let result: ApplyResult | undefined
  try {
    result = await applyHeld(ctx, held, peer, collection, backendName, id, received, originTime, signed, pushHeads)
    return result
  } finally {
    held.hold?.(result === 'applied')
  }
}

async function applyHeld(
  ctx: ReplicationContext,
  held: { hold?: CollectionHold },
  peer: string,
  collection: string,
  backendName: string,
  id: string,
  received: Uint8Array,
  originTime: number | undefined,
  signed: SignedBy | undefined,
  pushHeads: ReadonlyMap<string, VerifiedHead> | undefined,
): Promise<ApplyResult> {
  const stats = ctx.stats.of(peer)
  const byAuthor = signed === undefined ? undefined : ctx.authorStats.of(signed.author)
  const dropped = (reason: DropReason, message: string): ApplyResult => {
    drop(ctx, peer, reason, message, { collection, entity: id })
    if (signed !== undefined) ctx.authorStats.drop(signed.author, reason, message)
    return reason
  }
  // Nothing taken now: anti-entropy brings it again, with what it waits for (counted as a duplicate).
  const later = (): ApplyResult => {
    stats.deltasDuplicate++
    return 'later'
  }
  try {
    checkId(collection, 'collection name', ctx.limits)
    checkId(id, 'id', ctx.limits)
  } catch (err) {
    return dropped('invalidId', (err as Error).message)
  }
  // A signed delta is its author's (whoever relays it); any other is vouched for by the peer
  // that sends it (anti-entropy). Only writers of the collection may do either.
  const writer = signed?.author ?? peer
  if (!ctx.access.mayWrite(writer, collection)) return dropped('forbidden', `the cluster policy does not let ${writer} write '${collection}'`)
  if (!ctx.access.mayRead(ctx.access.self, collection)) return dropped('forbidden', `the cluster policy does not let this replica read '${collection}'`)
  const backend = ctx.backends.get(backendName)
  if (backend === undefined) return dropped('unknownBackend', `unknown backend '${backendName}'`)
  if (received.byteLength > ctx.limits.maxDeltaBytes) {
    return dropped('tooLarge', `delta of ${received.byteLength} bytes exceeds maxDeltaBytes ${ctx.limits.maxDeltaBytes}`)
  }
  // Signed heads (heads.ts): in a cluster, every change of an actor bound to a peer must come
  // with that peer's signed head, whoever relays it; checked here (signatures) and once applied.
  let delta = received
  let carried: Uint8Array[] = []
  if (isHeaded(received)) {
    if (ctx.heads === undefined) return dropped('invalidDelta', 'a delta with signed heads, outside a cluster')
    try {
      ;({ delta, heads: carried } = decodeHeaded(received))
    } catch (err) {
      return dropped('invalidDelta', (err as Error).message)
    }
  }
  const history = ctx.heads !== undefined ? backend.history : undefined
  // Whether the sender sent heads (a headed delta, or a push's heads, checked already): it then
  // sends every head its changes need, and one missing is a refusal, not a wait.
  const headed = delta !== received || pushHeads !== undefined
  if (!ctx.isOpen()) return 'duplicate'
  const existing = ctx.entities.collections.get(collection)
  const kept = existing !== undefined && !(existing.tentative && !existing.persisted)
  if (kept && existing.backend !== backend) {
    return dropped('backendMismatch', dropMessageOf('backendMismatch', collection, backendName, ctx))
  }
  // A collection not held yet takes its backend from the policy, where it names one: the same
  // verdict on every replica, whichever delta comes first (else each keeps the first it took).
  const pinned = kept ? undefined : ctx.access.backendOf(collection)
  if (pinned !== undefined && pinned !== backendName) {
    return dropped('backendMismatch', `collection '${collection}' is pinned to '${pinned}' by the cluster policy; the delta is for '${backendName}'`)
  }
  // Garbage and bombs are refused before they cost a document (a Yjs doc is ~200 µs to make).
  try {
    const checking = backend.checkDelta?.(delta, deltaLimits(ctx))
    if (checking !== undefined) await checking
  } catch (err) {
    if (isConvergentError(err, 'ERR_TOO_LARGE')) return dropped('tooLarge', err.message)
    return dropped('invalidDelta', err instanceof ConvergentError ? err.message : `backend rejected the delta: ${String(err)}`)
  }
  // The delta's changes (signed heads), when it carries changes, not a whole document: read only
  // after that check, as reading them inflates them.
  const changes = history === undefined ? undefined : changesOf(history, delta)
  let vouched: ReadonlyMap<string, CarriedHead> = pushHeads ?? new Map<string, VerifiedHead>()
  if (history !== undefined && carried.length > 0) {
    const wanted = changes === undefined ? undefined : new Set(changes.map((c) => c.actor).filter(isBoundActor))
    const checked = await ctx.heads!.verifyAll(carried, { collection, id }, peer, wanted)
    if (checked.refused !== undefined) return dropped(checked.reason ?? 'badSignature', checked.refused)
    // Heads prove who made a change, not that it may be taken now: that is the sender's right to
    // write (above) or, in a push, its author's — as for any change. So a change of a writer since
    // removed still reaches a replica that lacks it (a new member), as the rest of the entity does.
    vouched = checked.heads
  }
  const found = collectionFor(ctx, collection, backend, delta)
  if (typeof found === 'string') return dropped(found, dropMessageOf(found, collection, backendName, ctx))
  if ('error' in found) return dropped('invalidDelta', found.error)
  const col = found.col
  held.hold = found.hold
  let refused: { reason: DropReason; message: string } | undefined
  // The author of the change the backend refused, where a verified head names it (HistoryWork.refused).
  let blamed: string | undefined
  let waits = false
  let entity
  try {
    entity = await ctx.entities.acquire(col, id)
  } catch (err) {
    return dropped('storeFailed', (err as Error).message)
  }
  // Signed heads, judged ahead from the delta's changes where it carries changes (not a whole
  // document): what waits or is not vouched for is turned away before it touches the document,
  // so no other write of the entity in flight is disturbed (a refusal after applying discards it).
  const from = { peer, ...(signed !== undefined ? { author: signed.author } : {}), headed, collection, id }
  // Heads to store with the change when the judgement ahead settled it (see below).
  let settled: Vouching | undefined
  // The heads stored for the entity while changes wait here (see ancestorsOfHeads): they vouched
  // for those changes when they came, and one is never replaced by an older head. Read too when
  // the delta leaves changes waiting: a head of one replaces the newest stored, which then stays
  // as the held head (heldBeside) — and with them the held heads of actors whose newest waits.
  let stored: ReadonlyMap<string, VerifiedHead> | undefined
  let heldHeads: ReadonlyMap<string, VerifiedHead> | undefined
  const guard = ctx.counterGuard(collection)
  const judged: ChangesJudged = {}
  if (history !== undefined) {
    // The heads of the changes waiting here are stored in the batch of the commit that queued
    // them, which may not have landed yet (memory runs ahead of the disk): read before it did, a
    // whole document that releases such a change was judged without its head, and the honest
    // relay that sent it refused as a forger (found by the simulator). So they are read once the
    // entity's writes in flight have landed (one that failed shows as isDead), and read again
    // only if a write that stored heads came meanwhile (LoadedEntity.headsWrite: local writes
    // store none; restarting on every write starved a hot entity, review rev2). An entity
    // dropped meanwhile is acquired again: a commit on it would fail (was: storeFailed).
    const waitsHere = changes !== undefined && leavesWaiting(history, entity.doc, changes)
    for (let tries = 0; waitsHere || backend.hasPending(entity.doc); tries++) {
      const last = entity.headsWrite
      await Promise.all([last, entity.lastWrite])
      const read = isDead(entity) ? undefined : await storedAndHeld(ctx, history, entity, collection, id)
      if (read !== undefined && !isDead(entity) && entity.headsWrite === last) {
        ;({ stored, held: heldHeads } = read)
        break
      }
      if (tries >= MAX_WAITS_FOR_HEADS) {
        ctx.entities.release(entity)
        return later() // kept busy: anti-entropy brings it again
      }
      if (isDead(entity)) {
        ctx.entities.release(entity)
        try {
          entity = await ctx.entities.acquire(col, id)
        } catch (err) {
          return dropped('storeFailed', (err as Error).message)
        }
      }
    }
    const ahead = changes === undefined ? 'ok' : judgeHeadsAhead(history, entity.doc, changes, vouched, from, stored)
    if (ahead === 'later' || (ahead !== 'ok' && 'refused' in ahead)) {
      ctx.entities.release(entity)
      return ahead === 'later' ? later() : dropped(ahead.refused.reason, ahead.refused.message)
    }
    // Settled ahead only if nothing can change the document before it is applied: no await
    // comes in between but the counter guard's.
    if (ahead !== 'ok' && guard === undefined) settled = ahead
  }
  // What judging it may read of the entity's history: what each change's author has left of
  // HISTORY_READS_PER_MINUTE (its actor's owner, as a verified head names it; else a push's
  // author, or the sender's account for what it relays: history-work.ts). Past it, a delta that
  // needs reads is refused unread, as a rate: it comes again (anti-entropy), the budget back in a minute.
  const charged = signed?.author ?? peer
  // An owner is charged only where it is one of a bounded set that a head cannot invent: a writer
  // of the collection under the adopted policy (a head verifies under any key: a member could
  // mint authors, each with a fresh minute, and fill the budget map until it is cleared,
  // review2 HOLE 7, 8). And only for changes known ahead, where the heads judged them before any
  // read: a delta holding a document is judged once applied, so a change forged under another
  // author's actor (with that author's old head, replayed) would be read at the author's cost
  // before the heads refuse it (HOLE 9); there the sender pays, as it vouches for the document.
  const owners = new Map<string, string | undefined>()
  const ownerOf = (actor: string): string | undefined => {
    if (changes === undefined) return undefined
    if (owners.has(actor)) return owners.get(actor)
    const author = vouched.get(actor)?.author ?? stored?.get(actor)?.author
    const owner = author !== undefined && ctx.access.hasPolicy && ctx.access.mayWrite(author, collection) ? author : undefined
    owners.set(actor, owner)
    return owner
  }
  // What the sender relays and did not write: its relay account (anti-entropy under a policy).
  const relayed = signed === undefined && ctx.access.hasPolicy ? relayedBy(peer) : undefined
  const historyWork = (): HistoryWork => new HistoryWork(ctx.historyReads, ctx.clock.now(), charged, ownerOf, relayed)
  const overRate = (work: HistoryWork, err: unknown): { reason: DropReason; message: string } => {
    const short = work.short()
    const message = `${short.join(', ')} ${short.length === 1 ? 'has' : 'have'} had ${HISTORY_READS_PER_MINUTE} changes of history read this minute to judge their changes: ${err instanceof Error ? err.message : String(err)}`
    // Logged, unlike the inbound rate's drops (a flood would fill the log): this one is rare,
    // and tells an operator which member makes the replicas read (a few lines per peer, dropLog).
    ctx.dropLog.log(short[0]!, message, { peer, charged: short.join(','), reason: 'rateLimited', collection, entity: id })
    return { reason: 'rateLimited', message }
  }
  // A fork of an actor (two changes of one seq): not the relay's bad delta (forks.ts).
  const forked = (err: ForkedActorError): { reason: DropReason; message: string } =>
    forkRefusal(ctx, err, { collection, id, peer, ...(signed !== undefined ? { author: signed.author } : {}) }, forkSigner(err, vouched, changes))
  // Counters in a cluster: a change may only add valid rows (row-guard.ts).
  let guardWork: HistoryWork | undefined
  if (guard !== undefined) {
    let verdict: RowsVerdict
    // The guard applies the delta to a copy, reading as the apply does: charged the same way,
    // before the first await (rowsVerdictAhead applies synchronously), so that deltas of one
    // peer in flight together cannot each read what is left.
    const work = historyWork()
    const judge = (fast: boolean): Promise<RowsVerdict | 'copy'> => {
      try {
        return rowsVerdictAhead(guard, backend, entity.doc, delta, { collection, id }, { ...deltaLimits(ctx), work }, ctx.clock, judged, fast)
      } finally {
        work.settle()
      }
    }
    try {
      let ahead = await judge(true)
      // A live push the judgement from its own writes did not pass (a row that does not verify,
      // a take-back, …): judged on a copy after all (the fast path read no history, so `work`
      // holds nothing yet), never applied to the entity and discarded (a reload per push).
      if (ahead === 'copy') ahead = await judge(false)
      verdict = ahead === 'copy' ? 'ok' : ahead
    } catch (err) {
      verdict = { refused: `the counter's rows could not be checked: ${String(err)}` }
    }
    // Not taken: what its authors were charged is the sender's (HistoryWork.refused), now (after the await).
    if (work.exhausted === true || verdict !== 'ok') work.refused(ctx.clock.now())
    // Passed here, it may yet not be taken by the apply below: then this copy's reads are the sender's too.
    else guardWork = work
    if (work.exhausted === true) {
      ctx.entities.release(entity)
      const refusal = overRate(work, `the counter's copy could not be judged`)
      return dropped(refusal.reason, refusal.message)
    }
    if (verdict !== 'ok') {
      ctx.entities.release(entity)
      return verdict === 'later' ? later() : dropped('forbidden', verdict.refused)
    }
  }
  // A document the backend rebuilt without changes that were queued in it (Backend.rebuilt) is
  // stored whole: the stored deltas hold those changes, and would bring them back on a load.
  const folded = (doc: unknown): { fold?: true } => (backend.rebuilt?.(doc) === true ? { fold: true } : {})
  // A change vouched for by heads: stored with them, and recorded as its author's when one head covers all of it.
  const vouchedMade = (doc: unknown, value: JsonObject | undefined, v: Vouching): Made => {
    const by = signed === undefined ? authorOf(v) : undefined // a signed push's proof names its author already
    const known = { vouched, stored, held: heldHeads }
    const held = history === undefined ? [] : heldBeside(history, doc, v.heads, known, { collection, id })
    if (held.length > 0) ctx.heads!.storingHeld(collection)
    // Held heads no longer needed go in the same batch (a record undefined: deleted).
    const stale = history === undefined ? [] : staleHeld(history, doc, v.heads, known, { collection, id }).map((key) => ({ key, record: undefined }))
    return {
      kind: 'remote',
      doc,
      delta,
      deleted: value === undefined,
      value: { value },
      heads: [...v.heads, ...held, ...stale],
      ...(by !== undefined ? { vouchedBy: by } : {}),
      ...folded(doc),
    }
  }
  // A delta that brings nothing new may bring heads this replica lost (heads.ts, wanted): those
  // verified, of actors whose change the document holds, are stored.
  const keepWantedHeads = (doc: unknown): void => {
    if (history === undefined || vouched.size === 0 || ctx.heads?.wantsHeads(collection, id) !== true) return
    const newestHeld = [...vouched.values()].map((h) => [h, h.earlier].find((c) => c !== undefined && history.holds(doc, c.hash)))
    ctx.heads.keepHeads(
      collection,
      id,
      newestHeld.filter((h) => h !== undefined),
    )
  }
  // Applies the delta to the entity's document and judges the result: what to commit, or 'unchanged' (refused: `refused` says why).
  const applyAndJudge = (entity: LoadedEntity, work: HistoryWork): Made | 'unchanged' => {
    // Before applying: a Yjs document changes in place. The version hash of a commit still
    // waiting for its flush is taken now, from the document it was made on (see discard()).
    ctx.entities.settleVersion(entity)
    const before = backend.version(entity.doc)
    // What waits here before a whole document is applied (see below).
    const waitedBefore =
      history !== undefined && changes === undefined && guard === undefined && backend.withoutPending !== undefined && backend.pendingIds !== undefined
        ? new Set(backend.hasPending(entity.doc) ? backend.pendingIds(entity.doc) : [])
        : undefined
    let onlyWaitedBefore = false
    const valueBefore = guard !== undefined ? backend.read(entity.doc) : undefined
    const pendingBefore = guard !== undefined && backend.hasPending(entity.doc)
    const conflictedBefore = guard === undefined ? [] : (backend.conflictedKeys?.(entity.doc) ?? [])
    let next: unknown
    try {
      next = backend.applyDelta(entity.doc, delta, { ...deltaLimits(ctx), work })
    } catch (err) {
      // Refused before it touched the document: the entity stays as it is (no reload).
      if (!documentUntouched(err)) ctx.entities.discard(col, entity)
      if (err instanceof RefusedChangeError && err.actor !== undefined) blamed = ownerOf(err.actor)
      refused = work.exhausted
        ? overRate(work, err)
        : err instanceof ForkedActorError
          ? forked(err)
          : isConvergentError(err, 'ERR_TOO_LARGE')
            ? { reason: 'tooLarge', message: err.message }
            : { reason: 'invalidDelta', message: err instanceof ConvergentError ? err.message : `backend rejected the delta: ${String(err)}` }
      return 'unchanged'
    }
    // From here on the entity holds what the backend returned (it may have freed the old
    // document); anything that goes wrong discards it and reloads the stored state.
    entity.doc = next
    let value
    try {
      // A whole document that leaves changes waiting was judged 'later' (judgeHeads: which of them
      // are new cannot be told), so one change that waits for good — a member's, naming a
      // dependency that does not exist, with its own head — kept every whole document of the
      // entity out, and with them every catch-up past compactCheckBytes, round after round
      // (review-liveness HOLE 1). Now, when only changes that waited here before it still
      // wait (judged when they came), it is judged as any other; else it is taken without the
      // changes that are new among those that wait, stored whole (rebuilt): what waited before
      // stays waiting, and what is new and honest comes again by anti-entropy.
      if (waitedBefore !== undefined && backend.hasPending(next)) {
        onlyWaitedBefore = backend.pendingIds!(next).every((id) => waitedBefore.has(id))
        // What waited here before stays waiting (an honest change waiting for one in flight
        // would be gone when that one comes: review2-liveness HOLE 1); only the new ones go.
        const alone = onlyWaitedBefore ? undefined : backend.withoutPending!(next, waitedBefore)
        if (alone !== undefined) {
          onlyWaitedBefore = true
          // `next` is not disposed of: it may share its memory with the document a reader of the
          // entity still holds (Automerge: loadIncremental moves it on in place), as after a rebuild.
          entity.doc = next = alone
          if (bytesEqual(backend.version(next), before)) {
            // Nothing but what waits: as before (the stored state, queue and all, reloads).
            ctx.entities.discard(col, entity)
            waits = true
            return 'unchanged'
          }
        }
      }
      if (bytesEqual(backend.version(next), before) && (onlyWaitedBefore || !backend.hasPending(next))) {
        keepWantedHeads(next)
        return 'unchanged'
      }
      // Read once: for the delete flag, as the value subscribers are told about, and to bound
      // it: a delta that builds a value over maxMergedValueBytes (or too deep) is refused — a
      // deleted entity's hidden content too (boundsBroken).
      value = backend.read(next)
      const broken = boundsBroken(ctx, backend, next, value)
      if (broken !== undefined) {
        ctx.entities.discard(col, entity)
        refused = { reason: broken === 'tooLarge' ? 'tooLarge' : 'invalidDelta', message: `the delta makes '${id}' ${valueLimitBroken(broken, ctx)}` }
        return 'unchanged'
      }
      // Judged again from the verdicts (the document may have changed since the check ahead:
      // then its changes are read again, each at its own past).
      const same = judged.version !== undefined && bytesEqual(judged.version, before) && !pendingBefore && !backend.hasPending(next)
      const verdict =
        guard === undefined
          ? 'ok'
          : verdictOf(
              guard,
              { collection, id },
              valueBefore,
              value,
              { before: pendingBefore, after: backend.hasPending(next) },
              { before: conflictedBefore, after: backend.conflictedKeys?.(next) ?? [] },
              same ? judged.steps : backend.hasPending(next) ? undefined : causalSteps(backend, next, before, { before: valueBefore, after: value }),
            )
      if (verdict !== 'ok') {
        ctx.entities.discard(col, entity)
        if (verdict !== 'later') refused = { reason: 'forbidden', message: verdict.refused }
        else {
          // Rows that arrived unchecked meanwhile: checked now, so that the next copy passes. It
          // comes again: 'later', not a duplicate (a signed push holding it is not done with).
          waits = true
          if (guard !== undefined) void guard.check(collection, id, value).catch(() => undefined)
        }
        return 'unchanged'
      }
      if (settled !== undefined) {
        if (settled.heads.length > 0) return vouchedMade(next, value, settled)
      } else if (history !== undefined) {
        // What waited here before and is released now was judged when it came (judgeHeads).
        const judged = judgeHeads(history, next, before, backend.hasPending(next) && !onlyWaitedBefore, vouched, from, stored, waitedBefore)
        if (typeof judged === 'string' || 'refused' in judged) {
          ctx.entities.discard(col, entity)
          if (judged === 'later') waits = true
          else refused = judged.refused
          return 'unchanged'
        }
        if (judged.heads.length > 0) return vouchedMade(next, value, judged)
      }
    } catch (err) {
      ctx.entities.discard(col, entity)
      refused = { reason: 'invalidDelta', message: `the delta left a document that cannot be read: ${String(err)}` }
      return 'unchanged'
    }
    return { kind: 'remote', doc: next, delta, deleted: value === undefined, value: { value }, ...folded(next) }
  }
  let pending: PendingWrite | 'unchanged'
  try {
    pending = writeTo(
      ctx.entities,
      ctx.events,
      col,
      entity,
      peer,
      (entity) => {
        // What judging it read, charged once it is judged; if it is not taken, to the sender (HistoryWork.refused).
        const work = historyWork()
        let made: Made | 'unchanged' = 'unchanged'
        try {
          made = applyAndJudge(entity, work)
          return made
        } finally {
          work.settle()
          if (made === 'unchanged') {
            work.refused(undefined, blamed)
            guardWork?.refused(ctx.clock.now(), blamed)
          }
        }
      },
      signed,
    )
  } catch (err) {
    return dropped('storeFailed', (err as Error).message) // an earlier write of it failed meanwhile
  }
  if (refused !== undefined) return dropped(refused.reason, refused.message)
  if (waits) return later()
  if (pending === 'unchanged') {
    stats.deltasDuplicate++
    if (byAuthor !== undefined) byAuthor.deltasDuplicate++
    return 'duplicate'
  }
  let entry
  try {
    entry = await pending.committed
  } catch (err) {
    return dropped('storeFailed', (err as Error).message)
  }
  stats.deltasApplied++
  if (byAuthor !== undefined) byAuthor.deltasApplied++
  // Durable here now: the lag is measured to this moment (across two clocks; see ObservedChange.lagMs).
  // A commit time more than a day from our clock is no measurement (a peer without a real-time
  // clock, or a hostile one): no sample, rather than a 56-year lag in every percentile.
  const lagMs = originTime === undefined ? undefined : ctx.clock.now() - originTime
  pending.finish(entry, lagMs === undefined || Math.abs(lagMs) > MAX_PLAUSIBLE_LAG_MS ? undefined : { lagMs })
  return 'applied'
}

/**
 * The heads stored for an entity (storedVerified), and the held heads (heldHeadKey) of the actors
 * among them whose newest names a change the entity's document does not hold: only those have one
 * (heldBeside). The caller holds the entity; undefined if it was dropped meanwhile.
 */
async function storedAndHeld(
  ctx: ReplicationContext,
  history: NonNullable<Backend['history']>,
  entity: LoadedEntity,
  collection: string,
  id: string,
): Promise<{ stored: Map<string, VerifiedHead>; held: Map<string, VerifiedHead> } | undefined> {
  const stored = await ctx.heads!.storedVerified(collection, id)
  if (isDead(entity)) return undefined
  // The document as it is now (a write may have moved it on during the read).
  const waiting = [...stored.values()].filter((h) => !history.holds(entity.doc, h.hash)).map((h) => h.actor)
  return { stored, held: await ctx.heads!.heldVerified(collection, id, waiting) }
}

/**
 * The collection a delta is for. One this replica does not have yet — or one whose backend
 * is still only a default and differs from the delta's — is created (or switched) only after
 * the delta applied cleanly to a fresh document of its backend, and only while the replica
 * holds fewer than maxCollections; and it stays provisional until a delta for it is taken
 * (provisional.ts): a peer cannot create collections, or change a backend, with deltas that
 * are then dropped — by the backend, or later by signed heads or a counter's rows.
 */
function collectionFor(
  ctx: ReplicationContext,
  name: string,
  backend: Backend,
  delta: Uint8Array,
): { col: CollectionState; hold: CollectionHold } | { error: string } | 'backendMismatch' | 'collectionLimit' | 'collectionDropped' {
  const existing = ctx.entities.collections.get(name)
  if (existing === undefined && ctx.refused.has(name)) return 'collectionDropped'
  if (existing !== undefined && existing.backend === backend) return { col: existing, hold: ctx.holdCollection(name) }
  const switching = existing !== undefined && existing.tentative && !existing.persisted
  if (existing !== undefined && !switching) return 'backendMismatch'
  if (existing === undefined && ctx.entities.collections.size >= ctx.limits.maxCollections) return 'collectionLimit'
  const error = trialApply(ctx, backend, delta)
  if (error !== undefined) return { error }
  return ctx.createCollection(name, backend)
}

/** Applies the delta to a fresh, throwaway document: undefined if it applies cleanly, else why not. */
function trialApply(ctx: ReplicationContext, backend: Backend, delta: Uint8Array): string | undefined {
  let doc = backend.create(randomBytes(ctx.clock, 16))
  try {
    doc = backend.applyDelta(doc, delta, deltaLimits(ctx))
    const broken = boundsBroken(ctx, backend, doc, backend.read(doc))
    if (broken !== undefined) return `the delta builds a value ${valueLimitBroken(broken, ctx)}`
    return undefined
  } catch (err) {
    return err instanceof ConvergentError ? err.message : `backend rejected the delta: ${String(err)}`
  } finally {
    try {
      backend.dispose?.(doc)
    } catch {
      // Gone either way.
    }
  }
}

/**
 * Whether the document a peer's delta built breaks the merged value limits: its value, or, while
 * the entity reads as deleted, what it holds hidden (Backend.readHidden). Hidden content is held
 * to the same limits because a put that did not see it shows it again: measured only once shown,
 * an object nested past maxDepth was taken while hidden and the put refused only where it had
 * come first — each side refusing the other's for good (review-order-refusals HOLE 1). Measured
 * either way, an object's depth is fixed where it was made, so the verdict on the change that
 * made it is the same everywhere.
 */
function boundsBroken(ctx: ReplicationContext, backend: Backend, doc: unknown, value: JsonObject | undefined): 'tooLarge' | 'tooDeep' | undefined {
  const measured = value ?? backend.readHidden?.(doc)
  return measured === undefined ? undefined : jsonWithin(measured, mergedLimits(ctx))
}

function deltaLimits(ctx: ReplicationContext): DeltaLimits {
  return { maxDecodedBytes: ctx.limits.maxDecodedBytes, maxDepth: ctx.limits.maxDepth }
}

/**
 * The limits a value built by a peer's delta is held to. Its size: maxMergedValueBytes, not
 * maxValueBytes — the merge of concurrent writes that each keep maxValueBytes may be larger, and
 * a refusal that depends on what else a replica took first would keep honest replicas apart for
 * good. Its depth: maxDepth, as an object's depth is fixed where it was made, so no merge of
 * honest writes nests deeper than one of them did.
 */
function mergedLimits(ctx: ReplicationContext): ValueLimits {
  return { maxValueBytes: Math.max(ctx.limits.maxValueBytes, ctx.limits.maxMergedValueBytes), maxDepth: ctx.limits.maxDepth }
}

function valueLimitBroken(broken: 'tooLarge' | 'tooDeep', ctx: ReplicationContext): string {
  return broken === 'tooLarge' ? `larger than maxMergedValueBytes (${mergedLimits(ctx).maxValueBytes})` : `nested deeper than maxDepth (${ctx.limits.maxDepth})`
}

function dropMessageOf(
  reason: 'backendMismatch' | 'collectionLimit' | 'collectionDropped',
  collection: string,
  backendName: string,
  ctx: ReplicationContext,
): string {
  if (reason === 'collectionDropped') return `collection '${collection}' was dropped here and is not taken from peers`
  if (reason === 'collectionLimit') return `collection '${collection}' is new and this replica already holds maxCollections (${ctx.limits.maxCollections})`
  return `collection '${collection}' uses '${ctx.entities.collections.get(collection)?.backend.name}', the delta is for '${backendName}'`
}
