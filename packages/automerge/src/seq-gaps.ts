import * as A from '@automerge/automerge'
import { changeFields, changeHeader } from './chunks.js'
import { holds } from './holds.js'

/**
 * Automerge 3 panics (a Rust `unwrap` on None) applying a change whose seq skips past its
 * actor's last change in the document — a fresh actor's seq 2, say — and a panic leaves the
 * document unusable: the caller discards the entity and reloads it, an O(history) cost a peer
 * could make a replica pay per push (review-s35b HOLE 2b). An honest writer never makes such a
 * change. So each change that applies now (its dependencies held, or applying before it in the
 * delta) with a seq past 1 must find its actor's change seq − 1 in the document or applying
 * before it; else the delta is refused before it touches the document.
 *
 * Cost: nothing for changes of seq 1 (every change of a catch-up of new entities). For the rest,
 * a walk back from the heads through at most WALK changes (a writer extending its own head, or
 * another writer came in between), each change's actor, seq and dependencies read from a memo by
 * hash (they are in the change's bytes, so true of that hash anywhere: filled from every change
 * judged here) or, not there, from Automerge (~77 µs: it rebuilds the change); past the walk (a
 * writer last seen long ago, or a gap), each actor's highest seq, read from the whole history's
 * metadata once per document handle (~45 ms at 3,000 changes, against ~200 ms for the reload a
 * panic costs) and extended by what came since (highest). Changes of a whole-document chunk in
 * the delta join the judgement (a change may depend on them) but are Automerge's to judge.
 */

/** Changes walked back from the heads before the whole history's metadata is read. */
const WALK = 32
/** Changes' actor, seq and dependencies by hash, the most recent (~400 bytes each). */
const MAX_METAS = 8192
const metas = new Map<string, Header>()

type Handle = ReturnType<typeof A.getBackend>
interface Header {
  actor: string
  seq: number
  hash: string
  deps: string[]
  /** A change of a whole-document chunk of the delta: applies with it, judged by Automerge as it loads it. */
  inDocument?: true
}

/**
 * Why the first change of `changes` that skips its actor's seq does, or undefined if none does.
 * `documents`: the delta's whole-document chunks, whose changes apply with it (a change of the
 * delta depending on one of them applies now too: review-s36 HOLE 1); read only when a change
 * may skip (a seq past 1).
 */
export function seqGap(
  doc: A.Doc<unknown>,
  heads: readonly string[],
  changes: readonly Uint8Array[],
  documents: () => readonly Uint8Array[] = () => [],
): { refused: string; actor?: string } | undefined {
  let headers: Header[]
  try {
    // Seqs first, from the headers without hashing (a compressed change's is not read there:
    // judged as one that may skip): a delta of first changes (most of a catch-up) costs no more.
    if (changes.every((c) => (changeFields(c)?.seq ?? 2) <= 1)) return undefined
    headers = changes.map((c) => changeHeader(c) ?? A.decodeChange(c))
  } catch {
    return undefined // Automerge refuses what does not decode, before touching the document
  }
  for (const h of headers) remember(h)
  for (const chunk of documents()) {
    let loaded: A.Doc<unknown>
    try {
      loaded = A.load(chunk, { allowMissingChanges: true })
    } catch {
      // Loaded onto the document, it would fail there, after touching it (A.load panics as loadIncremental does).
      return { refused: 'a whole-document chunk of it does not load' }
    }
    try {
      for (const m of A.getBackend(loaded).getChangesMeta([])) headers.push({ actor: m.actor, seq: m.seq, hash: m.hash, deps: m.deps, inDocument: true })
    } finally {
      A.free(loaded)
    }
  }
  const applying = applyingNow(doc, headers)
  const handle = A.getBackend(doc)
  const before = new Set<string>() // actor:seq of the changes that apply before the one judged
  for (const c of applying) {
    if (c.inDocument !== true && c.seq > 1 && !before.has(`${c.actor}:${c.seq - 1}`) && !holdsSeq(handle, heads, c.actor, c.seq - 1)) {
      return { refused: `change ${c.hash} is seq ${c.seq} of actor ${c.actor}, whose change ${c.seq - 1} the document does not hold`, actor: c.actor }
    }
    before.add(`${c.actor}:${c.seq}`)
  }
  return undefined
}

/**
 * The changes that apply now, each after the changes of the delta it depends on (Kahn's order:
 * O(changes + dependencies) in whatever order a peer sends them).
 */
function applyingNow(doc: A.Doc<unknown>, headers: readonly Header[]): Header[] {
  const fresh = new Map<string, Header>()
  for (const h of headers) if (!fresh.has(h.hash) && !holds(doc, h.hash)) fresh.set(h.hash, h)
  const waitingOn = new Map<string, number>() // hash → dependencies in the delta not yet applied
  const children = new Map<string, Header[]>()
  const ready: Header[] = []
  for (const h of fresh.values()) {
    let waits = 0
    let blocked = false
    for (const d of new Set(h.deps)) {
      if (fresh.has(d)) {
        waits++
        const list = children.get(d)
        if (list === undefined) children.set(d, [h])
        else list.push(h)
      } else if (!holds(doc, d)) blocked = true // waits for a change that is not here: queued
    }
    if (blocked) continue
    waitingOn.set(h.hash, waits)
    if (waits === 0) ready.push(h)
  }
  const out: Header[] = []
  while (ready.length > 0) {
    const h = ready.pop()!
    out.push(h)
    for (const child of children.get(h.hash) ?? []) {
      const left = waitingOn.get(child.hash)
      if (left === undefined) continue // blocked
      waitingOn.set(child.hash, left - 1)
      if (left === 1) ready.push(child)
    }
  }
  return out
}

/** Whether the document holds `actor`'s change `seq` (its changes are 1…n: whether n ≥ seq). */
function holdsSeq(handle: Handle, heads: readonly string[], actor: string, seq: number): boolean {
  // Known for these very heads (a peer repeating a refused delta, another change of the same delta): no walk.
  const key = keyOf(heads)
  const known = highestByHandle.get(handle)
  if (known?.key === key) return (known.seqs.get(actor) ?? 0) >= seq
  // Walked back from the heads, newest first: the writer's own last change is usually near.
  const seen = new Set<string>()
  const queue = [...heads]
  for (let i = 0; i < queue.length && seen.size < WALK; i++) {
    const hash = queue[i]!
    if (seen.has(hash)) continue
    seen.add(hash)
    const meta = metaOf(handle, hash)
    if (meta === undefined) continue
    if (meta.actor === actor && meta.seq >= seq) return true
    queue.push(...meta.deps)
  }
  return (highest(handle, heads, key).get(actor) ?? 0) >= seq
}

function keyOf(heads: readonly string[]): string {
  return [...heads].sort().join(',')
}

/**
 * Each actor's highest seq per document handle, at the heads it was read at (review-s36 HOLE 2:
 * remembered by heads alone, 8 of them, a peer pushing to nine entities in turn made every push
 * read the whole history's metadata — ~3× the reload it replaced — and so did every change of a
 * writer last seen more than WALK changes back). A handle's history only grows (loadIncremental
 * moves it on in place), so what came since is read alone: O(new changes).
 */
const highestByHandle = new WeakMap<Handle, { key: string; heads: string[]; seqs: Map<string, number> }>()

/** Each actor's highest seq in the document at `heads` (its whole history's metadata once per handle; then what came since). */
function highest(handle: Handle, heads: readonly string[], key: string): Map<string, number> {
  const known = highestByHandle.get(handle)
  if (known?.key === key) return known.seqs
  // What this handle held before (a handle's history only grows), and the changes since; else all of it.
  const grows = known !== undefined && known.heads.every((h) => handle.getChangeMetaByHash(h) !== null)
  const found = grows ? new Map(known.seqs) : new Map<string, number>()
  for (const m of handle.getChangesMeta(grows ? known.heads : [])) if ((found.get(m.actor) ?? 0) < m.seq) found.set(m.actor, m.seq)
  highestByHandle.set(handle, { key, heads: [...heads], seqs: found })
  return found
}

function remember(meta: Header): void {
  if (metas.has(meta.hash)) return
  if (metas.size >= MAX_METAS) metas.delete(metas.keys().next().value!)
  metas.set(meta.hash, { actor: meta.actor, seq: meta.seq, hash: meta.hash, deps: meta.deps })
}

/** A change's actor, seq and dependencies (the memo, else Automerge's), or undefined if the document does not hold it. */
function metaOf(handle: Handle, hash: string): Header | undefined {
  const known = metas.get(hash)
  if (known !== undefined) return known
  const meta = handle.getChangeMetaByHash(hash)
  if (meta === null) return undefined
  remember(meta)
  return meta
}
