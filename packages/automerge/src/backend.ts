import { promisify } from 'node:util'
import { inflateRaw, inflateRawSync, type ZlibOptions } from 'node:zlib'
import * as A from '@automerge/automerge'
import { beforeTouching, concatBytes, ConvergentError, ForkedActorError, RefusedChangeError, sha256, toHex, wrapError } from '@convergent/core'
import type { Backend, BackendHistory, Change, ChangeMeta, DeltaLimits, DeltaWork, JsonObject } from '@convergent/core'
import { changeHeader, checkChunks, chunkActors, deflatedParts, documentHeads, DOCUMENT_CHUNK, lastChunk, nestingDepth, splitChunks } from './chunks.js'
import { findConflicts, mergeConflicts, type ConflictTree } from './conflicts.js'
import { decodeHeads, encodeHeads } from './heads.js'
import { holds, holdsAll } from './holds.js'
import { nextTopLevelWrites } from './next-change.js'
import { afresh, checkAhead, checkApplied, type Refusal } from './op-refs.js'
import { readRoot } from './read.js'
import { seqGap } from './seq-gaps.js'
import { reconcileMap, type Conflicts } from './reconcile.js'
import { isStoredMap } from './scalars.js'
import { DELETED_KEY } from './schema.js'

export type AutomergeDoc = A.Doc<Record<string, unknown>>

export interface AutomergeBackendOptions {
  /**
   * Documents a replica keeps in memory at most (within its cacheSize); evicted ones are freed.
   * Default 1,000: Automerge's WASM allocator slows every new document down as live ones pile
   * up (W1, 10k new entities: ~4,500/s with this budget, under 200/s with all of them live).
   */
  maxResident?: number
  /**
   * What a delta may decode to (inflated, 16 bytes per operation more: chunks.ts) when
   * applyDelta's caller passes no limit. Default 32 MiB: a hostile peer's ~61 KB chunk can
   * inflate to ~60 MiB, while an entity with a 100,000-change history decodes to ~7 MB (three
   * small fields per change) to ~15 MB (a 100-byte string rewritten every change). README.
   */
  maxDecodedBytes?: number
  /**
   * What all the stored bytes of one entity may decode to, together, in load() (default
   * 512 MiB). Higher than any one delta's limit: compaction's snapshot holds the entity's
   * whole history. It keeps a bomb stored before limits existed from taking the process down.
   */
  maxLoadedBytes?: number
  /**
   * deltaSince sends the changes since the remote's heads as they are up to this size
   * (default 16 KiB); past it, it saves the whole document as well and sends the smaller.
   */
  compactCheckBytes?: number
  /**
   * Where checkDelta inflates compressed parts: 'thread-pool' (default: a bomb costs the event
   * loop nothing) or 'event-loop' (each check finishes in the turn it started, so the order of
   * concurrent applies never depends on thread timing — the simulator's deterministic runs).
   */
  inflateOn?: 'thread-pool' | 'event-loop'
}

/** The fewest bytes a change takes in A.saveSince (chunk header, actor, deps, one operation). */
const MIN_CHANGE_BYTES = 64
/** …and the fewest an operation takes in it (columns are run-length encoded). */
const MIN_OP_BYTES = 2

/** deltaSince to a replica that knows nothing: a document this small may lose to its changes. */
const TINY_DOCUMENT_BYTES = 1024

/** Change options: a fixed time, so a change's bytes and hash never depend on the wall clock. */
const CHANGE_OPTIONS = { time: 0 }

/**
 * Backend over Automerge: one document per entity. Automerge documents are immutable
 * values — every change returns a new one and outdates the old — so callers always continue
 * with the doc a method returns. Entity fields live at the root; strings are
 * ImmutableString (last-writer-wins), not collaborative text.
 */
export class AutomergeBackend implements Backend<AutomergeDoc> {
  readonly name = 'automerge'
  /** Heads are change hashes: equal heads, equal documents. */
  readonly versionNamesContent = true
  readonly maxResident: number

  /**
   * Documents whose JS object may not match their WASM state: Automerge 3.5 can patch the doc
   * object wrongly when one loadIncremental carries concurrent changes (a put and a delete of
   * the same key). Their value is read from the WASM state (A.toJS) and compared through the
   * change proxy. Every other document — created, loaded with A.load (materialised afresh),
   * then changed locally — is read straight from its object, which costs no WASM call.
   * Untrusted-ness passes on to the documents A.change derives from it.
   */
  private readonly untrusted = new WeakSet<AutomergeDoc>()

  /**
   * What is known of each document's concurrently created nested maps (conflicts.ts): null =
   * it has none, a tree = where they are, absent = unknown (a scan finds out when needed: one
   * WASM call per map-valued key). Known to be none, at no cost: a created document, a local
   * change of a document that had none (a local write never makes a conflict), and a delta
   * applied to one whose patches show no conflict and no new map. Unknown: loaded documents.
   */
  private readonly conflicts = new WeakMap<AutomergeDoc, ConflictTree | null>()

  /** The merged value of documents that have conflicting nested maps (built on first need). */
  private readonly merged = new WeakMap<AutomergeDoc, Record<string, unknown>>()

  private readonly maxDecodedBytes: number
  private readonly maxLoadedBytes: number
  private readonly compactCheckBytes: number
  private readonly inflate: (part: Uint8Array, options: ZlibOptions) => Promise<Buffer>

  constructor(options: AutomergeBackendOptions = {}) {
    this.maxResident = options.maxResident ?? 1_000
    this.maxDecodedBytes = byteCount(options.maxDecodedBytes ?? 32 * 1024 * 1024, 'maxDecodedBytes')
    this.maxLoadedBytes = byteCount(options.maxLoadedBytes ?? 512 * 1024 * 1024, 'maxLoadedBytes')
    this.compactCheckBytes = byteCount(options.compactCheckBytes ?? 16 * 1024, 'compactCheckBytes')
    this.inflate = options.inflateOn === 'event-loop' ? async (part, options) => inflateRawSync(part, options) : inflateRawAsync
  }

  /** Documents applyDelta rebuilt without changes that were queued (see rebuilt). */
  private readonly rebuiltDocs = new WeakSet<AutomergeDoc>()

  create(actor: Uint8Array): AutomergeDoc {
    const doc = A.init<Record<string, unknown>>({ actor: toHex(actor) })
    this.conflicts.set(doc, null)
    return doc
  }

  load(snapshot: Uint8Array | undefined, deltas: readonly Uint8Array[], actor: Uint8Array): AutomergeDoc {
    const parts = snapshot === undefined ? deltas : [snapshot, ...deltas]
    if (parts.length === 0) return this.create(actor)
    // Stored bytes were received under a limit, but a snapshot from compaction can hold more
    // than any one delta: a ceiling over everything, against a bomb stored before limits.
    let hasChange = false
    let decoded = 0
    for (const part of parts) {
      const checked = checkChunks(part, { maxDecodedBytes: this.maxLoadedBytes - decoded })
      hasChange = checked.hasChange || hasChange
      decoded += checked.decodedBytes
    }
    // One A.load of all chunks back to back rather than a loadIncremental per stored delta
    // (each of which patches the doc object). allowMissingChanges keeps changes whose
    // dependencies have not arrived queued, as loadIncremental does (hasPending).
    let doc: AutomergeDoc
    try {
      doc = A.load(concatBytes(parts), { actor: toHex(actor), allowMissingChanges: true })
    } catch (err) {
      throw wrapError('ERR_INVALID_DELTA', 'Automerge rejected stored bytes whose chunks were well-formed', err)
    }
    // With allowMissingChanges, one unparseable chunk makes A.load return an empty document
    // instead of throwing: never let that pass for the entity's state.
    if (hasChange && A.getHeads(doc).length === 0 && !this.hasPending(doc)) {
      A.free(doc)
      throw new ConvergentError('ERR_INVALID_DELTA', 'Stored Automerge changes loaded as an empty document: a chunk in them does not parse.')
    }
    return doc
  }

  dispose(doc: AutomergeDoc): void {
    A.free(doc)
  }

  readonly history: BackendHistory<AutomergeDoc> = {
    changesSince: (doc, version) => {
      // Heads this document does not hold cannot be a starting point (as in deltaSince).
      const known = decodeHeads(version).filter((h) => holds(doc, h))
      return A.getChangesMetaSince(doc, known).map((c) => ({ ...metaOf(c), deps: c.deps }))
    },
    readAt: (doc, heads) => this.read(A.view(doc, [...heads])),
    headsOf: (version) => decodeHeads(version),
    holds: (doc, hash) => holds(doc, hash),
    changesIn: (delta) => {
      const chunks = splitChunks(delta)
      if (chunks.some((c) => c[8] === DOCUMENT_CHUNK)) return undefined
      try {
        return chunks.map((c) => {
          const header = changeHeader(c)
          if (header !== undefined) return header
          const d = A.decodeChange(c)
          return { ...metaOf(d), deps: d.deps }
        })
      } catch (err) {
        throw wrapError('ERR_INVALID_DELTA', 'Not a delta of Automerge changes', err)
      }
    },
    nextTopLevelWrites: (doc, delta) => nextTopLevelWrites(doc, delta),
    actorsIn: (delta) => {
      try {
        return chunkActors(delta)
      } catch (err) {
        throw wrapError('ERR_INVALID_DELTA', 'Not Automerge chunks', err)
      }
    },
    lastChange: (delta) => {
      try {
        const last = lastChunk(delta)
        const header = changeHeader(last)
        if (header !== undefined) return { actor: header.actor, seq: header.seq, hash: header.hash }
        return metaOf(A.decodeChange(last))
      } catch (err) {
        throw wrapError('ERR_INVALID_DELTA', 'Not a delta of Automerge changes', err)
      }
    },
  }

  clone(doc: AutomergeDoc): AutomergeDoc {
    return A.clone(doc)
  }

  conflictedKeys(doc: AutomergeDoc): string[] {
    // Concurrent values that differ (the same value twice reads the same whichever wins).
    return Object.keys(doc).filter((key) => {
      const values = Object.values(A.getConflicts(doc, key) ?? {}).map((v) => JSON.stringify(v))
      return new Set(values).size > 1
    })
  }

  save(doc: AutomergeDoc): Uint8Array {
    return A.save(doc)
  }

  read(doc: AutomergeDoc): JsonObject | undefined {
    // An untrusted doc object (see `untrusted`) is materialised afresh from the WASM state.
    const root = this.untrusted.has(doc) ? A.toJS(doc) : doc
    if (root[DELETED_KEY] !== false) return undefined
    const conflicts = this.conflictsOf(doc, root)
    return readRoot(conflicts === null ? root : this.mergedRoot(doc, root, conflicts))
  }

  readHidden(doc: AutomergeDoc): JsonObject | undefined {
    const root = this.untrusted.has(doc) ? A.toJS(doc) : doc
    if (root[DELETED_KEY] === false) return undefined // live: read() shows it
    const conflicts = this.conflictsOf(doc, root)
    const hidden = readRoot(conflicts === null ? root : this.mergedRoot(doc, root, conflicts))
    return Object.keys(hidden).length === 0 ? undefined : hidden
  }

  put(doc: AutomergeDoc, value: JsonObject): Change<AutomergeDoc> {
    if (Object.prototype.hasOwnProperty.call(value, DELETED_KEY)) {
      throw new ConvergentError('ERR_INVALID_VALUE', `The field name ${JSON.stringify(DELETED_KEY)} is reserved by the Automerge backend; rename the field.`)
    }
    // Compared against the doc object when it can be trusted, else through the proxy; with
    // conflicting nested maps, against the value as read (merged), which is then materialised.
    let base = this.untrusted.has(doc) ? undefined : (doc as Record<string, unknown>)
    let conflicts: Conflicts | undefined
    if (this.conflicts.get(doc) !== null) {
      const root = base ?? A.toJS(doc)
      const tree = this.conflictsOf(doc, root)
      if (tree !== null) {
        const handle = A.getBackend(doc)
        base = this.mergedRoot(doc, root, tree)
        conflicts = { tree, handle }
      }
    }
    const next = this.change(doc, (root) => {
      // Only a put on a deleted (or never written) entity touches the flag, so a delete
      // concurrent with this put still wins.
      if ((base ?? root)[DELETED_KEY] !== false) root[DELETED_KEY] = false
      reconcileMap(root, value, DELETED_KEY, base, conflicts)
    })
    return { doc: next, delta: next === doc ? null : lastLocalChange(next) }
  }

  delete(doc: AutomergeDoc): Change<AutomergeDoc> {
    const base = this.untrusted.has(doc) ? undefined : (doc as Record<string, unknown>)
    const next = this.change(doc, (root) => {
      const src = base ?? root
      if (src[DELETED_KEY] !== false) return // already deleted, or never written
      root[DELETED_KEY] = true
      for (const key of Object.keys(src)) if (key !== DELETED_KEY) delete root[key]
    })
    return { doc: next, delta: next === doc ? null : lastLocalChange(next) }
  }

  /**
   * The size check of applyDelta, with every deflated part inflated in zlib's thread pool
   * instead of on the event loop (a bomb then costs the loop nothing), within what is left of
   * maxDecodedBytes. Framing only besides: checksums, rows and parsing wait for applyDelta.
   */
  async checkDelta(delta: Uint8Array, limits: DeltaLimits): Promise<void> {
    const { parts, plainBytes } = deflatedParts(delta)
    let left = limits.maxDecodedBytes - plainBytes
    if (left < 0) throw tooLarge(limits.maxDecodedBytes)
    for (const part of parts) {
      let out: Buffer
      try {
        out = await this.inflate(part, { maxOutputLength: Math.max(1, left) })
      } catch (err) {
        if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(limits.maxDecodedBytes)
        throw new ConvergentError('ERR_INVALID_DELTA', 'These bytes are not a valid Automerge delta: a compressed part does not inflate.')
      }
      left -= out.byteLength
      if (left < 0) throw tooLarge(limits.maxDecodedBytes)
    }
  }

  /**
   * applyDelta's checks before it touches the document — framing and size, depth, the ops a
   * live push names (op-refs.ts): what they refuse is marked beforeTouching, so the caller keeps
   * the document rather than reload it (a peer's bad deltas then cost no O(history) reload).
   */
  private beforeApplying(doc: AutomergeDoc, delta: Uint8Array, limits?: DeltaLimits) {
    try {
      const checked = checkChunks(delta, {
        parseAfterFirst: true,
        maxDecodedBytes: limits === undefined ? this.maxDecodedBytes : byteCount(limits.maxDecodedBytes, 'maxDecodedBytes'),
      })
      const { hasChange } = checked
      const maxDepth = limits?.maxDepth ?? DEFAULT_MAX_DEPTH
      if (checked.changeOps > maxDepth && nestingDepth(checked.changes) > maxDepth) {
        throw new ConvergentError('ERR_INVALID_DELTA', `This Automerge delta nests objects more than ${maxDepth} deep (maxDepth). It was not applied.`)
      }
      const heads = A.getHeads(doc)
      // A change that skips its actor's seq makes Automerge panic once it has touched the document (seq-gaps.ts).
      const documents = () => (checked.hasDocument ? splitChunks(delta).filter((c) => c[8] === DOCUMENT_CHUNK) : [])
      const gap = hasChange ? seqGap(doc, heads, checked.changes, documents) : undefined
      if (gap !== undefined)
        throw new RefusedChangeError(`This Automerge delta holds a change that skips its actor's seq: ${gap.refused}. It was not applied.`, gap.actor)
      const pending = this.hasPending(doc)
      // Every op the changes name must be one their authors could see (op-refs.ts): a live push
      // is judged here, against the document as it is; other changes once applied, and with them
      // any that were queued (a document may bring what they waited for). Whole documents alone
      // only as Automerge loads them (README).
      const ahead = pending ? 'after' : !hasChange ? 'ok' : checked.hasDocument ? 'after' : checkAhead(doc, heads, checked.changes)
      if (typeof ahead === 'object') throw refusedRefs(ahead.refused, ahead.actor)
      return { checked, heads, pending, ahead }
    } catch (err) {
      throw beforeTouching(err)
    }
  }

  applyDelta(doc: AutomergeDoc, delta: Uint8Array, limits?: DeltaLimits): AutomergeDoc {
    const { checked, heads, pending, ahead } = this.beforeApplying(doc, delta, limits)
    const { hasChange } = checked
    const handle = A.getBackend(doc)
    // While changes wait here, what the document holds without them, taken before the delta
    // may release them (one that is refused can corrupt what it is applied to): O(document).
    const settled = pending ? settledBytes(doc, heads) : undefined
    const actor = A.getActorId(doc) // read before applying: a panic leaves the document unusable
    let next: AutomergeDoc
    try {
      next = this.applyChecked(doc, heads, pending, hasChange, delta)
    } catch (err) {
      // A queued change the delta released may be what failed: one that skips its actor's seq
      // makes Automerge panic (seq-gaps.ts judges only what applies now), and kept in the queue
      // it failed every delivery of the change it waited for, for good. So the delta alone, on
      // what the document held without the queue; taken, the queue goes (its honest changes
      // come again by anti-entropy) and the caller stores the document whole.
      const alone = pending ? this.alone(settled, actor, heads, delta, hasChange, limits?.work) : undefined
      if (alone === undefined) throw err
      this.rebuiltDocs.add(alone)
      return alone
    }
    if (ahead === 'after') {
      const work = limits?.work
      const refusal = checkApplied(next, heads, work)
      if (refusal === undefined) return next
      // Changes queued here before (their past was missing: never judged) may be what is
      // refused, now that the delta brought what they waited for: then the delta again on the
      // document without them, which the caller stores whole (rebuilt). Without this, every
      // delivery of the honest change they wait for would be refused with them. When the batch
      // was not judged (over budget), the reads may be the queue's, not the delta's: queued
      // changes are anyone's, and a member can queue some that need more than a minute's reads
      // — every delta that releases them would be refused, every minute (also where reads are
      // charged to each change's author: unbound actors' are the sender's). Then the delta alone,
      // within what its authors had; taken, the queue goes, as after MAX_REBUILD_ROUNDS (its
      // honest changes come again by anti-entropy). Either way work.exhausted says whether only
      // the budget stood in the way: the caller then takes it as a rate, and the delta comes again.
      const rebuilt = !pending
        ? undefined
        : refusal.overBudget === true
          ? this.alone(settled, actor, heads, delta, hasChange, work)
          : this.rebuildWithout(next, settled, heads, delta, hasChange, refusal, work)
      // A fresh document is ours to free; one that loadIncremental moved on shares the
      // handle of `doc`, which the caller disposes with it.
      if (A.getBackend(next) !== handle) A.free(next)
      if (rebuilt !== undefined) {
        this.rebuiltDocs.add(rebuilt)
        return rebuilt
      }
      if (!pending && refusal.overBudget === true) work!.exhausted = true
      throw refusedRefs(refusal.why, refusal.actor)
    }
    return next
  }

  /**
   * `delta` alone on what the document held without its queued changes, judged within what its
   * authors were allowed (each account's `allowed`, whatever the queue read): the document, or undefined.
   * `work.exhausted` says afterwards whether only the budget stood in the way (a rate).
   */
  private alone(
    settled: Uint8Array | undefined,
    actor: string,
    heads: string[],
    delta: Uint8Array,
    hasChange: boolean,
    work: DeltaWork | undefined,
  ): AutomergeDoc | undefined {
    if (settled === undefined) return undefined
    let alone: AutomergeDoc
    try {
      // As it would be applied with no queue (a whole document loaded as such, not rewritten by loadIncremental).
      alone = this.applyChecked(this.settledDoc(settled, actor), heads, false, hasChange, delta)
    } catch {
      return undefined
    }
    const own = work === undefined ? undefined : afresh(work)
    const verdict = checkApplied(alone, heads, own?.view)
    if (work !== undefined) {
      own!.settle()
      work.exhausted = verdict?.overBudget === true
    }
    if (verdict === undefined) return alone
    A.free(alone)
    return undefined
  }

  /** What a document held without its queued changes (settledBytes), as a document of `actor`. */
  private settledDoc(settled: Uint8Array, actor: string): AutomergeDoc {
    return settled.byteLength === 0 ? A.init<Record<string, unknown>>({ actor }) : A.load<Record<string, unknown>>(settled, { actor })
  }

  /**
   * `delta` applied to what the document held at `heads`, with every change that was queued in
   * `next` (released by the delta or still waiting) but the refused ones: undefined when the
   * delta itself holds a refused change. Each round drops the change refused in the last
   * (one fork and load of the document each, ~O(document)); after MAX_REBUILD_ROUNDS, or when the
   * refused change cannot be told, the whole queue goes (honest changes in it come again by
   * anti-entropy from the peers that hold them).
   */
  private rebuildWithout(
    next: AutomergeDoc,
    settled: Uint8Array | undefined,
    heads: string[],
    delta: Uint8Array,
    hasChange: boolean,
    first: Refusal,
    work: DeltaWork | undefined,
  ): AutomergeDoc | undefined {
    const own = new Set(splitChunks(delta).flatMap((c) => (c[8] === DOCUMENT_CHUNK ? [] : [hashOf(c)])))
    const candidates = queuedIn(next, heads).filter((c) => !own.has(c.hash))
    if (settled === undefined) return undefined
    const actor = A.getActorId(next)
    const refused = new Set<string>()
    let refusal: Refusal = first
    for (let round = 0; round <= MAX_REBUILD_ROUNDS; round++) {
      // The refused change cannot be told, or is the delta's own (a queued change can make an
      // honest one unreadable beside it): the delta alone, on the document without the queue.
      if (refusal.hash === undefined || own.has(refusal.hash) || round === MAX_REBUILD_ROUNDS) return this.alone(settled, actor, heads, delta, hasChange, work)
      refused.add(refusal.hash)
      const kept = candidates.filter((c) => !refused.has(c.hash)).map((c) => c.bytes)
      let rebuilt: AutomergeDoc
      try {
        // The delta as it would be applied with no queue (a whole document loaded as such, not
        // rewritten by loadIncremental), then the kept changes; all judged together.
        rebuilt = this.applyChecked(this.settledDoc(settled, actor), heads, false, hasChange, delta)
        if (kept.length > 0) rebuilt = loadOnto(rebuilt, concatBytes(kept))
      } catch {
        return undefined
      }
      const again = checkApplied(rebuilt, heads, work)
      if (again?.overBudget === true) {
        // Not judged: the queue's reads, maybe; the delta alone, within its authors' allowance.
        A.free(rebuilt)
        return this.alone(settled, actor, heads, delta, hasChange, work)
      }
      if (again === undefined) return rebuilt
      A.free(rebuilt)
      refusal = again
    }
    return undefined
  }

  pendingIds(doc: AutomergeDoc): string[] {
    // A.save holds the queued changes as change chunks after the document (see queuedIn).
    return splitChunks(A.save(doc)).flatMap((chunk) => (chunk[8] === DOCUMENT_CHUNK ? [] : [hashOf(chunk)]))
  }

  withoutPending(doc: AutomergeDoc, keep?: ReadonlySet<string>): AutomergeDoc | undefined {
    const settled = settledBytes(doc, A.getHeads(doc))
    if (settled === undefined) return undefined
    // The queued changes to keep (they waited here before: an honest one waiting for a change in
    // flight would otherwise be gone when that change comes), as A.save writes them.
    const kept = keep === undefined || keep.size === 0 ? [] : splitChunks(A.save(doc)).filter((c) => c[8] !== DOCUMENT_CHUNK && keep.has(hashOf(c)))
    let out: AutomergeDoc
    try {
      out = this.settledDoc(settled, A.getActorId(doc))
      if (kept.length > 0) out = loadOnto(out, concatBytes(kept))
    } catch {
      return undefined
    }
    this.rebuiltDocs.add(out)
    return out
  }

  /** True for a document applyDelta rebuilt without the changes that were queued in the one it was given. */
  rebuilt(doc: AutomergeDoc): boolean {
    return this.rebuiltDocs.has(doc)
  }

  private applyChecked(doc: AutomergeDoc, heads: string[], pending: boolean, hasChange: boolean, delta: Uint8Array): AutomergeDoc {
    // A document that holds nothing yet (an entity new here, from a peer) is loaded from the
    // delta instead: A.load materialises a fresh, trusted object, so reading it needs no
    // A.toJS — ~100 µs against ~170–190 µs per entity with loadIncremental. The empty
    // document it replaces is freed (like an outdated one, it is not used again).
    if (heads.length === 0 && !pending) {
      const loaded = loadDelta(doc, delta)
      A.free(doc)
      return loaded
    }
    // Whole documents (a compact catch-up from deltaSince, a served snapshot) that hold
    // something new: loading one afresh and adding the few changes only this side has is
    // cheaper than loadIncremental, which rebuilds every change of the document to merge it
    // (100,000 changes onto 50,000: ~1.3 s against ~3 s).
    if (!hasChange && !pending && !holdsAll(doc, documentHeads(delta))) return this.mergeDocument(doc, heads, delta)
    let next: AutomergeDoc
    let mayConflict = false
    try {
      next = A.loadIncremental(doc, delta, {
        patchCallback: (patches) => {
          mayConflict ||= patches.some(mayRevealConflict)
        },
      })
    } catch (err) {
      throw rejected(err)
    }
    // Unmoved heads: nothing was applied (at most queued), so nothing was patched.
    if (this.untrusted.has(doc) || !sameHeads(heads, A.getHeads(next))) this.untrusted.add(next)
    if (next !== doc && !mayConflict && this.conflicts.get(doc) === null) this.conflicts.set(next, null)
    return next
  }

  version(doc: AutomergeDoc): Uint8Array {
    return encodeHeads(A.getHeads(doc))
  }

  versionHash(doc: AutomergeDoc): Uint8Array {
    return sha256(this.version(doc))
  }

  /**
   * The changes since the remote's heads (A.saveSince: uncompressed, ~130 bytes per small
   * change) or the whole document (A.save: compressed, ~2 bytes per such change), whichever
   * is smaller, so a replica that fell far behind can always catch up within the delta limit.
   * What is sent is at most max(compactCheckBytes, A.save(doc)). The larger of the two is
   * only computed when it might win: A.saveSince costs ~25 µs per change, A.save ~1 µs.
   */
  deltaSince(doc: AutomergeDoc, version: Uint8Array): Uint8Array | null {
    const remote = decodeHeads(version)
    const remoteSet = new Set(remote)
    // Heads are the frontier of the history: holding all of ours means holding everything.
    if (A.getHeads(doc).every((h) => remoteSet.has(h))) return null
    // Heads we have never seen cannot be a starting point; without any, send everything.
    const known = remote.filter((h) => holds(doc, h))
    if (known.length === 0) {
      // Everything. A short history goes as its changes when they fit compactCheckBytes: a
      // replica that holds changes of its own applies them at a fraction of what merging a
      // whole document into its copy costs (mergeDocument: ~2x on a partition heal). The
      // count comes first so that a long history is never serialised change by change.
      // Only to a replica with heads of its own (one with none loads a document, not merges
      // it); ops are counted too, so a few huge changes are not serialised to be thrown away.
      const stats = remote.length > 0 ? A.stats(doc) : undefined
      if (stats !== undefined && stats.numChanges <= this.compactCheckBytes / MIN_CHANGE_BYTES && stats.numOps <= this.compactCheckBytes / MIN_OP_BYTES) {
        const all = A.saveSince(doc, [])
        if (all.byteLength <= this.compactCheckBytes) return all
      }
      // Else the document, unless it is so small that its few changes are smaller.
      const whole = A.save(doc)
      if (whole.byteLength > TINY_DOCUMENT_BYTES) return whole
      return smaller(whole, A.saveSince(doc, []))
    }
    const since = A.saveSince(doc, known)
    if (since.byteLength === 0) return null
    if (since.byteLength <= this.compactCheckBytes) return since
    return smaller(A.save(doc), since)
  }

  includes(doc: AutomergeDoc, version: Uint8Array): boolean {
    // Heads are hashes of changes: held means in the history (a queued change is not).
    return holdsAll(doc, decodeHeads(version))
  }

  mergeDeltas(deltas: readonly Uint8Array[]): Uint8Array {
    if (deltas.length === 0) throw new ConvergentError('ERR_INVALID_ARGUMENT', 'mergeDeltas needs at least one delta.')
    // A sequence of chunks is itself valid input to loadIncremental, in any order.
    return concatBytes(deltas)
  }

  hasPending(doc: AutomergeDoc): boolean {
    // Queued changes are exactly those with a dependency we do not have.
    return A.getMissingDeps(doc, []).length > 0
  }

  /**
   * `delta` (whole documents, holding something `doc` lacks) loaded afresh, plus whatever
   * `doc` holds that they do not. `doc` has no queued changes. It is freed, as in applyDelta.
   */
  private mergeDocument(doc: AutomergeDoc, heads: readonly string[], delta: Uint8Array): AutomergeDoc {
    let next = loadDelta(doc, delta)
    if (!holdsAll(next, heads)) {
      // This side has changes the sender lacks: those after the heads both have.
      const common = A.getHeads(next).filter((h) => holds(doc, h))
      try {
        next = A.loadIncremental(next, A.saveSince(doc, common))
      } catch (err) {
        A.free(next)
        throw wrapError('ERR_INVALID_DELTA', 'Automerge could not merge a document delta', err)
      }
      // Patched by loadIncremental: read from the WASM state (see `untrusted`).
      this.untrusted.add(next)
    }
    A.free(doc)
    return next
  }

  /** `doc`'s value (`root`) with its conflicts merged, as read shows it; kept for the next read or put. */
  private mergedRoot(doc: AutomergeDoc, root: Record<string, unknown>, conflicts: ConflictTree): Record<string, unknown> {
    let merged = this.merged.get(doc)
    if (merged === undefined) {
      merged = mergeConflicts(A.getBackend(doc), root, conflicts)
      this.merged.set(doc, merged)
    }
    return merged
  }

  /** Where `doc`'s conflicting nested maps are (null: none); `root` is its value, with object ids. */
  private conflictsOf(doc: AutomergeDoc, root: Record<string, unknown>): ConflictTree | null {
    let conflicts = this.conflicts.get(doc)
    if (conflicts === undefined) {
      conflicts = findConflicts(A.getBackend(doc), root)
      this.conflicts.set(doc, conflicts)
    }
    return conflicts
  }

  /**
   * A.change with a fixed time (core never reads the wall clock, and a change's hash covers
   * its time), Automerge's own refusals (e.g. a "__proto__" key) as ERR_INVALID_VALUE, and
   * an untrusted doc's successor untrusted too (its object is patched from the old one).
   */
  private change(doc: AutomergeDoc, fn: (root: Record<string, unknown>) => void): AutomergeDoc {
    let next: AutomergeDoc
    try {
      next = A.change(doc, CHANGE_OPTIONS, fn)
    } catch (err) {
      throw wrapError('ERR_INVALID_VALUE', 'Automerge cannot store this value', err)
    }
    if (next !== doc && this.untrusted.has(doc)) this.untrusted.add(next)
    // A local write makes no conflict (it supersedes every value it touches) but may end
    // some: a document with none keeps none, one with some is scanned again when needed.
    if (next !== doc && this.conflicts.get(doc) === null) this.conflicts.set(next, null)
    return next
  }
}

const inflateRawAsync = promisify(inflateRaw)

/** The nesting a remote delta may add when the caller gives no limit (core's value limit). */
const DEFAULT_MAX_DEPTH = 64

function tooLarge(max: number): ConvergentError {
  return new ConvergentError('ERR_TOO_LARGE', `This Automerge delta decodes to more than ${max} bytes (maxDecodedBytes). It was not applied.`)
}

export function automergeBackend(options: AutomergeBackendOptions = {}): Backend<AutomergeDoc> {
  return new AutomergeBackend(options)
}

/**
 * Whether a patch may show a key with several maps: a conflict, or a map (or list) put at a
 * key — which may also be an older one coming into view, holding conflicts of its own.
 */
function mayRevealConflict(patch: A.Patch): boolean {
  if (patch.action === 'conflict') return true
  return patch.action === 'put' && (patch.conflict === true || isStoredMap(patch.value) || Array.isArray(patch.value))
}

/**
 * Why Automerge refused a well-formed delta: a fork of an actor (a second change of one actor
 * and seq, which Automerge reports as a duplicate seq) told apart, as ForkedActorError.
 */
function rejected(err: unknown): ConvergentError {
  const fork = /duplicate seq (\d+) found for actor ([0-9a-f]+)/.exec(err instanceof Error ? err.message : String(err))
  if (fork !== null) return new ForkedActorError(fork[2]!, Number(fork[1]), { cause: err })
  return wrapError('ERR_INVALID_DELTA', 'Automerge rejected a delta whose chunks were well-formed', err)
}

/** A.load of a delta, for the actor of `doc`; queued changes stay queued. */
function loadDelta(doc: AutomergeDoc, delta: Uint8Array): AutomergeDoc {
  try {
    return A.load<Record<string, unknown>>(delta, { actor: A.getActorId(doc), allowMissingChanges: true })
  } catch (err) {
    throw wrapError('ERR_INVALID_DELTA', 'Automerge rejected a delta whose chunks were well-formed', err)
  }
}

/** Rounds of dropping one refused queued change before the whole queue goes (rebuildWithout). */
const MAX_REBUILD_ROUNDS = 4

/** The hash of a change chunk. */
function hashOf(chunk: Uint8Array): string {
  return changeHeader(chunk)?.hash ?? A.decodeChange(chunk).hash
}

/**
 * The changes `doc` holds past `heads` that keep their hash when written out again (a refused
 * one may not: it is left out), and the changes still queued in it (A.save writes them after
 * the document, as they came).
 */
function queuedIn(doc: AutomergeDoc, heads: string[]): { hash: string; bytes: Uint8Array }[] {
  const handle = A.getBackend(doc)
  const out: { hash: string; bytes: Uint8Array }[] = []
  for (const m of handle.getChangesMeta(heads)) {
    let bytes: Uint8Array | null
    try {
      bytes = handle.getChangeByHash(m.hash)
    } catch {
      continue // names an op the document does not hold
    }
    if (bytes !== null && hashOf(bytes) === m.hash) out.push({ hash: m.hash, bytes })
  }
  for (const chunk of splitChunks(A.save(doc))) if (chunk[8] !== DOCUMENT_CHUNK) out.push({ hash: hashOf(chunk), bytes: chunk })
  return out
}

/** What `doc` holds at `heads` (its queue dropped), saved (empty: nothing); undefined if that cannot be read back. */
function settledBytes(doc: AutomergeDoc, heads: string[]): Uint8Array | undefined {
  if (heads.length === 0) return new Uint8Array(0)
  try {
    const fork = A.getBackend(doc).fork(undefined, heads)
    try {
      return fork.save()
    } finally {
      fork.free()
    }
  } catch {
    return undefined
  }
}

/** `bytes` loaded onto a fresh document `doc` (which it replaces). */
function loadOnto(doc: AutomergeDoc, bytes: Uint8Array): AutomergeDoc {
  try {
    return A.loadIncremental(doc, bytes)
  } catch (err) {
    A.free(doc)
    throw err
  }
}

function refusedRefs(why: string, actor?: string): ConvergentError {
  return new RefusedChangeError(`This Automerge delta names ops its changes could not see: ${why}. It was not applied.`, actor)
}

function smaller(a: Uint8Array, b: Uint8Array): Uint8Array {
  return b.byteLength < a.byteLength ? b : a
}

function byteCount(n: number, name: string): number {
  if (typeof n !== 'number' || !(n >= 0)) {
    throw new ConvergentError('ERR_INVALID_ARGUMENT', `${name} must be a number of bytes (0 or more); got ${String(n)}.`)
  }
  return n
}

function sameHeads(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((h, i) => h === b[i])
}

function metaOf(c: { actor: string; seq: number; hash?: string | undefined }): ChangeMeta {
  if (c.hash === undefined) throw new ConvergentError('ERR_INVALID_DELTA', 'An Automerge change without a hash.')
  return { actor: c.actor, seq: c.seq, hash: c.hash }
}

function lastLocalChange(doc: AutomergeDoc): Uint8Array | null {
  return A.getLastLocalChange(doc) ?? null
}
