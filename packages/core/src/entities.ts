import type { EntitySizes } from './entity-size.js'
import { proofKey } from './trust/signed-push.js'
import { unsignedKey } from './trust/signed-heads.js'
import { PushProofs } from './trust/push-proofs.js'
import type { Backend } from './backend.js'
import type { Clock } from './clock.js'
import { randomBytes } from './clock.js'
import { DEPTH, DigestTree, leafOf } from './digest.js'
import { EntityCache, isDead, type LoadedEntity } from './entity-cache.js'
import { monotonicNow, nextTurn } from './clock.js'
import { ConvergentError, StoreCorruptError, wrapError } from './errors.js'
import { codeOf, type Logger } from './logger.js'
import { bytesEqual, sha256, xorInto } from './hash.js'
import { emptyVersionOf } from './empty-version.js'
import type { CollectionMeta, EntityHead, FeedEntry, Store, StoredEntity, StoreOp } from './store.js'

/** Stands in for a version hash until the flush computes it (see LoadedEntity.versionStale). */
const NO_VERSION = new Uint8Array(32)

/** What core keeps in memory about one collection. */
export interface CollectionState {
  readonly name: string
  backend: Backend
  /**
   * True while the backend is only a default (collection() without a backend, nothing written
   * yet): the first delta from a peer may then set it, so a replica that opens a collection
   * before its first delta arrives does not reject the whole collection as a mismatch.
   */
  tentative: boolean
  /** False until the collection's meta record has been written. */
  persisted: boolean
  /** Set once dropCollection() removed it: a handle still held to it refuses every call. */
  dropped?: boolean
  /** The anti-entropy digest; loaded from the store on first use. */
  tree: DigestTree | undefined
  treeLoading: Promise<DigestTree> | undefined
  /**
   * True while the digest tree is known to cover every entity the store holds, so an entity
   * whose leaf is empty in it was never stored and need not be read (see load()). It does
   * from the first load on: only commits write heads, commits need the tree loaded, and the
   * tree is updated (at the flush) before the store write that adds an entity. A failed
   * write drops the tree, and its reload could miss a write still in flight; a damaged leaf
   * leaves the loaded tree short of what the store holds: from then on every load reads the store.
   */
  treeCoversStore: boolean
  /** The digest rebuild running (after a corrupt record), and whether another pass is wanted. */
  rebuilding?: Promise<void>
  rebuildAgain?: boolean
  /** Digest leaves the rebuilds corrected so far (see verifyDigest). */
  leavesCorrected?: number
  /** Last feed sequence number assigned. */
  seq: number
}

export interface EntitiesOptions {
  store: Store
  clock: Clock
  /** How many entity documents stay in memory. */
  cacheSize: number
  /**
   * Deltas kept after a snapshot before they are folded into a new one — at least this many,
   * and (up to 16× as many) until they hold as many bytes as the snapshot: see commit().
   */
  compactAfter: number
  /** Where corrupt records are reported. */
  logger: Logger
  /** Told each entity's stored size as it is loaded or written (how large entities grow against maxDeltaBytes). */
  sizes?: EntitySizes
  /**
   * Told when a corrupt record made an entity (or a collection's digest) unreadable here and it
   * was dropped: replication asks peers for it again.
   */
  onCorrupt?: (collection: string, id: string | undefined) => void
  /**
   * The actor a document of `backend` is loaded with, from 16 random bytes drawn for this load
   * (default: those bytes). A cluster gives backends with a history its actor bound to its peer
   * id, one per process (replica.ts says why that is safe; actor-binding.ts).
   */
  actorFor?: (backend: Backend, nonce: Uint8Array) => Uint8Array
  /**
   * Told when changes made here under the current actor may be gone from this replica while a
   * peer holds them — a failed write (its changes may have been sent before it failed: see
   * durable.ts), a damaged entity dropped, a dropped collection: the loads after it must take a
   * new actor, or the next write of such an entity would reissue an (actor, seq) a peer holds
   * with other content, which Automerge refuses for good ("duplicate seq").
   */
  newActor?: () => void
}

/** What happened to the value, as the change feed records it. */
export type CommitKind = FeedEntry['kind']

/** One change to commit: the entity, its new document and the delta between them. */
export interface Commit {
  col: CollectionState
  entity: LoadedEntity
  /** The document after the change (Automerge returns a new one; Yjs changes in place). */
  doc: unknown
  delta: Uint8Array
  kind: CommitKind
  /** 'local', or the peer it came from (a signed push's author). */
  origin: string
  /** Whether the entity is deleted after it. */
  deleted: boolean
  /** The signed push it came in: its proof is stored (once per tick) and named by the feed entry. */
  proof?: { id: string; record: Uint8Array }
  /** Signed heads that came with it (trust/signed-heads.ts), stored in the same batch: meta records, by key (a record undefined: that key deleted). */
  heads?: readonly { key: string; record: Uint8Array | undefined }[]
  /** A proof the feed entry names without a record of its own here (a head: headProofId). */
  proofId?: string
  /** Store the document whole (a snapshot replacing the stored deltas) instead of the delta. */
  fold?: boolean
}

/** An entity committed in the current tick. */
interface Dirty {
  col: CollectionState
  /** Where in `ops` this tick put the entity's deltas since its last fold. */
  at: number[]
}

/** The commits of one tick, written together as ONE store write (see commit()). */
interface Tick {
  /** In commit order; undefined where a delta's put was dropped (see commit()). */
  ops: (StoreOp | undefined)[]
  /** Entities committed in this tick: their head and digest leaf are written once, at the end. */
  dirty: Map<LoadedEntity, Dirty>
  /** Whether some ops were dropped. */
  holes: boolean
  /** Keys of the push proofs this tick writes (see PushProofs.claimWrite). */
  proofs?: Set<string>
  /** Settles with the store write. */
  done: Promise<void>
  /** The same, never rejecting: true once written, false if not (LoadedEntity.lastWrite). */
  settled: Promise<boolean>
  resolve: () => void
  reject: (err: unknown) => void
}

/**
 * Loads and commits entities: the write path (change → one batch of store ops → durable),
 * the LRU of documents, the per-collection digest trees and feed sequence numbers.
 * Everything between acquire() and commit() is synchronous, so a read-modify-write of one
 * entity is atomic without locks.
 */
export class Entities {
  readonly collections = new Map<string, CollectionState>()
  private readonly cache: EntityCache
  private readonly loading = new Map<string, { waiters: number; promise: Promise<LoadedEntity> }>()
  /** Evicted entities whose documents are disposed of on the next timer turn (see evicted()). */
  private graveyard: LoadedEntity[] = []
  /** Commits waiting for the end of the current run of microtasks (see commit()). */
  private tick: Tick | undefined
  /** What this replica knows of signed pushes and their proofs (replays, copies in flight, proofs written). */
  readonly proofs: PushProofs

  /**
   * Stores the proof of a push that passed its check but committed nothing (every delta in it
   * was held already: the author's own push, or changes anti-entropy brought first), so that
   * its replays stay duplicates beyond what PushProofs remembers. In the next tick.
   */
  storeProof(collection: string, proof: { id: string; record: Uint8Array }): Promise<void> {
    const key = proofKey(collection, proof.id)
    if (!this.proofs.claimWrite(key)) return Promise.resolve()
    const tick = this.tick ?? this.openTick()
    ;(tick.proofs ??= new Set()).add(key)
    tick.ops.push({ type: 'meta', key, bytes: proof.record })
    return tick.done
  }
  /** Ticks handed to the store whose write has not settled yet. */
  private readonly writing = new Set<Tick>()
  /** Keys of entities dropped after a failed write, until they are loaded again (see load()). */
  private readonly dropped = new Set<string>()
  /**
   * The roots summary (see rootsSummary()): XOR of each collection's contribution, those
   * contributions, and the collections whose root may have changed since they were counted.
   */
  private readonly summary = new Uint8Array(32)
  private readonly contributions = new Map<string, Uint8Array | null>()
  private readonly rootsChanged = new Set<CollectionState>()
  /**
   * Entities per collection with a commit not yet durable: their head in memory is ahead of
   * the store's, so a scan of heads must look here too (see liveIds) — else keys() would not
   * show an entity get() already shows.
   */
  private readonly unsettled = new Map<string, Map<string, LoadedEntity>>()
  /** Collection names in order, for paging roots; rebuilt after collections come or go. */
  private sortedNames: string[] | undefined

  constructor(private readonly opts: EntitiesOptions) {
    this.cache = new EntityCache(opts.cacheSize, (entity) => this.evicted(entity))
    this.proofs = new PushProofs(opts.store)
  }

  /**
   * An entity left the cache unpinned. Its document is disposed of (Backend.dispose: Automerge
   * frees its WASM memory) — but not at once: a writer releases its pin when the write is
   * durable and then still reads `entity.doc` to emit the change (Collection.write,
   * applyRemoteDelta), in the same run of microtasks. A timer fires only after those have
   * all run, and nothing reaches an evicted entity anew (acquire() loads a new document).
   */
  private evicted(entity: LoadedEntity): void {
    if (entity.backend.dispose === undefined) return
    if (this.graveyard.length === 0) this.opts.clock.setTimeout(() => this.bury(), 0)
    this.graveyard.push(entity)
  }

  private bury(): void {
    const dead = this.graveyard
    this.graveyard = []
    for (const entity of dead) {
      try {
        entity.backend.dispose!(entity.doc)
      } catch {
        // Nothing to recover: the document is gone either way.
      }
    }
  }

  /** How large entities grow (undefined where no one asked: Entities made without it). */
  get sizes(): EntitySizes | undefined {
    return this.opts.sizes
  }

  get cachedCount(): number {
    return this.cache.size
  }

  /** Acquires served from memory, and those that had to load (or create) the document. */
  cacheHits = 0
  cacheMisses = 0

  /** Entities the cache evicted to stay within its budget. */
  get cacheEvictions(): number {
    return this.cache.evictions
  }

  /** Cached entities per collection (walks the cache). */
  cachedByCollection(): Map<string, number> {
    return this.cache.countByCollection()
  }

  /** Entities whose latest commit is not durable yet. */
  get pendingEntities(): number {
    let n = 0
    for (const ids of this.unsettled.values()) n += ids.size
    return n
  }

  /**
   * Told of every tick's store write once it settles: how long Store.write took (ms, from the
   * clock's monotonic time; it includes waiting for the store's group commit), how many ops,
   * whether it succeeded. Unset → nothing is measured.
   */
  onStoreBatch: ((ms: number, ops: number, ok: boolean) => void) | undefined = undefined

  /**
   * Reads collection metas and feed positions from the store (at open). A meta record that fails
   * its check is moved aside (its key names no collection for sure: a record moved under another
   * key fails too), and every collection that still holds entity heads without a meta record is
   * brought back with the backend its heads name, its meta written again (lostCollections).
   */
  async init(backends: Map<string, Backend>): Promise<void> {
    const metas = await this.pastCorruption(
      () => this.opts.store.collections(),
      (err) =>
        this.opts.logger.error(
          `${err.message} (a collection's meta record, under the name ${JSON.stringify(err.record.key)}: moved aside; a collection that still holds entities is brought back from their heads)`,
          { code: err.code },
        ),
    )
    const lost = await this.lostCollections(new Set(metas.keys()))
    for (const [name, meta] of [...metas, ...lost]) {
      const backend = backends.get(meta.backend)
      if (backend === undefined) {
        throw new ConvergentError(
          'ERR_UNKNOWN_BACKEND',
          `Collection '${name}' is stored with backend '${meta.backend}', which this replica was not given. Pass it in the backends option.`,
        )
      }
    }
    // Its meta is written again now (a write that fails leaves it to the collection's next commit).
    let rewritten = false
    if (lost.size > 0 && this.opts.store.readOnly !== true) {
      try {
        await this.opts.store.write([...lost].map(([collection, meta]): StoreOp => ({ type: 'collection', collection, meta })))
        rewritten = true
      } catch (err) {
        this.opts.logger.error(`could not write the meta records of the collections brought back: ${err instanceof Error ? err.message : String(err)}`)
      }
    }
    for (const [name, meta] of [...metas, ...lost]) {
      const persisted = !lost.has(name) || rewritten
      if (lost.has(name)) {
        this.opts.logger.error(
          `collection '${name}' had no sound meta record (damaged or lost on disk): brought back from its stored entities' heads, with the backend they name ('${meta.backend}')${persisted ? '' : ' (in memory: its meta record is written with its next change)'}`,
          { code: 'ERR_STORE_CORRUPT', collection: name },
        )
      }
      const seq = await this.lastSeqOf(name)
      const backend = backends.get(meta.backend)!
      this.collections.set(name, { name, backend, tentative: false, persisted, tree: undefined, treeLoading: undefined, treeCoversStore: true, seq })
    }
  }

  /**
   * Collections holding entity heads but no meta record (Store.headCollections): a damaged disk
   * lost it. Without them, such a collection would be missing until written to again, then made
   * anew over its own stored data — its feed numbered from 1 again, over the entries it holds.
   * A failure to look is logged, not fatal.
   */
  private async lostCollections(known: ReadonlySet<string>): Promise<Map<string, CollectionMeta>> {
    const store = this.opts.store
    if (store.headCollections === undefined) return new Map()
    try {
      return await store.headCollections(known)
    } catch (err) {
      this.opts.logger.error(`could not look for collections whose meta record is lost: ${err instanceof Error ? err.message : String(err)}`, {
        ...(err instanceof ConvergentError ? { code: err.code } : {}),
      })
      return new Map()
    }
  }

  /**
   * The collection's last feed seq. A damaged last feed record does not stop the replica from
   * opening: it is moved aside (the store keeps its seq as a floor, so none is handed out twice)
   * and the change feed loses that entry, as a reader of it would.
   */
  private lastSeqOf(name: string): Promise<number> {
    return this.pastCorruption(
      () => this.opts.store.lastSeq(name),
      (err) => this.opts.logger.error(`${err.message} (the last change-feed record: moved aside)`, { code: err.code, collection: name }),
    )
  }

  /**
   * Runs a read; when it meets a corrupt record, counts and reports it (`report`), moves it
   * aside (Store.quarantine) and runs the read again.
   */
  private async pastCorruption<T>(read: () => Promise<T>, report: (err: StoreCorruptError) => void): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await read()
      } catch (err) {
        if (!(err instanceof StoreCorruptError) || attempt >= 1000) throw err
        this.corruptRecords++
        report(err)
        await this.opts.store.quarantine(err.record)
      }
    }
  }

  /** The collection's state, created (in memory; persisted with its first write) if new. */
  ensure(name: string, backend: Backend, tentative = false): CollectionState {
    let col = this.collections.get(name)
    if (col === undefined) {
      col = { name, backend, tentative, persisted: false, tree: undefined, treeLoading: undefined, treeCoversStore: true, seq: 0 }
      this.collections.set(name, col)
      this.sortedNames = undefined
    } else if (col.tentative && !tentative) {
      // A definite backend (an explicit one, or the one of a peer's delta) replaces a default.
      if (!col.persisted && col.backend !== backend) {
        col.backend = backend
        this.cache.deleteCollection(name) // empty documents of the default backend
      }
      col.tentative = false
    }
    return col
  }

  /**
   * Undoes `ensure` for a collection a peer's delta made and nothing was written to (see
   * replication/provisional.ts): it leaves memory. Nothing if anything was committed to it since.
   */
  forgetUnwritten(col: CollectionState): boolean {
    if (!this.unwritten(col)) return false
    this.collections.delete(col.name)
    this.sortedNames = undefined
    this.cache.deleteCollection(col.name)
    return true
  }

  /** Undoes `ensure`'s switch of a default backend for a peer's delta (see forgetUnwritten). */
  restoreDefault(col: CollectionState, backend: Backend): void {
    if (!this.unwritten(col)) return
    col.backend = backend
    col.tentative = true
    this.cache.deleteCollection(col.name) // empty documents of the delta's backend
  }

  /** Still this replica's state of its collection, and nothing committed to it. */
  private unwritten(col: CollectionState): boolean {
    return this.collections.get(col.name) === col && !col.persisted && col.seq === 0
  }

  /** The collection's digest tree, loading its leaves from the store the first time. */
  tree(col: CollectionState): Promise<DigestTree> {
    if (col.tree !== undefined) return Promise.resolve(col.tree)
    if (col.treeLoading === undefined) {
      let loading: Promise<DigestTree> | undefined = undefined
      loading = (async () => {
        try {
          // After a failed write, writes still in flight must land before the leaves are read.
          await this.writesSettled()
          const tree = await this.loadLeaves(col)
          // A load that a failed write dropped meanwhile must not install an outdated tree.
          if (col.treeLoading === loading) {
            col.tree = tree
            col.treeLoading = undefined
          }
          return tree
        } catch (err) {
          // Not cached: the next use tries again (a failure once must not fail every round).
          if (col.treeLoading === loading) col.treeLoading = undefined
          throw err
        }
      })()
      col.treeLoading = loading
    }
    return col.treeLoading
  }

  /**
   * The collection's stored digest leaves. A corrupt one is moved aside, and the digest is
   * rebuilt from the heads once it is installed (not awaited here: the rebuild needs the tree).
   */
  private loadLeaves(col: CollectionState): Promise<DigestTree> {
    return this.pastCorruption(
      async () => {
        const tree = new DigestTree()
        for await (const [leaf, digest] of this.opts.store.leaves(col.name)) tree.loadLeaf(leaf, digest)
        return tree
      },
      (err) => {
        this.opts.logger.error(`${err.message} (a digest leaf: rebuilt from the heads)`, { code: err.code, collection: col.name })
        // Entities in the lost leaf are still stored: the tree no longer says where none are.
        col.treeCoversStore = false
        void Promise.resolve()
          .then(async () => {
            await this.tree(col)
            await this.rebuildTree(col)
          })
          .catch((e: unknown) =>
            this.opts.logger.error(`could not rebuild the digest of '${col.name}': ${(e as Error).message}`, { collection: col.name, ...codeOf(e) }),
          )
      },
    )
  }

  /**
   * The entity, loaded (or created empty) and pinned: it stays in memory until release().
   * Concurrent acquires of one entity share one load and one document.
   */
  async acquire(col: CollectionState, id: string): Promise<LoadedEntity> {
    // Commits update the tree, so it must be loaded first (not awaited when it is: one
    // microtask less on every write).
    if (col.tree === undefined) await this.tree(col)
    const key = EntityCache.key(col.name, id)
    const cached = this.cache.get(key)
    if (cached !== undefined) {
      this.cacheHits++
      this.cache.pin(cached)
      return cached
    }
    this.cacheMisses++
    let loading = this.loading.get(key)
    if (loading === undefined) {
      const leaf = leafOf(id)
      // An entity in a leaf the digest tree holds nothing in was never stored (see
      // treeCoversStore): no read. That is most entities a late joiner or a live receiver
      // gets, and a read that finds nothing cost more than applying their delta. Created
      // here, synchronously, so it is in the cache before anyone else can ask for it.
      if (col.tree !== undefined && col.treeCoversStore && !col.tree.hasLeaf(leaf)) return this.install(col, id, key, leaf, undefined, 1)
      const record = { waiters: 0, promise: undefined as unknown as Promise<LoadedEntity> }
      record.promise = this.load(col, id, key, leaf, record)
      loading = record
      this.loading.set(key, record)
    }
    loading.waiters++
    return loading.promise
  }

  private async load(col: CollectionState, id: string, key: string, leaf: number, record: { waiters: number }): Promise<LoadedEntity> {
    let stored
    try {
      // Dropped after a failed write: its earlier writes still in flight land first, or the
      // reload would miss them and the next commit reuse their delta slots.
      if (this.dropped.delete(key)) await this.writesSettled()
      try {
        stored = await this.opts.store.readEntity(col.name, id)
      } catch (err) {
        if (!(err instanceof StoreCorruptError)) throw err
        // Never served: dropped here, and fetched again from peers (it reads as absent).
        await this.dropCorrupt(col, err, id)
        stored = undefined
      }
    } catch (err) {
      this.loading.delete(key)
      throw wrapError('ERR_STORE', `Could not read entity '${id}' of '${col.name}'`, err)
    }
    try {
      return this.install(col, id, key, leaf, stored, record.waiters)
    } finally {
      this.loading.delete(key)
    }
  }

  /**
   * Makes the document (empty, or from what the store holds), pins it `pins` times and puts
   * it in the cache, in one synchronous step: from here on acquires find it in the cache, so
   * there is never a second copy of the document.
   */
  private install(col: CollectionState, id: string, key: string, leaf: number, stored: StoredEntity | undefined, pins: number): LoadedEntity {
    const nonce = randomBytes(this.opts.clock, 16)
    const actor = this.opts.actorFor?.(col.backend, nonce) ?? nonce
    let doc: unknown
    if (stored === undefined) {
      doc = col.backend.create(actor)
    } else {
      if (stored.head.backend !== col.backend.name) {
        throw new ConvergentError(
          'ERR_BACKEND_MISMATCH',
          `Entity '${id}' of '${col.name}' is stored with backend '${stored.head.backend}' but the collection uses '${col.backend.name}'.`,
        )
      }
      doc = col.backend.load(stored.snapshot, stored.deltas, actor)
    }
    const entity: LoadedEntity = {
      collection: col.name,
      id,
      leaf,
      backend: col.backend,
      doc,
      head: stored?.head,
      versionStale: false,
      treeHash: stored?.head.versionHash,
      snapshotBytes: stored?.snapshot?.byteLength ?? 0,
      deltaBytes: stored?.deltas.reduce((n, d) => n + d.byteLength, 0) ?? 0,
      pins,
      lastWrite: Promise.resolve(true),
      stale: false,
      discarded: false,
    }
    if (stored !== undefined) this.opts.sizes?.met(col.name, id, entity.snapshotBytes + entity.deltaBytes)
    this.cache.set(key, entity)
    // A head hashed by an older version of the backend's versionHash (its definition changed:
    // Yjs' now covers the value) would make the digest differ from peers' for good: re-hashed
    // and rewritten with the next flush.
    if (stored !== undefined && !bytesEqual(col.backend.versionHash(doc), stored.head.versionHash)) this.refreshHead(col, entity)
    return entity
  }

  /** Rewrites the entity's head and digest leaf with its document's version hash (next flush). */
  private refreshHead(col: CollectionState, entity: LoadedEntity): void {
    const tick = this.tick ?? this.openTick()
    if (!tick.dirty.has(entity)) tick.dirty.set(entity, { col, at: [] })
    entity.versionStale = true
    this.cache.pin(entity)
    entity.lastWrite = tick.settled
    void tick.settled.then(() => this.release(entity))
  }

  /** Resolves once every write committed so far has settled (those handed to the store, and the tick still open). */
  private async writesSettled(): Promise<void> {
    const settling = [...this.writing].map((t) => t.settled)
    if (this.tick !== undefined) settling.push(this.tick.settled)
    if (settling.length > 0) await Promise.all(settling)
  }

  /**
   * Takes the version hash a commit left for its flush now (see LoadedEntity.versionStale),
   * before anything else touches the document: the flush must hash the document as committed.
   */
  settleVersion(entity: LoadedEntity): void {
    if (entity.versionStale) this.versionHashOf(entity)
  }

  /** The version hash of the entity's document as it is now (see LoadedEntity.versionStale). */
  versionHashOf(entity: LoadedEntity): Uint8Array {
    if (entity.versionStale) {
      entity.head!.versionHash = entity.backend.versionHash(entity.doc)
      entity.versionStale = false
    }
    return entity.head?.versionHash ?? emptyVersionOf(entity.backend).versionHash
  }

  /** True if the entity's document is in memory (a write in flight keeps it there). */
  isLoaded(col: CollectionState, id: string): boolean {
    return this.cache.get(EntityCache.key(col.name, id)) !== undefined
  }

  /**
   * Whether the entity's document in memory holds changes that wait for ones it lacks (a push
   * before them was lost, or overtaken). False if it is not in memory.
   */
  holdsWaiting(collection: string, id: string): boolean {
    const entity = this.cache.get(EntityCache.key(collection, id))
    return entity !== undefined && !isDead(entity) && entity.backend.hasPending(entity.doc)
  }

  /** What the store holds of an entity, read straight from disk (no document, no caching). */
  readStored(col: CollectionState, id: string): Promise<StoredEntity | undefined> {
    return this.opts.store.readEntity(col.name, id)
  }

  release(entity: LoadedEntity): void {
    this.cache.unpin(entity)
    if (entity.pins > 0) return
    if (isDead(entity))
      this.evicted(entity) // out of the cache already (see forgetEntity, discard)
    else this.cache.evict()
  }

  /**
   * The entity's document can no longer be trusted (a delta threw half-way through applying):
   * it leaves the cache now, and the next acquire reloads the entity from the store once the
   * writes already queued for it have landed. Those writes are valid and still land: their
   * version hash must have been taken before (see versionHashOf). All or nothing: a rejected
   * delta leaves no trace in the document, the cache, the version hash or the store.
   */
  discard(col: CollectionState, entity: LoadedEntity): void {
    if (isDead(entity)) return
    entity.discarded = true
    const key = EntityCache.key(col.name, entity.id)
    this.dropped.add(key)
    if (this.cache.get(key) !== entity) return
    this.cache.delete(key)
    if (entity.pins === 0) this.evicted(entity)
  }

  /**
   * Commits a changed document: queues its store ops (delta or compacted snapshot, feed entry,
   * and the collection record if new), updates memory at once so the next change of this
   * entity builds on it, and resolves with the feed entry once the write is durable.
   *
   * The commits of one run of microtasks are written by ONE store.write (flushTick, queued as
   * a microtask, so still before the store's group commit goes out) which also carries, once
   * per entity, its head and digest leaf. Why: an entity written 64 times in a tick needs its
   * head and leaf stored once, not 64 times, and the digest updated once — that work was a
   * third of a hot entity's write. Everything of a commit still lands in one atomic batch, in
   * commit order, and nothing is acknowledged before it is durable. Between a commit and the
   * flush the digest tree lags by that tick's changes (anti-entropy copes with a stale digest).
   */
  commit(change: Commit): Promise<FeedEntry> {
    const { col, entity, doc: newDoc, delta, kind, origin, deleted, proof, heads, proofId } = change
    if (isDead(entity)) {
      throw new ConvergentError('ERR_STORE', `An earlier write of '${entity.id}' in '${col.name}' failed, so this change was not made. Try again.`)
    }
    const backend = col.backend
    // The digest tree is only needed at the flush (which fails the tick if a failed write
    // dropped it meanwhile: see forgetTree).
    const oldHead = entity.head
    const tick = this.tick ?? this.openTick()
    const ops = tick.ops
    col.tentative = false
    if (!col.persisted) {
      ops.push({ type: 'collection', collection: col.name, meta: { backend: backend.name } })
      col.persisted = true
    }
    let deltaCount = oldHead?.deltaCount ?? 0
    let dirty = tick.dirty.get(entity)
    if (dirty === undefined) {
      dirty = { col, at: [] }
      tick.dirty.set(entity, dirty)
    }
    // Compact once the deltas hold as many bytes as the snapshot (never before compactAfter of
    // them, always at 16×): an Automerge snapshot holds the whole history, so saving one
    // every compactAfter writes made a hot entity's writes O(history); this way the saving
    // is amortised, and a load still reads at most about twice the snapshot's bytes.
    const compact =
      change.fold === true || (deltaCount >= this.opts.compactAfter && (entity.deltaBytes >= entity.snapshotBytes || deltaCount >= 16 * this.opts.compactAfter))
    if (compact) {
      this.fold(tick, dirty, entity, newDoc)
      deltaCount = 0
    } else {
      dirty.at.push(ops.length)
      ops.push({ type: 'delta', collection: col.name, id: entity.id, index: deltaCount, bytes: delta })
      entity.deltaBytes += delta.byteLength
      deltaCount++
    }
    this.opts.sizes?.met(col.name, entity.id, entity.snapshotBytes + entity.deltaBytes)
    const entry: FeedEntry = {
      seq: ++col.seq,
      id: entity.id,
      origin,
      time: this.opts.clock.now(),
      kind,
      ...(proof !== undefined ? { proof: proof.id } : proofId !== undefined ? { proof: proofId } : {}),
    }
    ops.push({ type: 'feed', collection: col.name, entry })
    if (proof !== undefined) {
      // Once per push, however many ticks its deltas commit in: a tick behind the one that
      // carries it fails with it (Store.write), so skipping it in later ticks loses nothing.
      const key = proofKey(col.name, proof.id)
      if (this.proofs.claimWrite(key)) {
        ;(tick.proofs ??= new Set()).add(key)
        ops.push({ type: 'meta', key, bytes: proof.record })
      }
    }
    if (heads !== undefined)
      for (const { key, record } of heads) ops.push(record === undefined ? { type: 'delMeta', key } : { type: 'meta', key, bytes: record })
    // A local change of a bound actor: marked until its heads are stored (signed-heads.ts).
    if (origin === 'local' && this.opts.actorFor !== undefined && backend.history !== undefined) {
      ops.push({ type: 'meta', key: unsignedKey(col.name, entry.seq), bytes: new TextEncoder().encode(entity.id) })
    }

    entity.doc = newDoc
    // Hashed at the flush: once per entity per tick, however often it was written in it.
    entity.head = { backend: backend.name, versionHash: oldHead?.versionHash ?? NO_VERSION, deltaCount, deleted, hasSnapshot: entity.snapshotBytes > 0 }
    entity.versionStale = true
    this.cache.pin(entity)
    entity.lastWrite = tick.settled
    if (heads !== undefined && heads.length > 0) entity.headsWrite = tick.settled
    this.markUnsettled(col, entity, tick)
    return tick.done.then(
      () => {
        this.release(entity)
        return entry
      },
      (err: unknown) => {
        this.release(entity)
        throw wrapError('ERR_STORE', `Could not write entity '${entity.id}' of '${col.name}'`, err)
      },
    )
  }

  /** The entity's head is ahead of the store until this tick (its latest) settles. */
  private markUnsettled(col: CollectionState, entity: LoadedEntity, tick: Tick): void {
    let ids = this.unsettled.get(col.name)
    if (ids === undefined) this.unsettled.set(col.name, (ids = new Map<string, LoadedEntity>()))
    ids.set(entity.id, entity)
    void tick.settled.then(() => {
      if (entity.lastWrite !== tick.settled || ids.get(entity.id) !== entity) return
      ids.delete(entity.id)
      if (ids.size === 0 && this.unsettled.get(col.name) === ids) this.unsettled.delete(col.name)
    })
  }

  /**
   * Ids of the live (not deleted) entities of a collection as this replica shows them: the
   * stored heads, overlaid with the heads of entities whose latest commit is not durable yet
   * (the state get() shows), so keys(), entries() and get() agree. Storage order; entities
   * new since the last durable write come last.
   */
  async *liveIds(col: CollectionState): AsyncGenerator<string> {
    const pending = new Map(this.unsettled.get(col.name))
    for await (const [id, head] of this.heads(col)) {
      const inMemory = pending.get(id)
      if (inMemory !== undefined) pending.delete(id)
      const deleted = inMemory !== undefined && !isDead(inMemory) ? inMemory.head!.deleted : head.deleted
      if (!deleted) yield id
    }
    for (const [id, entity] of pending) if (!isDead(entity) && entity.head !== undefined && !entity.head.deleted) yield id
  }

  /**
   * Folds the entity into a fresh snapshot of `doc`, in this tick. The deltas it covers are
   * not deleted: the head says how many deltas are live (deltaCount, now 0), readers never
   * look past it, and the next writes put their deltas in the same slots (index 0, 1, …),
   * overwriting them. That saves a delete per folded delta — on a hot entity about one store op
   * per write. What stays on disk is at most the deltas of the last fold (about a snapshot's
   * bytes), and only for entities that were hot once. Deltas put in this same tick are
   * dropped instead: they would never be read.
   */
  private fold(tick: Tick, dirty: Dirty, entity: LoadedEntity, doc: unknown): void {
    const snapshot = dirty.col.backend.save(doc)
    tick.ops.push({ type: 'snapshot', collection: dirty.col.name, id: entity.id, bytes: snapshot })
    entity.snapshotBytes = snapshot.byteLength
    entity.deltaBytes = 0
    for (const at of dirty.at) tick.ops[at] = undefined
    if (dirty.at.length > 0) tick.holes = true
    dirty.at = []
  }

  /**
   * Writes a loaded entity's document as a fresh snapshot (a head with no deltas), in the
   * current tick, with no feed entry (its value does not change): repairs an entity whose
   * stored records were damaged while a sound copy of it is in memory. Resolves true once
   * durable, false if the write failed.
   */
  private rewrite(col: CollectionState, entity: LoadedEntity): Promise<boolean> {
    const tick = this.tick ?? this.openTick()
    let dirty = tick.dirty.get(entity)
    if (dirty === undefined) {
      dirty = { col, at: [] }
      tick.dirty.set(entity, dirty)
    }
    this.settleVersion(entity)
    this.fold(tick, dirty, entity, entity.doc)
    entity.head = { ...entity.head!, deltaCount: 0, hasSnapshot: true }
    this.cache.pin(entity)
    entity.lastWrite = tick.settled
    return tick.settled.finally(() => this.release(entity))
  }

  /**
   * Ops written in the same atomic store write as this tick's commits (a subject key made by
   * the write that seals with it: one batch, one fsync, and never the value without its key).
   * Resolves once that write is durable.
   */
  addToTick(ops: readonly StoreOp[]): Promise<void> {
    const tick = this.tick ?? this.openTick()
    for (const op of ops) tick.ops.push(op)
    return tick.done
  }

  private openTick(): Tick {
    let resolve!: () => void
    let reject!: (err: unknown) => void
    const done = new Promise<void>((res, rej) => {
      resolve = res
      reject = rej
    })
    const settled = done.then(
      () => true,
      () => false,
    )
    const tick: Tick = { ops: [], dirty: new Map(), holes: false, done, settled, resolve, reject }
    this.tick = tick
    queueMicrotask(() => this.flushTick(tick))
    return tick
  }

  /**
   * Adds each committed entity's head and digest leaf to the tick's ops and hands them to the
   * store at once (the store's group commit gathers ticks into batches).
   *
   * A tick builds on the memory state of the ticks before it (the next delta slot, a fold over
   * their deltas, digest leaves that include their changes), so once one fails, none built on
   * it may land: the store fails the writes queued behind a failed one (Store.write), and
   * failed() drops the failed tick's entities and digest trees synchronously, before anything
   * else runs — a tick flushed later that holds one of them is refused (finishOps).
   */
  private flushTick(tick: Tick): void {
    this.tick = undefined
    let ops: StoreOp[]
    try {
      ops = this.finishOps(tick)
    } catch (err) {
      this.failed(tick, err)
      return
    }
    this.writing.add(tick)
    const observe = this.onStoreBatch
    const t0 = observe === undefined ? 0 : monotonicNow(this.opts.clock)
    let written: Promise<void>
    try {
      written = this.opts.store.write(ops)
    } catch (err) {
      written = Promise.reject(err instanceof Error ? err : new Error(String(err)))
    }
    written.then(
      () => {
        this.writing.delete(tick)
        observe?.(monotonicNow(this.opts.clock) - t0, ops.length, true)
        tick.resolve()
      },
      (err: unknown) => {
        this.writing.delete(tick)
        observe?.(monotonicNow(this.opts.clock) - t0, ops.length, false)
        this.failed(tick, err)
      },
    )
  }

  /**
   * A tick was not written: memory is ahead of disk. Its entities and their collections'
   * digest trees are dropped now, so nothing builds on them any more (their writers see the
   * error next), and reload from what the store holds.
   */
  private failed(tick: Tick, err: unknown): void {
    // Its entities reload from the store, a change short of what may have left (newActor).
    if (tick.dirty.size > 0) this.opts.newActor?.()
    if (tick.proofs !== undefined) this.proofs.unclaim(tick.proofs)
    const cols = new Set<CollectionState>()
    for (const [entity, { col }] of tick.dirty) {
      this.forgetEntity(col, entity)
      cols.add(col)
    }
    for (const col of cols) this.forgetTree(col)
    tick.reject(err)
  }

  /** The tick's ops plus, once per committed entity, its head and digest leaf. */
  private finishOps(tick: Tick): StoreOp[] {
    for (const [entity, { col }] of tick.dirty) {
      // Dropped by a write that failed meanwhile: built on what the store lacks, and the
      // leaves cannot be computed.
      if (entity.stale || col.tree === undefined) {
        throw new ConvergentError('ERR_STORE', `An earlier write of '${col.name}' failed; this one was not attempted. Try again.`)
      }
    }
    const ops = (tick.holes ? tick.ops.filter((op) => op !== undefined) : tick.ops) as StoreOp[]
    for (const [entity, { col }] of tick.dirty) {
      const head = entity.head!
      head.versionHash = this.versionHashOf(entity)
      const leafDigest = col.tree!.update(entity.id, entity.leaf, entity.treeHash, head.versionHash)
      this.rootsChanged.add(col)
      entity.treeHash = head.versionHash
      ops.push({ type: 'head', collection: col.name, id: entity.id, head })
      ops.push({ type: 'leaf', collection: col.name, leaf: entity.leaf, bytes: leafDigest })
    }
    return ops
  }

  /** After a failed write its document is ahead of disk: it is dropped (see LoadedEntity.stale). */
  private forgetEntity(col: CollectionState, entity: LoadedEntity): void {
    if (entity.stale) return
    entity.stale = true
    const key = EntityCache.key(col.name, entity.id)
    this.dropped.add(key)
    // Only this very entity: another one may have been loaded under its key since.
    if (this.cache.get(key) !== entity) return
    this.cache.delete(key)
    // Still pinned by writes that will fail too: disposed of when the last releases it.
    if (entity.pins === 0) this.evicted(entity)
  }

  /** After a failed write the collection's digest is ahead of disk: reloaded on next use. */
  private forgetTree(col: CollectionState): void {
    this.rootsChanged.add(col)
    col.tree = undefined
    col.treeLoading = undefined
    col.treeCoversStore = false
    // The collection's record may have been in the failed batch: the next write puts it again.
    col.persisted = false
    void this.opts.store.lastSeq(col.name).then(
      (seq) => {
        col.seq = Math.max(col.seq, seq)
      },
      () => undefined,
    )
  }

  /** Stored heads of a collection, optionally only those in a range of digest leaves. */
  heads(col: CollectionState, range?: { fromLeaf: number; toLeaf: number }): AsyncIterable<[string, EntityHead]> {
    return this.survivingCorruption(col, (skip) => skipFirst(this.opts.store.heads(col.name, range), skip))
  }

  /** The collection's change feed after `since`; a corrupt entry is reported, moved aside and skipped. */
  feed(col: CollectionState, since: number): AsyncIterable<FeedEntry> {
    let last = since
    return this.survivingCorruption(col, () => {
      const from = last
      return (async function* (feed: AsyncIterable<FeedEntry>) {
        for await (const entry of feed) {
          last = entry.seq
          yield entry
        }
      })(this.opts.store.feed(col.name, from))
    })
  }

  /**
   * Runs a scan; when it meets a corrupt record, the record is dropped (dropCorrupt) and the
   * scan starts again where it stood (`open(yielded)` skips what was yielded already).
   */
  private async *survivingCorruption<T>(col: CollectionState, open: (yielded: number) => AsyncIterable<T>): AsyncGenerator<T> {
    let yielded = 0
    for (let attempt = 0; ; attempt++) {
      try {
        for await (const item of open(yielded)) {
          yielded++
          yield item
        }
        return
      } catch (err) {
        if (!(err instanceof StoreCorruptError) || attempt >= 1000) throw err
        await this.dropCorrupt(col, err, err.record.id)
      }
    }
  }

  /** Corrupt records met (and moved aside) since open. */
  corruptRecords = 0

  /**
   * A record that failed its checksum. It is moved aside (Store.quarantine); if it belongs to
   * an entity, the entity's head and snapshot go too, so the entity reads as absent here; the
   * collection's digest is rebuilt from the heads that remain (the entity's contribution is
   * not known for sure: its head may be the damaged record); and replication is told, so
   * peers send the entity again. What only this replica held of it is lost, and said so.
   */
  private async dropCorrupt(col: CollectionState, err: StoreCorruptError, id: string | undefined): Promise<void> {
    if (!(await this.setAsideCorrupt(col, err, id))) return
    await this.rebuildTree(col)
    this.opts.onCorrupt?.(col.name, id)
  }

  /**
   * dropCorrupt but for the digest: the record moved aside, its entity repaired from memory or
   * dropped. True when the collection's digest must be rebuilt (and replication told).
   */
  private async setAsideCorrupt(col: CollectionState, err: StoreCorruptError, id: string | undefined): Promise<boolean> {
    this.corruptRecords++
    this.opts.logger.error(err.message, {
      code: err.code,
      collection: col.name,
      ...(id === undefined ? {} : { entity: id }),
    })
    await this.opts.store.quarantine(err.record)
    if (err.record.keyspace === 'feed') return false // a change feed entry: the entity itself is fine
    if (id !== undefined) {
      // A sound copy in memory (loaded before the damage, or built since) is written back.
      const cached = this.cache.get(EntityCache.key(col.name, id))
      if (cached !== undefined && !isDead(cached) && cached.head !== undefined && (await this.rewrite(col, cached))) {
        this.opts.logger.error(`repaired '${id}' of '${col.name}' from its copy in memory`, { collection: col.name, entity: id })
        return false
      }
      // Its changes are gone here, not at the peers that hold them (newActor).
      this.opts.newActor?.()
      await this.opts.store.write([{ type: 'delEntity', collection: col.name, id }])
    }
    return true
  }

  /**
   * Checks a stored collection's digest leaves against its stored heads (one scan of the heads;
   * nothing written where they agree) and rebuilds the leaves that disagree: the number of
   * those. A head record lost on disk, or moved under another key, fails no checksum; its entity
   * would vanish here while the digest still counted it, so anti-entropy, which compares
   * digests, would never bring it back (review-damaged-disk HOLE 7).
   */
  async verifyDigest(col: CollectionState): Promise<number> {
    const before = col.leavesCorrected ?? 0
    await this.rebuildTree(col)
    return (col.leavesCorrected ?? 0) - before
  }

  /**
   * Recomputes a collection's digest leaves from its stored heads (after a corrupt record),
   * without stopping writes: the scan reads one snapshot of the store, taken at a moment no
   * write is in flight (so the tree then matched it); the changes commits make to the tree
   * while the scan runs are carried over onto the rebuilt leaves.
   */
  private rebuildTree(col: CollectionState): Promise<void> {
    // One at a time per collection: two interleaved rebuilds would each carry over the
    // other's corrections as if commits had made them. A request during a rebuild gets one
    // more pass (its damage may postdate the running scan's snapshot).
    col.rebuildAgain = true
    col.rebuilding ??= (async () => {
      try {
        while (col.rebuildAgain) {
          col.rebuildAgain = false
          await this.rebuildTreeOnce(col)
        }
      } finally {
        col.rebuilding = undefined
      }
    })()
    return col.rebuilding
  }

  private async rebuildTreeOnce(col: CollectionState): Promise<void> {
    const damaged: (string | undefined)[] = []
    for (let attempt = 0; attempt < 1000; attempt++) {
      await this.writesSettled()
      const tree = await this.tree(col)
      if (this.tick !== undefined || this.writing.size > 0 || col.tree !== tree) {
        await nextTurn(this.opts.clock)
        continue
      }
      const before = tree.leafDigests()
      const scan = this.opts.store.heads(col.name)[Symbol.asyncIterator]()
      let next = scan.next() // the scan's snapshot is taken here, with nothing in flight
      const fresh = new DigestTree()
      try {
        for (let r = await next; !r.done; r = await next) {
          fresh.update(r.value[0], leafOf(r.value[0]), undefined, r.value[1].versionHash)
          next = scan.next()
        }
      } catch (err) {
        if (!(err instanceof StoreCorruptError)) throw err
        // Set aside as anywhere else (counted, logged, its entity dropped), then again without it;
        // replication is told once the digest is rebuilt.
        if (await this.setAsideCorrupt(col, err, err.record.id)) damaged.push(err.record.id)
        continue
      }
      if (col.tree !== tree) continue // dropped by a failed write meanwhile
      const now = tree.leafDigests()
      const ops: StoreOp[] = []
      for (const leaf of new Set([...before.keys(), ...now.keys(), ...fresh.leafDigests().keys()])) {
        const digest = fresh.node(DEPTH, leaf)
        const b = before.get(leaf)
        const n = now.get(leaf)
        if (b !== undefined) xorInto(digest, b)
        if (n !== undefined) xorInto(digest, n)
        if (n !== undefined ? bytesEqual(digest, n) : isZero(digest)) continue
        tree.setLeaf(leaf, digest)
        ops.push({ type: 'leaf', collection: col.name, leaf, bytes: digest })
      }
      this.rootsChanged.add(col)
      col.leavesCorrected = (col.leavesCorrected ?? 0) + ops.length
      try {
        if (ops.length > 0) await this.opts.store.write(ops)
      } catch (err) {
        this.forgetTree(col)
        throw err
      }
      for (const id of damaged) this.opts.onCorrupt?.(col.name, id)
      return
    }
    this.opts.logger.error(`could not rebuild the digest of '${col.name}': writes never paused; anti-entropy may do extra work until the next restart`, {
      collection: col.name,
    })
  }

  /**
   * Removes a collection and everything stored of it, once the writes already handed to the
   * store have landed. Its state leaves memory at once (handles to it refuse further calls).
   */
  async drop(col: CollectionState): Promise<void> {
    // Its entities may be written anew here while peers keep the old ones (newActor).
    this.opts.newActor?.()
    col.dropped = true
    if (this.collections.get(col.name) === col) this.collections.delete(col.name)
    this.sortedNames = undefined
    this.cache.deleteCollection(col.name)
    this.opts.sizes?.forget(col.name)
    this.unsettled.delete(col.name)
    const contribution = this.contributions.get(col.name)
    if (contribution) xorInto(this.summary, contribution)
    this.contributions.delete(col.name)
    this.rootsChanged.delete(col)
    await this.writesSettled()
    await this.opts.store.dropCollection(col.name)
  }

  /**
   * A digest of every collection's (name, backend, root), independent of order: two replicas
   * whose summaries are equal hold the same collections with the same digests, so a round
   * between them is one small message however many collections there are. Collections whose
   * root is zero (nothing stored) are left out: they say nothing a peer could sync. Kept up
   * to date collection by collection as roots change.
   */
  async rootsSummary(): Promise<Uint8Array | undefined> {
    let complete = true
    for (const col of this.collections.values()) {
      if (this.contributions.has(col.name) && !this.rootsChanged.has(col)) continue
      let tree: DigestTree
      try {
        tree = await this.tree(col)
      } catch (err) {
        // Its digest cannot be read now: no summary (a round then compares root by root, and
        // that one collection's part fails on its own).
        this.opts.logger.warn(`the digest of '${col.name}' could not be read: ${(err as Error).message}`, { collection: col.name, ...codeOf(err) })
        complete = false
        continue
      }
      this.rootsChanged.delete(col)
      const root = tree.root()
      const next = isZero(root) ? null : sha256(col.name, '\u0000', col.backend.name, '\u0000', root)
      const previous = this.contributions.get(col.name)
      if (previous) xorInto(this.summary, previous)
      if (next) xorInto(this.summary, next)
      this.contributions.set(col.name, next)
    }
    return complete ? this.summary.slice() : undefined
  }

  /**
   * One page of [name, backend, root] in name order, after `cursor` (exclusive), leaving out
   * zero roots; `next` is the cursor of the following page, undefined on the last.
   */
  async rootsPage(cursor: string | undefined, max: number): Promise<{ roots: [string, string, Uint8Array][]; next: string | undefined }> {
    this.sortedNames ??= [...this.collections.keys()].sort()
    const names = this.sortedNames
    let i = cursor === undefined ? 0 : upperBound(names, cursor)
    const roots: [string, string, Uint8Array][] = []
    for (; i < names.length && roots.length < max; i++) {
      const col = this.collections.get(names[i]!)
      if (col === undefined) continue
      let root: Uint8Array
      try {
        root = (await this.tree(col)).root()
      } catch (err) {
        this.opts.logger.warn(`the digest of '${col.name}' could not be read (left out of the roots): ${(err as Error).message}`, {
          collection: col.name,
          ...codeOf(err),
        })
        continue
      }
      if (!isZero(root)) roots.push([col.name, col.backend.name, root])
    }
    return { roots, next: i < names.length ? names[i - 1] : undefined }
  }

  /** Every cached entity is dropped and its document disposed of (at close). */
  clear(): void {
    this.cache.clear()
  }
}

function isZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false
  return true
}

/** The first index whose name sorts after `name`. */
function upperBound(names: readonly string[], name: string): number {
  let lo = 0
  let hi = names.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (names[mid]! <= name) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** The items of a scan after the first `n`. */
async function* skipFirst<T>(items: AsyncIterable<T>, n: number): AsyncGenerator<T> {
  let i = 0
  for await (const item of items) if (i++ >= n) yield item
}
