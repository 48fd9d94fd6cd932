import * as A from '@automerge/automerge'

/**
 * Every op a received change names — the object it is in, the list element it is at, the
 * values it replaces (its pred) — must be one its author could see: in the change's own causal
 * past and, for pred, at that very place. Honest changes always are (Automerge fills these in
 * from the author's document at the change's dependencies); Automerge does not check them:
 *
 * - a pred naming an op not made yet is taken; the op's own change then never applies on that
 *   replica ("missing ops"): replicas part for good on the entity;
 * - a pred naming an op made concurrently is taken where that op came first and fails where it
 *   comes after: replicas take the change in different orders, or not at all;
 * - a pred naming an op that never exists leaves a document that A.save and A.saveSince refuse
 *   ("MissingOps"): the entity can no longer be compacted or served;
 * - a pred naming a value elsewhere deletes that value, and the saved document no longer loads
 *   ("mismatching heads"): a compaction would lose the entity on the next start.
 *
 * Two checks. A live push (changes that extend the document's heads one after the other, the
 * common case) is judged before applying against the document as it is: ~40 µs a change to
 * decode it, a lookup per key it writes. Anything else (anti-entropy batches with concurrent
 * changes, list edits) is judged after applying: every change newly held is
 * decoded, each name must lie in its causal past (clocks over the batch, and what the document
 * held before it); and a batch of changes that names anything is saved and loaded again — the
 * check Automerge itself runs on a saved document — costing O(document).
 */

export type Ahead = 'ok' | 'after' | { refused: string }

/** A decoded op as Automerge gives it: list ops carry elemId (and insert), which its type leaves out. */
type DecodedOp = A.DecodedChange['ops'][number] & { elemId?: string; insert?: boolean }

type Handle = ReturnType<typeof A.getBackend>

interface Slot {
  readonly type: string
  readonly visible: Set<string>
}

/** Object types of make ops, by action. */
const MADE: Record<string, string> = { makeMap: 'map', makeTable: 'map', makeList: 'list', makeText: 'text' }

/**
 * Judged before applying `changes` (their chunks) to `doc` (holding `heads`, nothing queued):
 * 'ok' for a chain on the heads whose map ops name only what they see; 'after' when only
 * applying can tell (see checkApplied).
 */
export function checkAhead(doc: A.Doc<unknown>, heads: readonly string[], changes: readonly Uint8Array[]): Ahead {
  let decoded: A.DecodedChange[]
  try {
    decoded = changes.map((c) => A.decodeChange(c))
  } catch {
    return 'after' // Automerge refuses it when applying
  }
  const fresh = decoded.filter((c) => !A.hasHeads(doc, [c.hash]))
  if (fresh.length === 0) return 'ok'
  if (!sameSet(fresh[0]!.deps, heads)) return 'after'
  for (let i = 1; i < fresh.length; i++) {
    const deps = fresh[i]!.deps
    if (deps.length !== 1 || deps[0] !== fresh[i - 1]!.hash) return 'after'
  }
  const handle = A.getBackend(doc)
  const made = new Map<string, string>() // objects the chain makes, by id → type
  const types = new Map<string, string>([['_root', 'map']])
  const slots = new Map<string, Slot>()
  for (const change of fresh) {
    let counter = change.startOp
    for (const op of change.ops as DecodedOp[]) {
      const id = `${counter++}@${change.actor}`
      if (op.elemId !== undefined || typeof op.key !== 'string' || op.insert === true) return 'after'
      let type = made.get(op.obj) ?? types.get(op.obj)
      if (type === undefined) {
        try {
          type = handle.objInfo(op.obj).type
        } catch {
          return { refused: `an op of change ${change.hash} is in object ${op.obj}, which its past does not hold` }
        }
        types.set(op.obj, type)
      }
      if (type !== 'map') return { refused: `an op of change ${change.hash} writes key ${JSON.stringify(op.key)} of object ${op.obj}, a ${type}` }
      const key = `${op.obj}\0${op.key}`
      let slot = slots.get(key)
      if (slot === undefined) {
        const visible = made.has(op.obj) ? [] : handle.getAll(op.obj, op.key).map((v) => String(v[v.length - 1]))
        slot = { type, visible: new Set(visible) }
        slots.set(key, slot)
      }
      for (const p of op.pred) {
        if (!slot.visible.has(p)) return { refused: `change ${change.hash} replaces op ${p}, which it cannot see at key ${JSON.stringify(op.key)}` }
      }
      if (op.action === 'inc') continue // a counter's increment replaces nothing
      if (op.action !== 'del' && op.action !== 'set' && MADE[op.action] === undefined) return 'after'
      for (const p of op.pred) slot.visible.delete(p)
      if (op.action === 'del') continue
      slot.visible.add(id)
      const madeType = MADE[op.action]
      if (madeType !== undefined) made.set(id, madeType)
    }
  }
  return 'ok'
}

/** Judged after applying: the changes `next` holds that `heads` did not. Undefined when they hold together, else why not. */
export function checkApplied(next: A.Doc<unknown>, heads: readonly string[]): string | undefined {
  const handle = A.getBackend(next)
  let changes: A.DecodedChange[]
  try {
    changes = handle.getChanges([...heads]).map((c) => A.decodeChange(c))
  } catch {
    return 'a change names an op the document does not hold (Automerge cannot write it out again)'
  }
  if (changes.length === 0) return undefined
  const inBatch = new Map(changes.map((c) => [c.hash, c]))
  const ranges = new Map<string, [number, number][]>()
  for (const c of changes) {
    const list = ranges.get(c.actor) ?? []
    list.push([c.startOp, c.startOp + c.ops.length - 1])
    ranges.set(c.actor, list)
  }
  for (const list of ranges.values()) list.sort((a, b) => a[0] - b[0])
  // Per change of the batch: the highest op of each actor in its past within the batch, and
  // its dependencies outside the batch (its past there is theirs).
  const clocks = new Map<string, Map<string, number>>()
  const outside = new Map<string, Set<string>>()
  const laterThan = new Map<string, Map<string, [number, number][]>>()
  let names = false
  for (const c of changes) {
    const clock = new Map<string, number>()
    const out = new Set<string>()
    for (const d of c.deps) {
      if (!inBatch.has(d)) {
        out.add(d)
        continue
      }
      const dc = clocks.get(d)
      if (dc === undefined) return `change ${c.hash} came before its dependency ${d}`
      for (const [actor, op] of dc) if ((clock.get(actor) ?? 0) < op) clock.set(actor, op)
      for (const o of outside.get(d)!) out.add(o)
    }
    let counter = c.startOp
    for (const op of c.ops as DecodedOp[]) {
      const refs = [...op.pred]
      if (op.obj !== '_root') refs.push(op.obj)
      if (op.elemId !== undefined && op.elemId !== '_head') refs.push(op.elemId)
      for (const ref of refs) {
        names = true
        const at = ref.indexOf('@')
        const n = Number(ref.slice(0, at))
        const actor = ref.slice(at + 1)
        if (!(at > 0) || !Number.isSafeInteger(n)) return `change ${c.hash} names ${JSON.stringify(ref)}, not an op id`
        if (actor === c.actor && n >= c.startOp) {
          if (n >= counter) return `change ${c.hash} names its own op ${ref} before making it`
          continue
        }
        if (within(ranges.get(actor), n)) {
          if ((clock.get(actor) ?? 0) < n) return `change ${c.hash} names op ${ref}, which is not in its past`
          continue
        }
        // An op from before the batch: in the past of the dependencies outside it, or nowhere.
        if (out.size === 0) return `change ${c.hash} names op ${ref}, which is not in its past`
        const later = laterOps(handle, out, inBatch, laterThan)
        if (within(later.get(actor), n)) return `change ${c.hash} names op ${ref}, which is not in its past`
      }
      counter++
    }
    const last = c.startOp + c.ops.length - 1
    if ((clock.get(c.actor) ?? 0) < last) clock.set(c.actor, last)
    clocks.set(c.hash, clock)
    outside.set(c.hash, out)
  }
  if (!names) return undefined
  try {
    A.free(A.load(A.save(next)))
  } catch (err) {
    return `the document no longer loads once saved (${String(err instanceof Error ? err.message : err).slice(0, 80)})`
  }
  return undefined
}

/** The op ranges of the changes held before the batch that are not in the past of `deps`, by actor (cached per `deps`). */
function laterOps(
  handle: Handle,
  deps: Set<string>,
  inBatch: Map<string, unknown>,
  cache: Map<string, Map<string, [number, number][]>>,
): Map<string, [number, number][]> {
  const key = [...deps].sort().join(',')
  let ranges = cache.get(key)
  if (ranges === undefined) {
    ranges = new Map()
    for (const m of handle.getChangesMeta([...deps])) {
      if (inBatch.has(m.hash)) continue
      const list = ranges.get(m.actor) ?? []
      list.push([m.startOp, m.maxOp])
      ranges.set(m.actor, list)
    }
    for (const list of ranges.values()) list.sort((a, b) => a[0] - b[0])
    cache.set(key, ranges)
  }
  return ranges
}

/** Whether op counter `n` lies in one of `ranges` (sorted by start, not overlapping: one actor's changes). */
function within(ranges: readonly [number, number][] | undefined, n: number): boolean {
  if (ranges === undefined) return false
  let lo = 0
  let hi = ranges.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const [start, end] = ranges[mid]!
    if (n < start) hi = mid - 1
    else if (n > end) lo = mid + 1
    else return true
  }
  return false
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  const set = new Set(b)
  return a.every((x) => set.has(x))
}
