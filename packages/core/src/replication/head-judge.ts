import type { BackendHistory, ChangeMeta } from '../backend.js'
import { actorOwnedBy, isBoundActor } from '../trust/actor-binding.js'
import { headKey, headProofId, heldHeadKey, MAX_FEED_HEADS, type VerifiedHead } from '../trust/signed-heads.js'
import { latestPerActor, type CarriedHead } from './heads.js'
import type { DropReason } from './peer-stats.js'

/**
 * The receive rule of signed heads (heads.ts says how they travel): whether the changes a delta
 * brings are vouched for by their authors' heads — judged ahead from the changes a delta
 * carries, or once applied for a whole document — and which heads to store with them.
 */

/** A change a delta carries, with what it depends on (BackendHistory.changesIn). */
export type DeltaChange = ChangeMeta & { deps: string[] }

/** Who sent a delta, and for what: a missing head is a wait or a refusal depending on it. */
export interface Sender {
  peer: string
  /** A signed push's author. */
  author?: string
  /** The sender sent heads (a headed delta, or a push's): it sends every head its changes need. */
  headed: boolean
  collection: string
  id: string
}

/** A refusal: dropped and counted. */
export type Refusal = { refused: { reason: DropReason; message: string } }

/**
 * The changes a delta carries (changesIn), or undefined when they show only once applied: a
 * whole document, or bytes that do not decode (applying refuses those).
 */
export function changesOf(history: BackendHistory, delta: Uint8Array): DeltaChange[] | undefined {
  try {
    return history.changesIn(delta)
  } catch {
    return undefined
  }
}

/** judgeHeads from the delta's changes alone, before it is applied: the verdict, with the heads to store when it passes. */
export function judgeHeadsAhead(
  history: BackendHistory,
  doc: unknown,
  changes: readonly DeltaChange[],
  vouched: ReadonlyMap<string, CarriedHead>,
  from: Sender,
  stored: ReadonlyMap<string, VerifiedHead> | undefined,
): 'later' | Refusal | Vouching {
  const carried = new Map(changes.map((c) => [c.hash, c]))
  const held = (hash: string): boolean => carried.has(hash) || history.holds(doc, hash)
  const fresh = changes.filter((c) => !history.holds(doc, c.hash))
  if (leavesWaiting(history, doc, changes)) {
    if (!ancestorsOfHeads(fresh, carried, vouched)) return 'later'
    if (!waitsServably(history, doc, changes, fresh, vouched, stored)) return 'later'
  }
  const judged = coverage(latestPerActor(fresh), vouched, held, from, stored)
  return judged.verdict === 'ok' ? { heads: judged.heads, unbound: judged.unbound } : judged.verdict
}

/** Every verified head carried: each actor's newest, and the earlier one beside it if one came. */
function allCarried(vouched: ReadonlyMap<string, CarriedHead>): VerifiedHead[] {
  return [...vouched.values()].flatMap((head) => (head.earlier === undefined ? [head] : [head, head.earlier]))
}

/** Whether some of a delta's changes depend on one neither `doc` holds nor the delta carries: they wait here (if taken). */
export function leavesWaiting(history: BackendHistory, doc: unknown, changes: readonly DeltaChange[]): boolean {
  const carried = new Set(changes.map((c) => c.hash))
  return changes.some((c) => c.deps.some((dep) => !carried.has(dep) && !history.holds(doc, dep)))
}

/**
 * Whether a delta's changes may wait here for ones that have not arrived (a push that overtook
 * the one before it): only if each is of a bound actor and its actor's verified head reaches it —
 * the head's change, or one of its dependencies through the changes carried. A forged change
 * waiting under another replica's actor would take the place of the genuine one when it comes;
 * these cannot be forged (the head's hash chain names them). Anything else waits for
 * anti-entropy to bring it whole. The walk goes through the actor's own changes only, so it
 * visits each change once however many heads come (a chain through another actor's change
 * waits for anti-entropy).
 */
function ancestorsOfHeads(fresh: readonly ChangeMeta[], carried: ReadonlyMap<string, DeltaChange>, vouched: ReadonlyMap<string, CarriedHead>): boolean {
  const reached = new Set<string>() // hashes of changes reached from their own actor's head
  for (const head of allCarried(vouched)) {
    const start = carried.get(head.hash)
    if (start === undefined || start.actor !== head.actor || start.seq !== head.seq) continue
    const stack = [start]
    while (stack.length > 0) {
      const c = stack.pop()!
      if (reached.has(c.hash)) continue
      reached.add(c.hash)
      for (const dep of c.deps) {
        const d = carried.get(dep)
        if (d !== undefined && d.actor === head.actor) stack.push(d)
      }
    }
  }
  return fresh.every((c) => isBoundActor(c.actor) && reached.has(c.hash))
}

/**
 * Whether a delta that leaves changes waiting here leaves this replica able to serve, with a
 * head whose change it holds, every change of the delta it applies — now, and when a waiting
 * one is released. A head of a waiting change vouches for it and its actor's earlier changes,
 * but a peer that lacks them cannot use it: it names a change that peer will not hold either
 * (review-s31 HOLE 1 and 1b: a member sent a change that waits for good, and a relay then served
 * an entity with that head only, which a peer lacking the changes before it never took). So:
 * - each actor's newest change that applies is covered by a head of a change that applies or is
 *   held here (carried, the earlier one carried, or stored);
 * - an actor has at most one change waiting here, the one its newest carried head names: the
 *   head stored for it then covers everything of the actor once it is released (a second
 *   waiting change would replace that head with its own, and the first released would have none).
 * Else the delta waits ('later'): anti-entropy brings the same changes with what they depend on,
 * and nothing waits (a sender's changes since this replica's version apply here), so honest
 * writes are only delayed — pushes overtaking one another.
 */
function waitsServably(
  history: BackendHistory,
  doc: unknown,
  changes: readonly DeltaChange[],
  fresh: readonly DeltaChange[],
  vouched: ReadonlyMap<string, CarriedHead>,
  stored: ReadonlyMap<string, VerifiedHead> | undefined,
): boolean {
  const applies = applicableOf(history, doc, changes)
  const heldAfter = (hash: string): boolean => applies.has(hash) || history.holds(doc, hash)
  const waitingActors = new Set<string>()
  for (const c of fresh) {
    if (applies.has(c.hash)) continue
    if (waitingActors.has(c.actor)) return false // a second waiting change of the actor
    waitingActors.add(c.actor)
    if (vouched.get(c.actor)?.hash !== c.hash) return false // not the one its newest head names
    const kept = stored?.get(c.actor)
    if (kept !== undefined && !history.holds(doc, kept.hash)) return false // one of the actor's waits here already
  }
  for (const [actor, change] of latestPerActor(fresh.filter((c) => applies.has(c.hash)))) {
    if (!isBoundActor(actor)) continue // vouched for by the sender (ancestorsOfHeads let none wait)
    const carried = vouched.get(actor)
    const covers = (head: VerifiedHead | undefined): boolean => head !== undefined && head.seq >= change.seq && heldAfter(head.hash)
    if (!covers(carried) && !covers(carried?.earlier) && !covers(stored?.get(actor))) return false
  }
  return true
}

/**
 * The hashes of the changes a delta carries that apply here now: those each of whose
 * dependencies `doc` holds or is one of them that applies. Linear in the changes (each judged
 * once, depth first without recursion); a dependency cycle, which no honest delta has, applies nothing.
 */
function applicableOf(history: BackendHistory, doc: unknown, changes: readonly DeltaChange[]): Set<string> {
  const carried = new Map(changes.map((c) => [c.hash, c]))
  const verdict = new Map<string, boolean>() // judged: whether it applies
  const open = new Set<string>() // on the stack (a dependency met there again is a cycle)
  for (const root of changes) {
    if (verdict.has(root.hash)) continue
    // Each frame resumes at the dependency it stopped at: every dependency is looked at once.
    const stack: { change: DeltaChange; next: number }[] = [{ change: root, next: 0 }]
    open.add(root.hash)
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!
      const { deps, hash } = frame.change
      let applies = true
      let descend: DeltaChange | undefined
      for (; frame.next < deps.length; frame.next++) {
        const dep = deps[frame.next]!
        const d = carried.get(dep)
        const judged = verdict.get(dep)
        if (judged !== undefined) applies = judged
        else if (d === undefined) applies = history.holds(doc, dep)
        else if (open.has(dep)) applies = false
        else {
          descend = d
          break
        }
        if (!applies) break
      }
      if (descend !== undefined) {
        open.add(descend.hash)
        stack.push({ change: descend, next: 0 })
        continue
      }
      verdict.set(hash, applies)
      open.delete(hash)
      stack.pop()
    }
  }
  const out = new Set<string>()
  for (const [hash, applies] of verdict) if (applies) out.add(hash)
  return out
}

/**
 * Whether every bound actor's newest new change is covered by a vouched head the document will
 * hold: the newest carried, the earlier one beside it (a relay's held head: its newest may be of
 * a change waiting there, which the delta of what it applied does not carry), or the one stored.
 */
function coverage(
  latest: ReadonlyMap<string, { seq: number }>,
  vouched: ReadonlyMap<string, CarriedHead>,
  held: (hash: string) => boolean,
  from: Sender,
  /** Heads stored here while changes wait (see applyRemoteDelta): they vouch too, and one newer than the head that vouches stays stored. */
  stored?: ReadonlyMap<string, VerifiedHead>,
): { verdict: 'ok' | 'later' | Refusal } & Vouching {
  const heads: VouchingHead[] = []
  let unbound = false
  for (const [actor, change] of latest) {
    if (!isBoundActor(actor)) {
      unbound = true
      continue
    }
    const covers = (head: VerifiedHead | undefined): head is VerifiedHead => head !== undefined && head.seq >= change.seq && held(head.hash)
    const carried = vouched.get(actor)
    const kept = stored?.get(actor)
    // Only when neither of the others covers: else what is stored is as it always was.
    const earlier = covers(carried) || covers(kept) ? undefined : vouched.get(actor)?.earlier
    if (covers(carried) || covers(kept) || covers(earlier)) {
      // The newest of the two is stored: a waiting change's head is never replaced by an older
      // one. The earlier carried head stands in for the newest when only it covers (the newest
      // names a change that is not here: stored, it would leave this replica the same gap).
      const offered = earlier ?? carried
      const head = kept !== undefined && (offered === undefined || kept.seq > offered.seq) ? kept : offered!
      heads.push({ key: headKey(from.collection, from.id, actor), record: head.record, author: head.author, actor, hash: head.hash })
      continue
    }
    // Without a head: the sender's own changes not signed yet, or a sender that does not send
    // heads (an older release, or before it said it reads them) — anti-entropy brings them again.
    // So also a head of a later change of the actor than the delta brings (verified: its owner
    // made that change): an honest relay whose stored head moved on between reading the delta
    // and its heads. The change it covers is not here, so neither is the proof; it comes again.
    const ahead = (head: VerifiedHead | undefined): boolean => head !== undefined && head.seq > change.seq && !held(head.hash)
    if (!from.headed || actorOwnedBy(actor, from.peer) || (from.author !== undefined && actorOwnedBy(actor, from.author)) || ahead(carried))
      return { verdict: 'later', heads, unbound }
    const message = `changes of actor ${actor} (to seq ${change.seq}) of '${from.id}' came without a head signed by the peer that owns the actor`
    return { verdict: { refused: { reason: 'forbidden', message } }, heads, unbound }
  }
  return { verdict: 'ok', heads, unbound }
}

/** A head that vouched for a change, stored with it (meta record `key`), whose it is, and the hash of the change it names. */
interface VouchingHead {
  key: string
  record: Uint8Array
  author: string
  actor: string
  hash: string
}

/** The verified heads an entity's change may be judged with, by actor (see heldBeside). */
export interface KnownHeads {
  /** Those the sender carried. */
  vouched: ReadonlyMap<string, CarriedHead>
  /** Those stored here (the newest per actor), when read. */
  stored?: ReadonlyMap<string, VerifiedHead> | undefined
  /** The held heads stored here (heldHeadKey), when read. */
  held?: ReadonlyMap<string, VerifiedHead> | undefined
}

/**
 * The held heads (heldHeadKey) to store beside the heads a change stores: for each of those that
 * names a change `doc` does not hold (one waiting here), the newest head of its actor whose
 * change `doc` holds — among those carried, stored and held here, all verified — if newer than
 * the held head stored. The newest head stays the one stored under headKey (a waiting change is
 * judged with it when it is released); the held one is what this replica serves the changes of
 * the actor it applied with (heads.ts). Neither is trusted by a peer: it verifies each.
 */
export function heldBeside(
  history: BackendHistory,
  doc: unknown,
  heads: readonly VouchingHead[],
  known: KnownHeads,
  where: { collection: string; id: string },
): { key: string; record: Uint8Array }[] {
  const out: { key: string; record: Uint8Array }[] = []
  for (const head of heads) {
    if (history.holds(doc, head.hash)) continue
    const carried = known.vouched.get(head.actor)
    const kept = known.held?.get(head.actor)
    const candidates = [carried, carried?.earlier, known.stored?.get(head.actor), kept]
    let best: VerifiedHead | undefined
    for (const c of candidates) {
      if (c !== undefined && c.actor === head.actor && history.holds(doc, c.hash) && (best === undefined || c.seq > best.seq)) best = c
    }
    if (best !== undefined && (kept === undefined || best.seq > kept.seq))
      out.push({ key: heldHeadKey(where.collection, where.id, head.actor), record: best.record })
  }
  return out
}

/**
 * The held heads (heldHeadKey) a change makes stale, to delete in its batch: of actors whose
 * newest head — the one stored with it, else the one stored — names a change `doc` now holds
 * (the queue that kept a held head beside it has drained). Each left behind cost ~0.5 KB and a
 * signature check on every whole send of the entity. `known.held` holds the held heads of the
 * actors whose newest change waited before the delta (apply.ts storedAndHeld).
 */
export function staleHeld(
  history: BackendHistory,
  doc: unknown,
  heads: readonly VouchingHead[],
  known: KnownHeads,
  where: { collection: string; id: string },
): string[] {
  const out: string[] = []
  for (const actor of known.held?.keys() ?? []) {
    const newest = heads.find((h) => h.actor === actor) ?? known.stored?.get(actor)
    if (newest !== undefined && history.holds(doc, newest.hash)) out.push(heldHeadKey(where.collection, where.id, actor))
  }
  return out
}

/** The heads that vouched for a change, and whether it also holds changes of unbound actors (vouched for by the sender). */
export interface Vouching {
  heads: VouchingHead[]
  unbound: boolean
}

/**
 * How the feed records a change its authors' heads vouched for all of (only bound actors'
 * changes, at most MAX_FEED_HEADS actors): the heads as its proof (headProofId), and as its
 * origin their author when there is one (else the relaying peer, and audit names the authors).
 * Else undefined: the sender vouched for (some of) it, as before.
 */
export function authorOf(v: Vouching): { author?: string; proof: string } | undefined {
  if (v.unbound || v.heads.length === 0 || v.heads.length > MAX_FEED_HEADS) return undefined
  const authors = new Set(v.heads.map((h) => h.author))
  const proof = headProofId(v.heads.map((h) => h.actor))
  return authors.size === 1 ? { author: v.heads[0]!.author, proof } : { proof }
}

/**
 * Whether the changes a delta added to a document are vouched for by their authors' heads:
 * every change of a bound actor must be covered by a verified head of that actor (seq at least
 * its own) whose change the document now holds — Automerge's hash chain then makes it the
 * author's. Changes of unbound actors (development mode, older releases) stay vouched for by
 * the writer that sent them. A delta that leaves changes waiting for others is not taken
 * ('later'): a waiting change cannot be checked here (only ahead, from the changes a delta
 * carries), and anti-entropy brings it whole. So also when changes waited before: which are
 * new among those still waiting cannot be told, and a forged one may hide among them.
 *
 * Changes that waited here before the delta and are released by it (`waited`: their hashes)
 * are not judged again: each was judged when it came (only a change its own actor's verified
 * head reaches may wait), as a delta of changes that releases them takes them. Judged again,
 * one could fail for no fault of the sender: the head stored for its actor may be that of a
 * later change still waiting (the newest is kept), so not held, and the sender's older.
 */
export function judgeHeads(
  history: BackendHistory,
  doc: unknown,
  before: Uint8Array,
  pendingAfter: boolean,
  vouched: ReadonlyMap<string, CarriedHead>,
  from: Sender,
  stored: ReadonlyMap<string, VerifiedHead> | undefined,
  waited?: ReadonlySet<string>,
): 'later' | Refusal | Vouching {
  if (pendingAfter) return 'later'
  const since = history.changesSince(doc, before)
  const brought = waited === undefined || waited.size === 0 ? since : since.filter((c) => !waited.has(c.hash))
  const judged = coverage(latestPerActor(brought), vouched, (hash) => history.holds(doc, hash), from, stored)
  return judged.verdict === 'ok' ? { heads: judged.heads, unbound: judged.unbound } : judged.verdict
}
