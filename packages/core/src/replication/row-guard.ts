import type { Backend, DeltaLimits } from '../backend.js'
import { randomBytes, type Clock } from '../clock.js'
import { changedRows, holdsRows, isRowKey, rowsVerdict, type RowRules, type SignedRows } from '../counter-rows.js'
import type { JsonObject } from '../json.js'

/**
 * The receive path's guard of counters' signed rows (in a cluster). A row can be relayed by
 * anyone but made only by its holder; the guard refuses every change that does more than add
 * its holders' newer, valid rows (counter-rows.ts, rowsVerdict), whichever way it came —
 * gossip, anti-entropy, a rights answer — so forged, replayed, taken-back or over-spending
 * rows never enter an honest replica, and every honest change passes on every replica.
 *
 * Which entities: those of a collection opened here as a counter, and any Automerge entity
 * that may be a counter's (no value yet, rows, or a counter's unsigned keys): this replica may
 * never open that counter but it relays it all the same. An entity holding anything else may
 * not be given rows at all. The verdict comes from a throwaway copy of the document with the
 * delta applied — signatures are checked async, before the real apply touches anything; the
 * apply then checks again from the verdicts alone (sync), in case the document changed.
 */
export interface CounterGuard {
  rows: SignedRows
  rules: RowRules
  /** The collection was opened here as a counter. */
  opened: boolean
}

export type RowsVerdict = 'ok' | 'later' | { refused: string }

/**
 * Whether a document may be a counter's — no value yet, rows, or the unsigned keys of a counter
 * written in development mode or by an earlier release — remembered per document object
 * (Automerge documents are immutable values: a change makes a new one).
 */
const counterLike = new WeakMap<object, boolean>()

function mayBeCounter(value: JsonObject | undefined): boolean {
  if (value === undefined) return true
  for (const key in value) if (isRowKey(key) || key.startsWith('p|') || key.startsWith('n|') || key === 'min') return true
  return false
}

/** Whether a remote delta to this document must be judged ahead (see the module comment). */
export function guardsDoc(guard: CounterGuard, backend: Backend, doc: unknown): boolean {
  if (guard.opened) return true
  if (backend.name !== 'automerge' || typeof doc !== 'object' || doc === null) return false
  let judged = counterLike.get(doc)
  if (judged === undefined) {
    judged = mayBeCounter(backend.read(doc))
    counterLike.set(doc, judged)
  }
  return judged
}

/** Remembers what an apply's resulting document holds (the next delta to it needs no read to know). */
export function noteRows(doc: unknown, value: JsonObject | undefined): void {
  if (typeof doc === 'object' && doc !== null) counterLike.set(doc, mayBeCounter(value))
}

/** A change that gives rows to an entity that could not be a counter (one the guard did not judge): refused. */
export function rowsWithoutJudgement(backend: Backend, where: { collection: string; id: string }, after: JsonObject | undefined): RowsVerdict {
  if (backend.name !== 'automerge' || !holdsRows(after)) return 'ok'
  return { refused: `'${where.collection}/${where.id}' holds other values: a change may not add counter rows to it` }
}

export async function rowsVerdictAhead(
  guard: CounterGuard,
  backend: Backend,
  doc: unknown,
  delta: Uint8Array,
  where: { collection: string; id: string },
  limits: DeltaLimits,
  clock: Clock,
): Promise<RowsVerdict> {
  // Everything taken from `doc` before the first await: the entity's document may be replaced (and freed) meanwhile.
  const before = backend.read(doc)
  const pendingBefore = backend.hasPending(doc)
  let copy: unknown
  let after: JsonObject | undefined
  let pendingAfter: boolean
  try {
    copy = backend.clone !== undefined ? backend.clone(doc) : backend.load(backend.save(doc), [], randomBytes(clock, 16))
    copy = backend.applyDelta(copy, delta, limits)
    after = backend.read(copy)
    pendingAfter = backend.hasPending(copy)
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
  if (!isCounterChange(guard, before, after)) return 'ok'
  const pending = !pendingBefore && pendingAfter
  // The rows already here (checked when they came, or once after a restart) …
  await guard.rows.check(where.collection, where.id, before)
  let verdict = verdictOf(guard, where, before, after, pending)
  if (verdict !== 'later' || pending) return verdict
  // … then the change's new rows, one at a time: the first that fails refuses the change, so a
  // change full of forged rows costs one signature check, not one per row.
  for (const [key, value] of changedRows(before, after)) {
    if (!(await guard.rows.checkOne(where.collection, where.id, key, value))) break
  }
  verdict = verdictOf(guard, where, before, after, pending)
  return verdict
}

/** Whether a change is a counter's: in a collection opened here as counters, or with rows before or after. */
export function isCounterChange(guard: CounterGuard, before: JsonObject | undefined, after: JsonObject | undefined): boolean {
  return guard.opened || holdsRows(before) || holdsRows(after)
}

/** The verdict on a change from `before` to `after` (sync: from the verdicts checked ahead). */
export function verdictOf(
  guard: CounterGuard,
  where: { collection: string; id: string },
  before: JsonObject | undefined,
  after: JsonObject | undefined,
  /** The change left operations waiting for ones that have not arrived. */
  pending: boolean,
): RowsVerdict {
  // Waiting operations take effect with whatever change brings what they wait for, and would
  // be judged with it: a counter takes changes in causal order only (anti-entropy brings the rest).
  if (pending) return 'later'
  return rowsVerdict(guard.rows, where, before, after, guard.rules)
}
