import type { Backend, DeltaLimits } from '../backend.js'
import type { Clock } from '../clock.js'
import { randomBytes } from '../clock.js'
import { rowTakenBack, type SignedRows } from '../counter-rows.js'
import type { JsonObject } from '../json.js'

/**
 * The receive path's guard of counters' signed rows. A row can be relayed by anyone but made
 * only by its holder, so the one thing a writer could still do to it is take it back: delete
 * it, or overwrite its key with something else. No remote delta may do that — whatever path
 * it came by — so each holder's counted row only ever moves forward, on every replica.
 *
 * The verdict comes from a throwaway copy of the document with the delta applied (signatures
 * are checked async, before the real apply touches anything). The apply then checks again,
 * from the verdicts alone (sync), in case the document changed meanwhile.
 */
export type RowsVerdict = 'ok' | 'later' | { refused: string }

export async function rowsVerdictAhead(
  rows: SignedRows,
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
  await rows.check(where.collection, where.id, before)
  await rows.check(where.collection, where.id, after)
  return rowsVerdict(rows, where, before, after, !pendingBefore && pendingAfter)
}

/**
 * Whether a remote delta may turn `before` into `after`: 'ok'; 'later' (not now, and not the
 * sender's fault: it comes again with the next round); or why it is refused.
 */
export function rowsVerdict(
  rows: SignedRows,
  where: { collection: string; id: string },
  before: JsonObject | undefined,
  after: JsonObject | undefined,
  pending: boolean,
): RowsVerdict {
  const { collection, id } = where
  // Changes waiting for their predecessors take effect with whatever delta brings those, and
  // would be judged with it: a counter takes changes in causal order only.
  if (pending) return 'later'
  const b = rows.view(collection, id, before)
  const a = rows.view(collection, id, after)
  if (b.unchecked > 0 || a.unchecked > 0) return 'later'
  const holder = rowTakenBack(b, a)
  return holder === undefined ? 'ok' : { refused: `the delta takes back ${holder}'s signed row of counter '${collection}/${id}'` }
}
