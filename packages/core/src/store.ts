import type { CorruptRecord } from './errors.js'

/**
 * A Store keeps entities durable: per-entity head records, snapshots, deltas since the
 * snapshot, a per-collection change feed, digest leaves, and meta. Implementations:
 * @convergent/level (classic-level on disk, memory-level in memory). Every Store runs the shared
 * compliance suite in @convergent/core/testing (storeComplianceSuite).
 *
 * The store knows nothing of CRDTs: core decides what to write; the store writes it atomically.
 */

/** What core needs to know about an entity without loading its document. */
export interface EntityHead {
  /** Backend name ('yjs' | 'automerge'). */
  backend: string
  /** The backend's versionHash of the stored state (32 bytes). */
  versionHash: Uint8Array
  /**
   * How many deltas after the snapshot belong to the entity: those keyed 0 … deltaCount-1.
   * Deltas stored at higher indexes are left over from before a fold (core does not delete
   * them; later writes overwrite them) and must never be read.
   */
  deltaCount: number
  /** True if the entity's value is deleted (its document still exists). */
  deleted: boolean
  /**
   * True when a snapshot is stored for the entity (its deltas build on it): a store that then
   * finds none reports the entity damaged rather than loading it without. Absent in heads
   * written before stores recorded it.
   */
  hasSnapshot?: boolean
}

/** One entry of a collection's change feed: an applied change, local or remote. */
export interface FeedEntry {
  /** Per-collection sequence number, 1, 2, 3 … in commit order (a failed write leaves a gap). */
  seq: number
  id: string
  /** 'local' for writes made on this replica; otherwise the peer id that sent it. */
  origin: string
  /** Clock time (ms) when it was applied. */
  time: number
  /** What happened to the value. */
  kind: 'put' | 'delete' | 'remote'
  /**
   * What proves a remote change's authors: for a signed push, the id of its proof (the author's
   * signed payload and signature, meta record `proof/<id>`; see trust/signed-push.ts), `origin`
   * then the author; for a change anti-entropy brought that its authors' signed heads cover,
   * `h:<actor>[,<actor>…]` (trust/signed-heads.ts, headProofId), `origin` then the author if
   * one, else the relaying peer. Absent for local writes and for remote changes only the
   * sending peer vouched for.
   */
  proof?: string
}

export interface CollectionMeta {
  backend: string
}

/**
 * One write. All ops given to one write() call are applied atomically, in order. The store
 * keeps its own copy of the bytes it is given, and returns bytes the caller may keep.
 */
export type StoreOp =
  | { type: 'head'; collection: string; id: string; head: EntityHead }
  /**
   * Sets the snapshot; deltas are not touched. Core folds by writing a snapshot and a head
   * with deltaCount 0 (see EntityHead.deltaCount); delDelta is for tools that reclaim space.
   */
  | { type: 'snapshot'; collection: string; id: string; bytes: Uint8Array }
  | { type: 'delta'; collection: string; id: string; index: number; bytes: Uint8Array }
  | { type: 'delDelta'; collection: string; id: string; index: number }
  | { type: 'feed'; collection: string; entry: FeedEntry }
  /** A digest leaf (see digest.ts); an all-zero leaf may be deleted instead of stored. */
  | { type: 'leaf'; collection: string; leaf: number; bytes: Uint8Array }
  | { type: 'collection'; collection: string; meta: CollectionMeta }
  /**
   * Forgets an entity: its head and snapshot go (its deltas become unreachable, as after a
   * fold: later writes overwrite their slots). Core uses it to drop a corrupt entity before
   * fetching it again from peers; core rewrites the entity's digest leaf itself.
   */
  | { type: 'delEntity'; collection: string; id: string }
  | { type: 'meta'; key: string; bytes: Uint8Array }
  /** Deletes a meta record (nothing if there is none). */
  | { type: 'delMeta'; key: string }

export interface StoredEntity {
  head: EntityHead
  snapshot: Uint8Array | undefined
  /** Deltas 0 … head.deltaCount-1, in order. */
  deltas: Uint8Array[]
}

/**
 * Integrity: every record a Store returns is what was written under that key. A record that
 * fails its check (a checksum over key and value, where the medium can be damaged) is never
 * returned as data: every read path — point reads and scans alike — rejects with
 * StoreCorruptError (ERR_STORE_CORRUPT) naming the record; quarantine() then moves it aside.
 */
export interface Store {
  /** 'classic-level', 'memory-level', … (for logs and reports). */
  readonly kind: string

  /**
   * What open() found damaged and could not keep, in words (e.g. LevelDB dropping part of its
   * write-ahead log while recovering: acknowledged writes may be lost). Empty when all was well.
   */
  readonly damage?: readonly string[]

  /**
   * Opened to look, not to change (tools: the CLI's reads): write() rejects, and repairs that
   * can wait for the service's next open are left to it. Default false.
   */
  readonly readOnly?: boolean

  /** Optional counters: committed group-commit batches and the StoreOps they carried. */
  readonly stats?: { readonly batches: number; readonly ops: number }

  open(): Promise<void>
  /** Flushes pending writes, then closes. Further calls reject with ERR_CLOSED. */
  close(): Promise<void>

  /**
   * Queues ops for the current group commit. All write() calls made in the same tick share
   * one atomic batch; the promise resolves only after that batch is durably written.
   * Batches are written one after another, in call order. A failed batch rejects every
   * write() in it with ERR_STORE and nothing of it is applied — and so does every write()
   * called while it was being written: core builds each write on the ones before it (the
   * next delta slot, a fold), so none may land after one it builds on failed.
   */
  write(ops: StoreOp[]): Promise<void>

  /**
   * The entity's head, snapshot and deltas; undefined if it was never stored. Rejects with
   * StoreCorruptError (ERR_STORE_CORRUPT) if a record fails its check, or if one the head
   * names is missing: a delta below head.deltaCount, the snapshot when head.hasSnapshot.
   */
  readEntity(collection: string, id: string): Promise<StoredEntity | undefined>
  getHead(collection: string, id: string): Promise<EntityHead | undefined>

  /** Heads of a collection whose ids fall in digest leaves [fromLeaf, toLeaf] (inclusive). */
  heads(collection: string, range?: { fromLeaf: number; toLeaf: number }): AsyncIterable<[string, EntityHead]>

  /** All non-zero digest leaves of a collection. */
  leaves(collection: string): AsyncIterable<[number, Uint8Array]>

  /**
   * Feed entries with seq > since, ascending. Each seq is written once (core numbers them and
   * never reuses one): a store may keep the entries of one write together in one record, so a
   * seq written again by a later write is not supported.
   */
  feed(collection: string, since: number): AsyncIterable<FeedEntry>
  /**
   * The highest feed seq of a collection (0 if none) — never lower than a seq quarantine() moved
   * aside, so core does not hand a seq out twice after the last feed record was found damaged.
   */
  lastSeq(collection: string): Promise<number>

  collections(): Promise<Map<string, CollectionMeta>>

  /**
   * The collections that hold entity heads, but those in `skip`, each with the backend its first
   * head that passes its check names — whether or not the collection's meta record is there.
   * Core calls it at open with the collections() it read, so a collection whose meta record a
   * damaged disk lost (moved aside by quarantine(), or gone) comes back (Entities.init). A head
   * that fails its check counts for nothing: one moved under a key naming another collection does
   * not make that collection up. Optional: without it such a collection stays lost until written to.
   */
  headCollections?(skip: ReadonlySet<string>): Promise<Map<string, CollectionMeta>>
  getMeta(key: string): Promise<Uint8Array | undefined>

  /**
   * Meta records whose key starts with `prefix`, in key order — with `after`, only those whose
   * key sorts after it (a scan resumed past a damaged record; a store may ignore it, callers skip
   * what they have seen). Optional: personal fields (subject keys, forget tombstones) need it; a
   * replica whose store lacks it refuses them.
   */
  metas?(prefix: string, after?: string): AsyncIterable<[string, Uint8Array]>

  /**
   * Rewrites the store's files so that deleted and overwritten values no longer sit in any of
   * them (LevelDB: flush the memtable, compact every level; the old .log and .ldb files go).
   * Resolves once done. Optional: a store with no files (memory) has nothing to do. Used after
   * forget() deletes subject keys (crypto-shredding).
   */
  compact?(): Promise<void>

  /**
   * Removes every record of a collection (entities, feed, leaves, its meta). Crash-safe: a
   * drop interrupted by a crash is finished by the next open(), never half-visible after it.
   */
  dropCollection(collection: string): Promise<void>

  /**
   * Moves a record that failed its check out of the way (kept aside for forensics, never read
   * again as data), so reads and scans no longer meet it.
   */
  quarantine(record: CorruptRecord): Promise<void>
}
