import type { Backend, DeltaLimits } from '../backend.js'
import { randomBytes, type Clock } from '../clock.js'
import { addedHolders, changedRows, overspendRows, removedHolders, rowsOf, rowsVerdict, type CausalStep, type SignedRows } from '../counter-rows.js'
import type { JsonObject } from '../json.js'

/**
 * The receive path's guard of counters' signed rows (in a cluster). A row can be relayed by
 * anyone but made only by its holder; the guard refuses every change that does more than add
 * valid rows (counter-rows.ts, rowsVerdict), whichever way it came — gossip, anti-entropy, a
 * rights answer — so forged, taken-back or over-spending rows never enter an honest replica,
 * and every honest change passes on every replica.
 *
 * Which collections: those opened here as counters (remembered across restarts) and those the
 * cluster policy declares counters (`counter: true`), so that a replica that relays a counter
 * without reading it guards it too. Signatures are checked async, before the real apply
 * touches anything; the apply then judges from the verdicts alone (sync), on the document as it
 * is then. Judged ahead: one change on top of the document (a live push) from its own writes
 * (nextChange), taken without a copy only when that says ok; anything else on a throwaway copy
 * of the document with the delta applied, as the apply will judge it.
 */
export type RowsVerdict = 'ok' | 'later' | { refused: string }

/**
 * What the judgement ahead read of the delta's changes, from the document at `version` (none
 * waiting): the apply reuses it while the document is still at that version and holds none
 * waiting (the same document: the same changes, the same values), rather than reading every
 * value at other heads again, synchronously.
 */
export interface ChangesJudged {
  version?: Uint8Array
  steps?: CausalStep[]
}

export async function rowsVerdictAhead(
  rows: SignedRows,
  backend: Backend,
  doc: unknown,
  delta: Uint8Array,
  where: { collection: string; id: string },
  limits: DeltaLimits,
  clock: Clock,
  judged?: ChangesJudged,
  /** False: judged on a copy whatever the delta (the caller's second call after 'copy'). */
  fast = true,
): Promise<RowsVerdict | 'copy'> {
  // Everything taken from `doc` before the first await: the entity's document may be replaced (and freed) meanwhile.
  const before = backend.read(doc)
  const versionBefore = backend.version(doc)
  const pendingBefore = backend.hasPending(doc)
  const conflictedBefore = backend.conflictedKeys?.(doc) ?? []
  const next = !fast || pendingBefore || before === undefined ? undefined : nextChange(backend, doc, delta, before, conflictedBefore)
  if (next !== undefined) {
    // One change on top of the document (a live push): judged from the change itself, without a
    // copy of the document, whose cost grows with the history (a clone and a second apply: about
    // half of what a hot counter's receiver spent). Every row the verdict reads is checked:
    // those here and those the change puts. Only an 'ok' is taken from it: the apply judges it
    // again, and a change refused there is discarded with the entity, whose reload costs what the
    // history holds (a member's refused pushes cost ~40x what a copy did: review-s35-guard, HOLE
    // 2, 3). Anything else is judged on a copy (the caller calls again with `fast` false).
    await rows.check(where.collection, where.id, before)
    for (const [key, value] of changedRows(before, next.after)) if (!(await rows.checkOne(where.collection, where.id, key, value))) return 'copy'
    return verdictOf(rows, where, before, next.after, NOTHING_WAITS, next.conflicted, [next.step]) === 'ok' ? 'ok' : 'copy'
  }
  let copy: unknown
  let after: JsonObject | undefined
  let pendingAfter: boolean
  let conflictedAfter: string[]
  let steps: CausalStep[] | undefined
  try {
    copy = backend.clone !== undefined ? backend.clone(doc) : backend.load(backend.save(doc), [], randomBytes(clock, 16))
    copy = backend.applyDelta(copy, delta, limits)
    after = backend.read(copy)
    pendingAfter = backend.hasPending(copy)
    conflictedAfter = backend.conflictedKeys?.(copy) ?? []
    steps = pendingAfter ? undefined : causalSteps(backend, copy, versionBefore, { before, after })
    if (judged !== undefined && !pendingBefore && !pendingAfter) Object.assign(judged, { version: versionBefore, steps })
  } catch {
    return 'ok' // the apply itself refuses a delta that does not apply, and says why
  } finally {
    if (copy !== undefined) {
      try {
        backend.dispose?.(copy)
      } catch {
        // Gone either way.
      }
    }
  }
  const waiting = { before: pendingBefore, after: pendingAfter }
  const pending = waitsFor(waiting, before, after)
  const conflicted = { before: conflictedBefore, after: conflictedAfter }
  // The rows already here (checked when they came, or once after a restart) …
  await rows.check(where.collection, where.id, before)
  const verdict = verdictOf(rows, where, before, after, waiting, conflicted, steps)
  if (verdict !== 'later' || pending) return verdict
  // … then the change's new rows, one at a time: the first that fails refuses the change, so a
  // change full of forged rows costs one signature check, not one per row; the same for the rows
  // each change of the delta adds (also those a later change of it deletes) …
  const adds = [changedRows(before, after), ...(steps ?? []).map((step) => changedRows(step.before, step.after))]
  for (const [key, value] of adds.flat()) {
    if (!(await rows.checkOne(where.collection, where.id, key, value))) return verdictOf(rows, where, before, after, waiting, conflicted, steps)
  }
  // … and, for each change, the rows of the holders it removes rows of, before it and with it,
  // and of those it adds rows of, with it, with the rows of the givers they name (their rows
  // together, and what backs their receipts: see rowsVerdict's overspender).
  for (const step of steps ?? []) {
    const added = addedHolders(step.before, step.after)
    if (added.size > 0) await rows.check(where.collection, where.id, overspendRows(step.after, added))
    const holders = removedHolders(step.before, step.after)
    if (holders.size === 0) continue
    await rows.check(where.collection, where.id, rowsOf(step.before, holders))
    await rows.check(where.collection, where.id, rowsOf(step.after, holders))
  }
  return verdictOf(rows, where, before, after, waiting, conflicted, steps)
}

/**
 * A delta that is one change on top of the document (BackendHistory.nextTopLevelWrites), as it
 * leaves the document: the value after it (`before` with its writes), the keys holding
 * concurrent values after it (the ones before but those it writes, which it leaves with one
 * value each) and its one causal step, as causalSteps gives it for such a change — exactly what
 * the apply will judge it on. Undefined for any other delta (then judged on a copy).
 */
function nextChange(
  backend: Backend,
  doc: unknown,
  delta: Uint8Array,
  before: JsonObject,
  conflictedBefore: readonly string[],
): { after: JsonObject; conflicted: { before: readonly string[]; after: readonly string[] }; step: CausalStep } | undefined {
  const history = backend.history
  if (history?.nextTopLevelWrites === undefined) return undefined
  try {
    const changes = history.changesIn(delta)
    const writes = changes?.length === 1 ? history.nextTopLevelWrites(doc, delta) : undefined
    if (writes === undefined) return undefined
    const after: JsonObject = { ...before }
    for (const [key, value] of writes) {
      if (value === undefined) delete after[key]
      else after[key] = value
    }
    const written = new Set(writes.map(([key]) => key))
    const conflicted = { before: conflictedBefore, after: conflictedBefore.filter((key) => !written.has(key)) }
    return { after, conflicted, step: { hash: changes![0]!.hash, before, after } }
  } catch {
    return undefined // the copy's apply says why it does not apply
  }
}

/**
 * Changes one delta may add that are judged each against its causal past, unless it is the one
 * change that follows the receiver's document (a live push: free). A value at other heads costs
 * a materialisation that grows with the history (~1 ms at 4,000 changes), so a larger delta (a
 * catch-up) is judged against the receiver's document. Not closed: a sender can force that (32
 * empty changes on top), and it judges a pair of concurrent deletes, or a late joiner's catch-up,
 * unlike the per-change rule (review5-counter-rows.test.ts, HOLE 3 and HOLE 5, pending).
 */
export const MAX_CAUSAL_STEPS = 32

/**
 * The changes `after` holds that `versionBefore` lacks, each with the value at its
 * dependencies and with it (counter-rows.ts, rowsVerdict) — undefined for a backend without a
 * history, or a delta of more than MAX_CAUSAL_STEPS changes. `known`: the values before and
 * after the whole delta, which are a lone change's own when it follows the document's heads.
 * A value seen once is not read again (one change's dependencies are often the one before it).
 */
export function causalSteps(
  backend: Backend,
  after: unknown,
  versionBefore: Uint8Array,
  known: { before: JsonObject | undefined; after: JsonObject | undefined },
): CausalStep[] | undefined {
  const history = backend.history
  if (history?.readAt === undefined || history.headsOf === undefined) return undefined
  try {
    const changes = history.changesSince(after, versionBefore)
    if (changes.some((c) => c.deps === undefined)) return undefined
    const held = history.headsOf(versionBefore).sort()
    const headsBefore = held.join(',')
    // A lone new change depends only on changes the document held: it follows the document when
    // it depends on all its heads (Automerge adds its actor's previous change to them, often no head).
    if (changes.length === 1 && held.every((h) => changes[0]!.deps!.includes(h))) {
      return [{ hash: changes[0]!.hash, before: known.before, after: known.after }]
    }
    if (changes.length > MAX_CAUSAL_STEPS) return undefined
    const seen = new Map<string, JsonObject | undefined>([[headsBefore, known.before]])
    const at = (heads: readonly string[]): JsonObject | undefined => {
      const key = [...heads].sort().join(',')
      if (!seen.has(key)) seen.set(key, history.readAt!(after, heads))
      return seen.get(key)
    }
    return changes.map((c) => ({ hash: c.hash, before: at(c.deps!), after: at([c.hash]) }))
  } catch {
    return undefined // the document cannot say (the same for every replica holding it): judged against the receiver's
  }
}

/** The verdict on a change from `before` to `after` (sync: from the verdicts checked ahead). */
export function verdictOf(
  rows: SignedRows,
  where: { collection: string; id: string },
  before: JsonObject | undefined,
  after: JsonObject | undefined,
  /** Whether the document held operations waiting for ones that have not arrived, before and after the change. */
  waiting: Waiting,
  /** Top-level keys holding concurrent different values, before and after the change. */
  conflicted: { before: readonly string[]; after: readonly string[] },
  /** The changes it adds, each against its causal past (causalSteps), if the backend can tell. */
  steps?: readonly CausalStep[],
): RowsVerdict {
  if (waitsFor(waiting, before, after)) return 'later'
  return rowsVerdict(rows, where, before, after, conflicted, steps)
}

/** Whether a document holds operations waiting for ones that have not arrived, before and after a change. */
export interface Waiting {
  before: boolean
  after: boolean
}

export const NOTHING_WAITS: Waiting = { before: false, after: false }

/**
 * Whether a change is judged later, once what it waits for has come: waiting operations take
 * effect with whatever change brings what they wait for, and would be judged with it — a counter
 * takes changes in causal order only (anti-entropy brings the rest). So is a change to an entity
 * that is absent while operations wait (its creating change has not arrived here) and stays so:
 * judged now, it would be refused as one that leaves the entity absent, though honest (the
 * simulator found honest pushes refused as forbidden so, on a replica that missed the creation).
 * Other changes are judged now even while operations wait: a dangling change must not hold up
 * every later one.
 */
function waitsFor(waiting: Waiting, before: JsonObject | undefined, after: JsonObject | undefined): boolean {
  if (!waiting.after) return false
  return !waiting.before || (before === undefined && after === undefined)
}
