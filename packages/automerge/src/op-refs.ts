import * as A from '@automerge/automerge'
import type { DeltaWork } from '@convergent/core'
import { holds } from './holds.js'

/**
 * A received change must be one Automerge could have made: every op it names — the object it
 * writes in, the list element it writes at, the values it replaces (its pred) — in its own
 * causal past and, for pred, at that very place; its op counters just past everything in its
 * past; its seq just after its actor's previous change, which it has seen; each op shaped for
 * its object (a key in a map, an element in a list). Honest changes always are: Automerge fills
 * these in from the author's document at the change's dependencies. Automerge does not check
 * them when it applies a change, and hand-made ones break an entity for good:
 *
 * - a pred naming an op not made yet is taken; the op's own change then never applies on that
 *   replica ("missing ops"): replicas part on the entity;
 * - a pred naming an op made concurrently is taken where that op came first and fails where it
 *   comes after: replicas take the change in different orders, or not at all;
 * - a pred naming an op that never exists, a delete naming nothing, or a startOp below or far
 *   past its past leaves a document that A.save refuses, that no longer loads once saved, or
 *   that needs gigabytes to load: a compaction loses the entity on the next start;
 * - a pred naming a value elsewhere deletes that value, and the saved document does not load.
 *
 * Two checks (costs on this project's AMD EPYC machine). A live push — changes that extend the
 * document's heads one after the other, writing map keys or inserting into lists they made: the
 * common case — is judged before it is applied, against the document as it is (checkAhead: a
 * change decoded, ~16 µs; a lookup per key it writes, ~7 µs). Anything else (anti-entropy
 * batches with concurrent changes, list edits, changes released from the queue) is judged once
 * applied (checkApplied): each change newly held is written out again from the document
 * (~40 µs) — Automerge drops names it could not place, so the hash changes — and read at its
 * own dependencies (~45–90 µs a lookup at 1,000–10,000 changes of history). What applyDelta
 * does with a refusal, a whole document, or changes that were waiting: backend.ts.
 */

export type Ahead = 'ok' | 'after' | { refused: string; actor: string }

/** A decoded op as Automerge gives it: list ops carry elemId (and insert), which its type leaves out. */
type DecodedOp = A.DecodedChange['ops'][number] & { elemId?: string; insert?: boolean }

type Handle = ReturnType<typeof A.getBackend>

/** Object types by the action that makes them. */
const MADE: Record<string, string> = { makeMap: 'map', makeTable: 'map', makeList: 'list', makeText: 'text' }
const ACTIONS = new Set(['set', 'del', 'inc', ...Object.keys(MADE)])

/**
 * Most changes one batch judged without a budget may scan to judge its list ops and seqs against
 * what came before it (~13 µs each: ~1.3 s): each distinct set of dependencies outside the batch
 * costs a scan of the changes not in their past. With a budget (a peer's delta), each author's
 * account bounds its reads instead (laterOf).
 */
export const MAX_SCANNED_CHANGES = 100_000

/** Why `op` is not shaped for an object of `type`, if it is not. */
function shapeError(op: DecodedOp, type: string): string | undefined {
  if (!ACTIONS.has(op.action)) return `an op of action '${op.action}', which no Convergent writer makes`
  if (type === 'map') {
    if (typeof op.key !== 'string' || op.elemId !== undefined || op.insert === true) return 'an op in a map without a key, or with a list element'
  } else if (type === 'list' || type === 'text') {
    if (typeof op.elemId !== 'string' || op.key !== undefined) return `an op in a ${type} without an element, or with a key`
    if (op.elemId === '_head' && op.insert !== true) return `an op at the head of a ${type} that inserts nothing`
    if (op.insert === true && (op.pred.length > 0 || op.action === 'del' || op.action === 'inc')) return 'an insert that replaces something'
  } else {
    return `an op in a ${type}`
  }
  if ((op.action === 'del' || op.action === 'inc') && op.pred.length === 0) return `a ${op.action} that names nothing`
  return undefined
}

/** The ids of the values at `key` of map `obj` (at `heads`, else now). */
function valuesAt(handle: Handle, obj: string, key: string, heads?: string[]): Set<string> {
  return new Set(handle.getAll(obj, key, heads).map((v) => String(v[v.length - 1])))
}

/**
 * Op `id` replaces its pred among `visible` (the ids of the values at its map key), which then
 * holds the values after it: the first pred it cannot see, if any.
 */
function replaceAt(visible: Set<string>, op: DecodedOp, id: string): string | undefined {
  const unseen = op.pred.find((p) => !visible.has(p))
  if (unseen !== undefined) return unseen
  if (op.action === 'inc') return undefined // a counter's increment replaces nothing
  for (const p of op.pred) visible.delete(p)
  if (op.action !== 'del') visible.add(id)
  return undefined
}

/** The type of the object `op` writes in (one made earlier in `made`, else the document's), or why the op does not fit it. */
function objectFor(handle: Handle, op: DecodedOp, made: Map<string, string>, types: Map<string, string>): { type: string } | { error: string } {
  const type = made.get(op.obj) ?? typeOf(handle, op.obj, types)
  if (type === undefined) return { error: `writes in ${op.obj}, which the document does not hold` }
  const shape = shapeError(op, type)
  return shape === undefined ? { type } : { error: `holds ${shape}` }
}

/** The type of object `obj` (cached in `types`), or undefined if the document holds no such object. */
function typeOf(handle: Handle, obj: string, types: Map<string, string>): string | undefined {
  let type = types.get(obj)
  if (type === undefined) {
    try {
      type = handle.objInfo(obj).type
    } catch {
      return undefined
    }
    types.set(obj, type)
  }
  return type
}

/** The counter of a change's last op (startOp − 1 for an empty change): the highest op of its past with it. */
function opsEnd(c: A.DecodedChange): number {
  return c.startOp + c.ops.length - 1
}

/**
 * Judged before applying `changes` (their chunks) to `doc` (holding `heads`, nothing queued):
 * 'ok' for a chain on the heads whose ops name only what they see (map keys, inserts into
 * lists the chain made); 'after' when only applying can tell (see checkApplied).
 */
export function checkAhead(doc: A.Doc<unknown>, heads: readonly string[], changes: readonly Uint8Array[]): Ahead {
  let decoded: A.DecodedChange[]
  try {
    decoded = changes.map((c) => A.decodeChange(c))
  } catch {
    return 'after' // Automerge refuses it when applying
  }
  const fresh = decoded.filter((c) => !holds(doc, c.hash))
  if (fresh.length === 0) return 'ok'
  if (!sameSet(fresh[0]!.deps, heads)) return 'after'
  for (let i = 1; i < fresh.length; i++) {
    const deps = fresh[i]!.deps
    if (deps.length !== 1 || deps[0] !== fresh[i - 1]!.hash) return 'after'
  }
  const handle = A.getBackend(doc)
  let maxOp = 0
  for (const h of heads) {
    const meta = handle.getChangeMetaByHash(h)
    if (meta === null) return 'after'
    maxOp = Math.max(maxOp, meta.maxOp)
  }
  const made = new Map<string, string>() // objects the chain makes, by id → type
  const types = new Map<string, string>([['_root', 'map']])
  const slots = new Map<string, Set<string>>() // 'obj\0key' → ids of its values, once touched
  const elements = new Map<string, Set<string>>() // lists the chain made → the elements it inserted
  const noteMade = (id: string, action: string): void => {
    const type = MADE[action]
    if (type !== undefined) made.set(id, type)
    if (type === 'list' || type === 'text') elements.set(id, new Set())
  }
  for (const change of fresh) {
    const why = (what: string) => ({ refused: `change ${change.hash} ${what}`, actor: change.actor })
    if (change.startOp !== maxOp + 1) return why(`starts its ops at ${change.startOp}, not just past its past (${maxOp + 1})`)
    let counter = change.startOp
    for (const op of change.ops as DecodedOp[]) {
      const id = `${counter++}@${change.actor}`
      const fits = objectFor(handle, op, made, types)
      if ('error' in fits) return why(fits.error)
      const type = fits.type
      if (type !== 'map') {
        // Inserts into a list the chain made (a new array): after its head or an element the
        // chain inserted there before. Anything else in a list is judged once applied.
        const inserted = elements.get(op.obj)
        if (inserted === undefined || op.insert !== true || (op.elemId !== '_head' && !inserted.has(op.elemId!))) return 'after'
        inserted.add(id)
        noteMade(id, op.action)
        continue
      }
      const key = `${op.obj}\0${op.key}`
      let visible = slots.get(key)
      if (visible === undefined) {
        visible = made.has(op.obj) ? new Set() : valuesAt(handle, op.obj, op.key)
        slots.set(key, visible)
      }
      const unseen = replaceAt(visible, op, id)
      if (unseen !== undefined) return why(`replaces op ${unseen}, which it cannot see at key ${JSON.stringify(op.key)}`)
      noteMade(id, op.action)
    }
    maxOp = Math.max(maxOp, opsEnd(change))
  }
  return 'ok'
}

/** What a batch's change has in its past within the batch: each actor's highest op and seq, and its dependencies outside the batch. */
interface Past {
  ops: Map<string, number>
  seqs: Map<string, number>
  outside: Set<string>
}

/** Why a change newly held is refused, and which one (its hash as received) when that can be told. */
export interface Refusal {
  why: string
  hash?: string
  /** The refused change's actor, when that can be told. */
  actor?: string
  /** Not judged: it needed more history read than the caller allowed (DeltaLimits.work). */
  overBudget?: true
}

/**
 * `work` afresh: every account allowed what it was allowed, nothing of it spent yet — for a
 * second judgment that must not pay for what a first one read (the queue's, say: see
 * AutomergeBackend.alone). `settle` adds what was read to the accounts and sets their
 * `exhausted` from this judgment.
 */
export function afresh(work: DeltaWork): { view: DeltaWork; settle(): void } {
  const views = new Map<DeltaWork, DeltaWork>()
  const viewOf = (account: DeltaWork): DeltaWork => {
    let view = views.get(account)
    if (view === undefined) {
      view = { allowed: account.allowed, done: 0 }
      views.set(account, view)
    }
    return view
  }
  const view = viewOf(work)
  if (work.accountOf !== undefined) view.accountOf = (actor) => viewOf(work.accountOf!(actor))
  return {
    view,
    settle() {
      for (const [account, v] of views) {
        account.done += v.done
        account.exhausted = v.exhausted === true
      }
    },
  }
}

/** Judged after applying: the changes `next` holds that `heads` did not. Undefined when they hold together, else why not. */
export function checkApplied(next: A.Doc<unknown>, heads: readonly string[], budget?: DeltaWork): Refusal | undefined {
  const handle = A.getBackend(next)
  const metas = handle.getChangesMeta([...heads])
  let changes: A.DecodedChange[]
  try {
    changes = handle.getChanges([...heads]).map((c) => A.decodeChange(c))
  } catch {
    // One by one, to tell which (~15–30 µs each; only when refusing).
    const unreadable = metas.find((m) => {
      try {
        handle.getChangeByHash(m.hash)
        return false
      } catch {
        return true
      }
    })
    return {
      why: 'a change names an op the document does not hold (Automerge cannot write it out again)',
      ...(unreadable !== undefined ? { hash: unreadable.hash } : {}),
    }
  }
  if (changes.length === 0) return undefined
  // Written out again from the document, a change whose names Automerge could not place (a
  // pred not at that key or element, say) loses them, and with them its hash.
  const held = new Set(metas.map((m) => m.hash))
  const altered = changes.find((c) => !held.has(c.hash))
  if (altered !== undefined) {
    const received = metas.find((m) => m.actor === altered.actor && m.seq === altered.seq)
    return {
      why: `a change (by ${altered.actor}, seq ${altered.seq}) is not the same once written out again: it names ops that are not where it says`,
      ...(received !== undefined ? { hash: received.hash } : {}),
    }
  }
  // What this batch may read: MAX_SCANNED_CHANGES in all, and for each change what the caller
  // still allows its author (budget.accountOf), or the budget itself without accounts.
  const scanned: Scanned = { count: 0, accountOf: (actor) => (budget === undefined ? undefined : (budget.accountOf?.(actor) ?? budget)) }
  const refusal = judgeBatch(handle, changes, scanned)
  return refusal !== undefined && scanned.overBudget === true ? { why: refusal.why, overBudget: true } : refusal
}

function judgeBatch(handle: Handle, changes: A.DecodedChange[], scanned: Scanned): Refusal | undefined {
  const inBatch = new Map(changes.map((c) => [c.hash, c]))
  const bySeq = new Set(changes.map((c) => `${c.actor}:${c.seq}`))
  const ranges = new Map<string, [number, number][]>()
  for (const c of changes) {
    const list = ranges.get(c.actor) ?? []
    list.push([c.startOp, opsEnd(c)])
    ranges.set(c.actor, list)
  }
  for (const list of ranges.values()) list.sort((a, b) => a[0] - b[0])
  const pasts = new Map<string, Past>()
  const laterThan = new Map<string, Later>()
  const made = new Map<string, string>() // objects the batch makes, by id → type
  const types = new Map<string, string>([['_root', 'map']])
  for (const c of changes) {
    const why = (what: string): Refusal => ({ why: `change ${c.hash} ${what}`, hash: c.hash, actor: c.actor })
    // Its past within the batch, and the ops it may start at.
    const past: Past = { ops: new Map(), seqs: new Map(), outside: new Set() }
    let maxOp = 0
    for (const d of c.deps) {
      const dc = inBatch.get(d)
      if (dc === undefined) {
        const meta = handle.getChangeMetaByHash(d)
        if (meta === null) return why(`depends on ${d}, which the document does not hold`)
        maxOp = Math.max(maxOp, meta.maxOp)
        past.outside.add(d)
        continue
      }
      const dp = pasts.get(d)
      if (dp === undefined) return why(`came before its dependency ${d}`)
      maxOp = Math.max(maxOp, opsEnd(dc))
      for (const [actor, op] of dp.ops) if ((past.ops.get(actor) ?? 0) < op) past.ops.set(actor, op)
      for (const [actor, seq] of dp.seqs) if ((past.seqs.get(actor) ?? 0) < seq) past.seqs.set(actor, seq)
      for (const o of dp.outside) past.outside.add(o)
    }
    if (c.startOp !== maxOp + 1) return why(`starts its ops at ${c.startOp}, not just past its past (${maxOp + 1})`)
    // Its actor's previous change must be in its past (else two changes of one actor could share op ids).
    if (c.seq > 1 && past.seqs.get(c.actor) !== c.seq - 1) {
      const unseen = why(`has not seen its actor's change ${c.seq - 1}`)
      if (bySeq.has(`${c.actor}:${c.seq - 1}`) || (past.seqs.get(c.actor) ?? 0) >= c.seq || past.outside.size === 0) return unseen
      const later = laterOf(handle, past.outside, inBatch, laterThan, scanned, c.actor)
      if (typeof later === 'string') return why(later)
      if (later.seqs.has(`${c.actor}:${c.seq - 1}`)) return unseen
    }
    const deps = [...c.deps]
    const own = (ref: string) => ref.endsWith(`@${c.actor}`) && Number(ref.slice(0, ref.indexOf('@'))) >= c.startOp
    /** Why op `ref`, named by this change's op `current` (its counter), is not in the change's past, if it is not. */
    const namesOutsidePast = (ref: string, current: number): string | undefined => {
      const at = ref.indexOf('@')
      const n = Number(ref.slice(0, at))
      const actor = ref.slice(at + 1)
      if (!(at > 0) || !Number.isSafeInteger(n)) return `names ${JSON.stringify(ref)}, not an op id`
      if (actor === c.actor && n >= c.startOp) return n >= current ? `names its own op ${ref} before making it` : undefined
      if (n >= c.startOp) return `names op ${ref}, which is not in its past`
      if (within(ranges.get(actor), n)) return (past.ops.get(actor) ?? 0) < n ? `names op ${ref}, which is not in its past` : undefined
      // An op from before the batch: in the past of the dependencies outside it, or nowhere.
      if (past.outside.size === 0) return `names op ${ref}, which is not in its past`
      const later = laterOf(handle, past.outside, inBatch, laterThan, scanned, c.actor)
      if (typeof later === 'string') return later
      return within(later.ranges.get(actor), n) ? `names op ${ref}, which is not in its past` : undefined
    }
    const slots = new Map<string, Set<string>>()
    const shown = new Map<string, boolean>()
    let counter = c.startOp
    for (const op of c.ops as DecodedOp[]) {
      const id = `${counter++}@${c.actor}`
      const fits = objectFor(handle, op, made, types)
      if ('error' in fits) return why(fits.error)
      const type = fits.type
      // The object: shown at its dependencies (cheap), else in its past (a losing copy of
      // objects made concurrently at one key is written too: reconcile.ts).
      if (op.obj !== '_root') {
        let seen = shown.get(op.obj)
        if (seen === undefined) {
          seen = own(op.obj) || handle.objInfo(op.obj, deps).path !== undefined
          shown.set(op.obj, seen)
        }
        const notInPast = seen && !own(op.obj) ? undefined : namesOutsidePast(op.obj, counter - 1)
        if (notInPast !== undefined) return why(notInPast)
      }
      if (type === 'map') {
        const key = `${op.obj}\0${op.key}`
        let visible = slots.get(key)
        if (visible === undefined) {
          visible = own(op.obj) ? new Set() : valuesAt(handle, op.obj, op.key, deps)
          slots.set(key, visible)
        }
        const unseen = replaceAt(visible, op, id)
        if (unseen !== undefined) return why(`replaces op ${unseen}, which it cannot see at key ${JSON.stringify(op.key)}`)
      } else {
        // List elements: each name in its past (below); at its place, or the change would not
        // have been written out again the same (above).
        const refs = op.elemId !== '_head' ? [op.elemId!, ...op.pred] : op.pred
        for (const ref of refs) {
          const notInPast = namesOutsidePast(ref, counter - 1)
          if (notInPast !== undefined) return why(notInPast)
        }
      }
      const madeType = MADE[op.action]
      if (madeType !== undefined) made.set(id, madeType)
    }
    past.ops.set(c.actor, Math.max(past.ops.get(c.actor) ?? 0, opsEnd(c)))
    past.seqs.set(c.actor, c.seq)
    pasts.set(c.hash, past)
  }
  return undefined
}

/** The changes held before the batch that are not in the past of some dependencies: their op ranges by actor, and their actor:seq. */
interface Later {
  ranges: Map<string, [number, number][]>
  seqs: Set<string>
}

/**
 * Changes read to judge a batch, and the account a read for a change of an actor is charged to.
 * A read starts only while the account has read fewer than it allows — or, with no accounts,
 * while the batch has read fewer than MAX_SCANNED_CHANGES (each read may go past either: one
 * read is the changes since `deps`).
 */
interface Scanned {
  count: number
  accountOf(actor: string): DeltaWork | undefined
  /** A read was refused for the caller's budget (not MAX_SCANNED_CHANGES): the batch is not judged. */
  overBudget?: true
}

/** Later for `deps` (cached per set, whoever read it), read for a change of `actor`, or why not. */
function laterOf(handle: Handle, deps: Set<string>, inBatch: Map<string, unknown>, cache: Map<string, Later>, scanned: Scanned, actor: string): Later | string {
  const key = [...deps].sort().join(',')
  let later = cache.get(key)
  if (later !== undefined) return later
  const account = scanned.accountOf(actor)
  // Without accounts, MAX_SCANNED_CHANGES bounds the batch. With them, each author's account
  // does (a refusal there is a rate: the delta comes again): a cap on the batch counts the
  // receiver's history since each base, so a replica holding more refused for good two honest
  // edits on old bases that one holding less took (review-order-refusals HOLE 4).
  if (account === undefined && scanned.count >= MAX_SCANNED_CHANGES)
    return `needs more than ${MAX_SCANNED_CHANGES} changes read to be judged (it builds on too many points of the history)`
  if (account !== undefined && account.done >= account.allowed) {
    account.exhausted = true
    scanned.overBudget = true
    return `needs more of the history read to be judged than its author may have read now (${account.allowed} changes)`
  }
  later = { ranges: new Map(), seqs: new Set() }
  const metas = handle.getChangesMeta([...deps])
  scanned.count += metas.length
  if (account !== undefined) account.done += metas.length
  for (const m of metas) {
    if (inBatch.has(m.hash)) continue
    const list = later.ranges.get(m.actor) ?? []
    list.push([m.startOp, m.maxOp])
    later.ranges.set(m.actor, list)
    later.seqs.add(`${m.actor}:${m.seq}`)
  }
  for (const list of later.ranges.values()) list.sort((a, b) => a[0] - b[0])
  cache.set(key, later)
  return later
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
