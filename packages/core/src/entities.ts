import type { Backend } from './backend.js'
import type { Clock } from './clock.js'
import { randomBytes } from './clock.js'
import { DigestTree, leafOf } from './digest.js'
import { EntityCache, type LoadedEntity } from './entity-cache.js'
import { ConvergentError, wrapError } from './errors.js'
import type { EntityHead, FeedEntry, Store, StoreOp } from './store.js'

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
  /** The anti-entropy digest; loaded from the store on first use. */
  tree: DigestTree | undefined
  treeLoading: Promise<DigestTree> | undefined
  /** Last feed sequence number assigned. */
  seq: number
}

export interface EntitiesOptions {
  store: Store
  clock: Clock
  /** How many entity documents stay in memory. */
  cacheSize: number
  /** Deltas kept after a snapshot before they are folded into a new one. */
  compactAfter: number
}

/** The result of committing one change: its feed entry, resolved once durable. */
export type CommitKind = FeedEntry['kind']

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

  constructor(private readonly opts: EntitiesOptions) {
    this.cache = new EntityCache(opts.cacheSize)
  }

  get cachedCount(): number {
    return this.cache.size
  }

  /** Reads collection metas and feed positions from the store (at open). */
  async init(backends: Map<string, Backend>): Promise<void> {
    const metas = await this.opts.store.collections()
    for (const [name, meta] of metas) {
      const backend = backends.get(meta.backend)
      if (backend === undefined) {
        throw new ConvergentError(
          'ERR_UNKNOWN_BACKEND',
          `Collection '${name}' is stored with backend '${meta.backend}', which this replica was not given. Pass it in the backends option.`,
        )
      }
      const seq = await this.opts.store.lastSeq(name)
      this.collections.set(name, { name, backend, tentative: false, persisted: true, tree: undefined, treeLoading: undefined, seq })
    }
  }

  /** The collection's state, created (in memory; persisted with its first write) if new. */
  ensure(name: string, backend: Backend, tentative = false): CollectionState {
    let col = this.collections.get(name)
    if (col === undefined) {
      col = { name, backend, tentative, persisted: false, tree: undefined, treeLoading: undefined, seq: 0 }
      this.collections.set(name, col)
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

  /** The collection's digest tree, loading its leaves from the store the first time. */
  tree(col: CollectionState): Promise<DigestTree> {
    if (col.tree !== undefined) return Promise.resolve(col.tree)
    if (col.treeLoading === undefined) {
      col.treeLoading = (async () => {
        const tree = new DigestTree()
        for await (const [leaf, digest] of this.opts.store.leaves(col.name)) tree.loadLeaf(leaf, digest)
        col.tree = tree
        col.treeLoading = undefined
        return tree
      })()
    }
    return col.treeLoading
  }

  /**
   * The entity, loaded (or created empty) and pinned: it stays in memory until release().
   * Concurrent acquires of one entity share one load and one document.
   */
  async acquire(col: CollectionState, id: string): Promise<LoadedEntity> {
    await this.tree(col) // commits update the tree synchronously, so it must be loaded first
    const key = EntityCache.key(col.name, id)
    const cached = this.cache.get(key)
    if (cached !== undefined) {
      cached.pins++
      return cached
    }
    let loading = this.loading.get(key)
    if (loading === undefined) {
      const record = { waiters: 0, promise: undefined as unknown as Promise<LoadedEntity> }
      record.promise = this.load(col, id, key, record)
      loading = record
      this.loading.set(key, record)
    }
    loading.waiters++
    return loading.promise
  }

  private async load(col: CollectionState, id: string, key: string, record: { waiters: number }): Promise<LoadedEntity> {
    let stored
    try {
      stored = await this.opts.store.readEntity(col.name, id)
    } catch (err) {
      this.loading.delete(key)
      throw wrapError('ERR_STORE', `Could not read entity '${id}' of '${col.name}'`, err)
    }
    const actor = randomBytes(this.opts.clock, 16)
    let doc: unknown
    try {
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
    } catch (err) {
      this.loading.delete(key)
      throw err
    }
    // Pin for every waiter and publish in the cache in one synchronous step: from here on,
    // acquires find it in the cache, so there is never a second copy of the document.
    const entity: LoadedEntity = {
      collection: col.name,
      id,
      leaf: leafOf(id),
      doc,
      head: stored?.head,
      pins: record.waiters,
      lastWrite: Promise.resolve(),
    }
    this.loading.delete(key)
    this.cache.set(key, entity)
    return entity
  }

  release(entity: LoadedEntity): void {
    entity.pins--
    if (entity.pins === 0) this.cache.evict()
  }

  /**
   * Commits a changed document: builds ONE store write (delta or compacted snapshot, head,
   * digest leaf, feed entry, and the collection record if new), updates memory at once so
   * the next change of this entity builds on it, and resolves with the feed entry once the
   * write is durable. Synchronous until store.write, so concurrent commits keep their order.
   */
  commit(
    col: CollectionState,
    entity: LoadedEntity,
    newDoc: unknown,
    delta: Uint8Array,
    kind: CommitKind,
    origin: string,
    deleted: boolean,
  ): Promise<FeedEntry> {
    const backend = col.backend
    const tree = col.tree
    if (tree === undefined) throw new Error('invariant: digest tree not loaded before commit')
    const oldHead = entity.head
    const versionHash = backend.versionHash(newDoc)
    const ops: StoreOp[] = []
    col.tentative = false
    if (!col.persisted) {
      ops.push({ type: 'collection', collection: col.name, meta: { backend: backend.name } })
      col.persisted = true
    }
    let deltaCount = oldHead?.deltaCount ?? 0
    if (deltaCount >= this.opts.compactAfter) {
      // Fold everything into a fresh snapshot and drop the deltas it covers.
      ops.push({ type: 'snapshot', collection: col.name, id: entity.id, bytes: backend.save(newDoc) })
      for (let i = 0; i < deltaCount; i++) ops.push({ type: 'delDelta', collection: col.name, id: entity.id, index: i })
      deltaCount = 0
    } else {
      ops.push({ type: 'delta', collection: col.name, id: entity.id, index: deltaCount, bytes: delta })
      deltaCount++
    }
    const head: EntityHead = { backend: backend.name, versionHash, deltaCount, deleted }
    ops.push({ type: 'head', collection: col.name, id: entity.id, head })
    const leafDigest = tree.update(entity.id, entity.leaf, oldHead?.versionHash, versionHash)
    ops.push({ type: 'leaf', collection: col.name, leaf: entity.leaf, bytes: leafDigest })
    const entry: FeedEntry = { seq: ++col.seq, id: entity.id, origin, time: this.opts.clock.now(), kind }
    ops.push({ type: 'feed', collection: col.name, entry })

    entity.doc = newDoc
    entity.head = head
    entity.pins++
    const written = this.opts.store.write(ops)
    entity.lastWrite = written.then(
      () => undefined,
      () => undefined,
    )
    return written.then(
      () => {
        this.release(entity)
        return entry
      },
      (err: unknown) => {
        this.release(entity)
        this.forgetAfterFailedWrite(col, entity)
        throw wrapError('ERR_STORE', `Could not write entity '${entity.id}' of '${col.name}'`, err)
      },
    )
  }

  /**
   * After a failed write memory is ahead of disk: drop the entity and the collection's digest
   * so both reload from what the store really holds.
   */
  private forgetAfterFailedWrite(col: CollectionState, entity: LoadedEntity): void {
    this.cache.delete(EntityCache.key(col.name, entity.id))
    col.tree = undefined
    col.treeLoading = undefined
    void this.opts.store.lastSeq(col.name).then(
      (seq) => {
        col.seq = Math.max(col.seq, seq)
      },
      () => undefined,
    )
  }

  /** Stored heads of a collection, optionally only those in a range of digest leaves. */
  heads(col: CollectionState, range?: { fromLeaf: number; toLeaf: number }): AsyncIterable<[string, EntityHead]> {
    return this.opts.store.heads(col.name, range)
  }

  /** Every cached entity is dropped (at close). */
  clear(): void {
    this.cache.clear()
  }
}
