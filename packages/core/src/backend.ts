import type { JsonObject, JsonValue } from './json.js'

/**
 * A Backend turns entity values into CRDT documents and back. One document per entity.
 * Implementations: @convergent/yjs, @convergent/automerge. Every Backend runs the shared
 * compliance suite in @convergent/core/testing (backendComplianceSuite).
 *
 * Documents are opaque to core. A backend may mutate a document in place (Yjs) or return a
 * new one (Automerge): callers always continue with the `doc` a method returns, and never use
 * the one they passed in again when a different one came back (it may have been freed).
 *
 * Semantics every backend implements:
 *  - put(doc, value) makes the document's value deep-equal to `value` with the fewest CRDT
 *    operations it can: unchanged fields are not touched, nested objects are reconciled field
 *    by field, so concurrent writes of different fields (at any depth) both survive.
 *  - Two replicas that each create the same entity concurrently merge field by field.
 *  - delete(doc) marks the entity deleted (read → undefined). A delete wins over updates that
 *    are concurrent with it; a put made after the delete (causally) brings the entity back.
 *  - applyDelta is idempotent and commutative; deltas may arrive in any order and any number
 *    of times. A delta whose dependencies have not arrived is held until they do.
 *  - Corrupt bytes throw ConvergentError('ERR_INVALID_DELTA') and leave the doc unchanged.
 */
export interface Backend<Doc = unknown> {
  /** Stable name stored with every entity and sent on the wire: 'yjs', 'automerge'. */
  readonly name: string

  /**
   * A new, empty document (read → undefined). `actor` is 16 random bytes drawn by the replica
   * for this load of the document — or, in a cluster and for a backend with a history, the
   * replica's actor bound to its peer id (24 bytes, one per process: trust/actor-binding.ts);
   * the backend derives its actor / client id from it.
   */
  create(actor: Uint8Array): Doc

  /**
   * Rebuilds a document from a snapshot (undefined = none) followed by deltas in order.
   * Throws ERR_INVALID_DELTA if any of the bytes are corrupt.
   */
  load(snapshot: Uint8Array | undefined, deltas: readonly Uint8Array[], actor: Uint8Array): Doc

  /** The full state as one compact snapshot (used by compaction). */
  save(doc: Doc): Uint8Array

  /** The current value, as a fresh plain object; undefined if never written or deleted. */
  read(doc: Doc): JsonObject | undefined

  /**
   * Optional: what the document holds under its value while read() says undefined — writes
   * concurrent with a delete, or made without the live flag — which a later put that did not
   * see them shows again; undefined when it holds none (or the entity is live). Core holds it to
   * the same value limits as a live value: else an object nested past maxDepth (or content past
   * maxMergedValueBytes) is taken while hidden, and the put that shows it is refused only where
   * it was taken first, which parts replicas for good (review-order-refusals HOLE 1).
   */
  readHidden?(doc: Doc): JsonObject | undefined

  /** See the interface comment. `delta` is null when nothing changed. */
  put(doc: Doc, value: JsonObject): Change<Doc>

  /** Marks the entity deleted. `delta` is null if it already was. */
  delete(doc: Doc): Change<Doc>

  /**
   * Applies a delta from another replica. `limits.maxDecodedBytes` bounds what the delta may
   * decode to (a compressed delta inflates): over it, ERR_TOO_LARGE, checked BEFORE the bytes
   * are inflated into memory or reach the document.
   *
   * All or nothing: on any throw the caller discards `doc` (a backend that mutates in place
   * may have applied part of the delta) and reloads the entity from the store — unless the
   * error is marked with beforeTouching (refused before the document was touched): then the
   * caller keeps `doc`, and a refused delta costs no reload (which costs what the history holds).
   */
  applyDelta(doc: Doc, delta: Uint8Array, limits?: DeltaLimits): Doc

  /**
   * Optional: true for a document applyDelta returned after dropping changes that were queued
   * in the one it was given (waiting for others, so never judged; one was refused once they
   * came). The caller stores it whole, as a snapshot: the stored deltas still hold them.
   */
  rebuilt?(doc: Doc): boolean

  /**
   * Optional: a new document holding what `doc` holds without the operations still waiting for
   * their dependencies (Automerge: its queued changes), for which rebuilt() is true (the caller
   * stores it whole); undefined when it cannot be made. Those of `keep` (pendingIds) that still
   * wait are kept waiting in it. `doc` is left as it was. A whole document
   * that leaves changes waiting is taken this way (apply.ts): a change waiting for one that never
   * comes would otherwise keep every whole document of the entity out for good.
   */
  withoutPending?(doc: Doc, keep?: ReadonlySet<string>): Doc | undefined

  /**
   * Optional, with withoutPending: ids (Automerge: hashes) of the operations `doc` holds that
   * still wait for their dependencies (see hasPending). A whole document that leaves only these
   * waiting, as they waited before it, is judged as any other (apply.ts).
   */
  pendingIds?(doc: Doc): string[]

  /**
   * Optional: a cheap check of a remote delta before any document is touched — its framing,
   * and what it decodes to within limits.maxDecodedBytes — so garbage never costs a document,
   * and inflating can happen off the event loop (it may return a promise). Throws (or rejects
   * with) ERR_INVALID_DELTA or ERR_TOO_LARGE. applyDelta still checks everything itself.
   */
  checkDelta?(delta: Uint8Array, limits: DeltaLimits): void | Promise<void>

  /** The document's version: Yjs state vector + delete set, Automerge heads. */
  version(doc: Doc): Uint8Array

  /**
   * 32 bytes that are equal on two replicas exactly when their documents hold the same
   * operations — independent of the order they arrived in. Used by anti-entropy digests.
   */
  versionHash(doc: Doc): Uint8Array

  /**
   * Optional: true where equal versions mean equal content, the version naming each change by
   * its hash (Automerge). Anti-entropy then never takes entities of equal versions for divergent
   * (their version hashes can only have differed while one side was catching up).
   */
  readonly versionNamesContent?: boolean

  /**
   * A delta holding what a replica at `version` lacks (it may hold more, never less);
   * null when it lacks nothing. Throws ERR_INVALID_VERSION on undecodable version bytes.
   */
  deltaSince(doc: Doc, version: Uint8Array): Uint8Array | null

  /**
   * True when the document holds every operation of a replica at `version` (deletions too): a
   * peer answers a write's acknowledgement query with it (put(…, { ack })). Operations still
   * waiting for their dependencies (see hasPending) are not held. Throws ERR_INVALID_VERSION
   * on undecodable version bytes.
   */
  includes(doc: Doc, version: Uint8Array): boolean

  /** Folds several deltas into one (for coalescing pushes). Must equal applying them in order. */
  mergeDeltas(deltas: readonly Uint8Array[]): Uint8Array

  /**
   * True if the document holds received operations whose dependencies have not arrived yet
   * (Yjs pending structs, Automerge queued changes). Core persists a delta that left pending
   * state even though the version did not move, so a reload rebuilds the same document.
   */
  hasPending(doc: Doc): boolean

  /**
   * Optional: how many documents of this backend a replica keeps in memory at most (within
   * its cacheSize). For backends whose documents cost more than their JS objects: Automerge
   * keeps them in a WASM heap that slows down as it fills.
   */
  readonly maxResident?: number

  /**
   * Optional: frees what a document holds outside the JS heap (Automerge: its WASM memory),
   * once core has evicted it and nothing uses it any more. The document is never used after.
   */
  dispose?(doc: Doc): void

  /**
   * Optional: an independent copy of a document (what changes one leaves the other as it was),
   * cheaper than load(save(doc)). Core uses it to try a delta before applying it.
   */
  clone?(doc: Doc): Doc

  /**
   * Optional: top-level keys of the document's value that hold concurrent values (a map
   * register's conflict, of which read() shows one). Core refuses them under counter row keys.
   */
  conflictedKeys?(doc: Doc): string[]

  /**
   * Optional: the change history, for backends whose changes form a hash chain per actor
   * (Automerge). With it, a cluster binds each replica's actors to its peer id and checks that
   * every change of a bound actor that arrives is covered by its author's signed head
   * (trust/signed-heads.ts), whoever relays it.
   */
  readonly history?: BackendHistory<Doc>
}

/** One change of a document's history. Hex, as Automerge spells actors and hashes. */
export interface ChangeMeta {
  actor: string
  seq: number
  hash: string
  /** The hashes of the changes it depends on (its causal past's heads), where the backend says. */
  deps?: string[]
}

export interface BackendHistory<Doc = unknown> {
  /**
   * The changes `doc` holds that a replica at `version` lacks (applied ones: queued changes are
   * not history yet). Version bytes the document does not know count as knowing nothing.
   * Throws ERR_INVALID_VERSION on undecodable version bytes.
   */
  changesSince(doc: Doc, version: Uint8Array): ChangeMeta[]
  /** True if the document's history holds the change with this hash (hex). */
  holds(doc: Doc, hash: string): boolean
  /** The last change of a delta made by put/delete (or mergeDeltas of such deltas). */
  lastChange(delta: Uint8Array): ChangeMeta
  /**
   * The changes a delta carries and what each depends on, without applying it — or undefined
   * when the delta is (or holds) a whole document, whose changes only show once applied.
   * Throws ERR_INVALID_DELTA on bytes that are not changes.
   */
  changesIn(delta: Uint8Array): (ChangeMeta & { deps: string[] })[] | undefined
  /** The actors whose changes a delta may hold (its actor tables: a superset), without applying it. */
  actorsIn(delta: Uint8Array): string[]
  /**
   * The value as it was at `heads` (hashes the document holds; [] for before any change):
   * what a change saw, judged against its own causal past rather than the receiver's document
   * (counters' signed rows). Throws if the document does not hold them.
   */
  readAt?(doc: Doc, heads: readonly string[]): JsonObject | undefined
  /** The heads (change hashes) a version names; [] for an empty one. Throws ERR_INVALID_VERSION on bytes that are not one. */
  headsOf?(version: Uint8Array): string[]
  /**
   * For a delta that is one change on top of `doc` (it depends on every head of the document,
   * which holds all it depends on): its writes at the top level, in order — [key, value] as
   * read() would show the value, [key, undefined] for a delete — where each replaces exactly the
   * values the document shows at that key. Then the document with the change applied reads as
   * read(doc) with these writes, and no key it writes holds concurrent values. Undefined for
   * anything else (more changes, a whole document, other dependencies, an object or list, a
   * value read() would show otherwise, a write inside an object, one that leaves or makes a
   * concurrent value). Read from the change, not applied: counters judge a live push with it,
   * without a copy of the document. Throws ERR_INVALID_DELTA on bytes that are not changes.
   */
  nextTopLevelWrites?(doc: Doc, delta: Uint8Array): [key: string, value: JsonValue | undefined][] | undefined
}

export interface DeltaLimits {
  /** Largest size the delta's content may have once decoded (decompressed), in bytes. */
  maxDecodedBytes: number
  /**
   * Deepest nesting of objects the delta may create (the value limit's maxDepth): backends
   * that apply recursively refuse deeper ones before applying.
   */
  maxDepth?: number
  /**
   * Work judging the delta may take beyond O(delta) — Automerge: change records read from the
   * document's history to judge ops named on an old base (op-refs.ts) — counted into `done`.
   * Once `allowed` are read no further read starts (one read cannot be cut short, so `done` may
   * pass it): a delta that needs one is refused (ERR_INVALID_DELTA) with `exhausted` set. The
   * caller bounds what each peer may make it do: a rate, not a verdict.
   */
  work?: DeltaWork
}

/**
 * See DeltaLimits.work. With `accountOf`, the reads judging a change are charged to the
 * account it returns for the change's author (Automerge: its actor, hex) instead — each with its
 * own `allowed` and `done`, and `exhausted` set on the one that ran out; `exhausted` here says
 * whether the delta was refused for the budget alone.
 */
export interface DeltaWork {
  allowed: number
  done: number
  exhausted?: boolean
  accountOf?(actor: string): DeltaWork
}

export interface Change<Doc> {
  doc: Doc
  delta: Uint8Array | null
}

const UNTOUCHED = Symbol('convergent: refused before the document was touched')

/** Marks an error applyDelta throws before it touched the document (see Backend.applyDelta). */
export function beforeTouching(err: unknown): Error {
  const error = err instanceof Error ? err : new Error(String(err))
  Object.defineProperty(error, UNTOUCHED, { value: true })
  return error
}

/** Whether applyDelta threw `err` before it touched the document (beforeTouching). */
export function documentUntouched(err: unknown): boolean {
  return err instanceof Error && (err as Error & { [UNTOUCHED]?: true })[UNTOUCHED] === true
}
