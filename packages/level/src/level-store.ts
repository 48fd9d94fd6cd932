import {
  ConvergentError,
  leafOf,
  type CollectionMeta,
  type CorruptRecord,
  type EntityHead,
  type FeedEntry,
  type Store,
  type StoredEntity,
  type StoreOp,
} from '@convergent/core'
import { decodeFeedEntry, decodeHead } from './codec.js'
import { closeError, closedError, notOpenError, openError, readError, writeError } from './errors.js'
import { GroupCommit, type GroupCommitStats } from './group-commit.js'
import {
  checkName,
  collectionRange,
  deltaKey,
  feedRange,
  headKey,
  headRange,
  idOfHeadKey,
  leafOfLeafKey,
  seqOfFeedKey,
  snapshotKey,
  type KeyRange,
} from './keys.js'
import { prefixesOf, toLevelOps, type LevelOp, type Prefixes } from './ops.js'
import { openSublevels, type AnyLevel, type LevelDatabase, type Sublevel, type Sublevels } from './sublevels.js'

export interface LevelStoreOptions {
  /** Reported as store.kind (default 'abstract-level'). */
  kind?: string
  /**
   * fsync every batch (default false). Without it a resolved write() has reached the OS
   * (LevelDB's log write): it survives a crash of the process, even SIGKILL (see
   * test/durability.test.ts), but not a power loss or kernel crash. With it, it survives
   * those too, at the cost of one fsync per batch: ~2.4× for batched puts (DESIGN.md), up
   * to ~5× when every write is its own batch. Group commit amortises it over a tick.
   */
  sync?: boolean
  /** Where the data lives, for error messages (the data dir). */
  location?: string
}

type State = 'new' | 'opening' | 'open' | 'closing' | 'closed'

const READ_CHUNK = 256 // entries fetched per iterator round trip

/**
 * A Store over any abstract-level database. Writes go through group commit (one atomic
 * db.batch per tick); reads go straight to the database, so they see every write whose
 * promise has resolved. The store owns the database: open() opens it, close() closes it.
 */
export class LevelStore implements Store {
  readonly kind: string
  /** The underlying database, for tests and tooling. Never write to it directly. */
  readonly db: AnyLevel
  private readonly sub: Sublevels
  private readonly prefixes: Prefixes
  private readonly commits: GroupCommit<LevelOp>
  private readonly location: string | undefined
  private state: State = 'new'
  private opening: Promise<void> | undefined
  private closing: Promise<void> | undefined

  constructor(db: LevelDatabase, options: LevelStoreOptions = {}) {
    this.db = db as AnyLevel
    const supports = this.db.supports as { getSync?: boolean; explicitSnapshots?: boolean }
    if (supports.getSync !== true || supports.explicitSnapshots !== true) {
      throw new ConvergentError(
        'ERR_INVALID_ARGUMENT',
        'LevelStore needs a database with getSync and explicit snapshots (abstract-level 3: classic-level 3, memory-level 3).',
      )
    }
    this.kind = options.kind ?? 'abstract-level'
    this.location = options.location
    this.sub = openSublevels(this.db)
    this.prefixes = prefixesOf(this.sub)
    // `sync` is a classic-level batch option; other databases ignore it.
    const batchOptions = { sync: options.sync ?? false }
    const opOptions = hasRawEncodings(this.db) ? undefined : RAW
    this.commits = new GroupCommit<LevelOp>((ops) => writeBatch(this.db, ops, batchOptions, opOptions), writeError)
  }

  /** Live counters: batches committed and StoreOps they carried. */
  get stats(): Readonly<GroupCommitStats> {
    return this.commits.stats
  }

  open(): Promise<void> {
    if (this.state === 'open') return Promise.resolve()
    if (this.state === 'opening') return this.opening!
    if (this.state !== 'new') return Promise.reject(closedError())
    this.state = 'opening'
    this.opening = this.openDatabase().then(
      () => {
        if (this.state === 'opening') this.state = 'open'
      },
      (err: unknown) => {
        if (this.state === 'opening') this.state = 'new' // open() may be retried
        throw openError(err, this.location)
      },
    )
    return this.opening
  }

  private async openDatabase(): Promise<void> {
    await this.db.open()
    // Sublevels fail along with a failed open and do not follow a later retry by themselves.
    await Promise.all(Object.values(this.sub).map((sublevel) => sublevel.open()))
  }

  close(): Promise<void> {
    this.closing ??= this.shutDown()
    return this.closing
  }

  private async shutDown(): Promise<void> {
    const opening = this.state === 'opening' ? this.opening : undefined
    this.state = 'closing' // from here on new calls reject; queued writes still go out
    await opening?.catch(() => undefined)
    await this.commits.drain()
    try {
      // Also when never opened: classic-level opens (and locks the dir) on construction.
      await this.db.close()
    } catch (err) {
      throw closeError(err)
    } finally {
      this.state = 'closed'
    }
  }

  write(ops: StoreOp[]): Promise<void> {
    if (this.state !== 'open') return Promise.reject(this.stateError())
    let levelOps: LevelOp[]
    try {
      levelOps = toLevelOps(ops, this.prefixes)
    } catch (err) {
      return Promise.reject(err)
    }
    return this.commits.add(levelOps, ops.length)
  }

  readEntity(collection: string, id: string): Promise<StoredEntity | undefined> {
    return this.readNow(() => {
      checkName('collection', collection)
      checkName('id', id)
      // One explicit snapshot, so head, snapshot and deltas come from the same version even
      // if a batch lands between the reads (LevelDB writes on its own thread).
      const snapshot = this.db.snapshot()
      try {
        const options = { snapshot }
        const headBytes = this.sub.heads.getSync(headKey(collection, leafOf(id), id), options)
        if (headBytes === undefined) return undefined
        const head = decodeHead(headBytes)
        const snap = this.sub.snapshots.getSync(snapshotKey(collection, id), options)
        const deltas: Uint8Array[] = []
        for (let i = 0; i < head.deltaCount; i++) {
          const delta = this.sub.deltas.getSync(deltaKey(collection, id, i), options)
          if (delta === undefined) {
            throw new ConvergentError('ERR_STORE', `Delta ${i} of '${id}' in '${collection}' is missing (its head counts ${head.deltaCount}); the store is corrupt.`)
          }
          deltas.push(new Uint8Array(delta))
        }
        return { head, snapshot: copyOrUndefined(snap), deltas }
      } finally {
        snapshot.close().catch(() => undefined) // nothing to do if the db closed meanwhile
      }
    })
  }

  getHead(collection: string, id: string): Promise<EntityHead | undefined> {
    return this.readNow(() => {
      checkName('collection', collection)
      checkName('id', id)
      const bytes = this.sub.heads.getSync(headKey(collection, leafOf(id), id))
      return bytes === undefined ? undefined : decodeHead(bytes)
    })
  }

  heads(collection: string, range?: { fromLeaf: number; toLeaf: number }): AsyncIterable<[string, EntityHead]> {
    return this.scan(this.sub.heads, collection, () => headRange(collection, range), (key, value) => [
      idOfHeadKey(collection, key),
      decodeHead(value),
    ])
  }

  leaves(collection: string): AsyncIterable<[number, Uint8Array]> {
    return this.scan(this.sub.leaves, collection, () => collectionRange(collection), (key, value) => [
      leafOfLeafKey(collection, key),
      new Uint8Array(value),
    ])
  }

  feed(collection: string, since: number): AsyncIterable<FeedEntry> {
    return this.scan(this.sub.feed, collection, () => feedRange(collection, since), (key, value) =>
      decodeFeedEntry(seqOfFeedKey(collection, key), value),
    )
  }

  lastSeq(collection: string): Promise<number> {
    return this.read(async () => {
      checkName('collection', collection)
      const [last] = await this.sub.feed.keys({ ...collectionRange(collection), reverse: true, limit: 1 }).all()
      return last === undefined ? 0 : seqOfFeedKey(collection, last)
    })
  }

  collections(): Promise<Map<string, CollectionMeta>> {
    return this.read(async () => {
      const out = new Map<string, CollectionMeta>()
      for (const [name, meta] of await this.sub.collections.iterator().all()) out.set(name, { backend: meta.backend })
      return out
    })
  }

  getMeta(key: string): Promise<Uint8Array | undefined> {
    return this.readNow(() => copyOrUndefined(this.sub.meta.getSync(key)))
  }

  dropCollection(collection: string): Promise<void> {
    return this.read(async () => {
      checkName('collection', collection)
      await this.commits.drain()
      await this.sub.collections.del(collection)
      const range = collectionRange(collection)
      for (const name of ['heads', 'snapshots', 'deltas', 'feed', 'leaves'] as const) await this.sub[name].clear(range)
    })
  }

  quarantine(record: CorruptRecord): Promise<void> {
    return this.read(async () => {
      const sublevel = (this.sub as unknown as Record<string, Sublevel<unknown> | undefined>)[record.keyspace]
      if (sublevel === undefined) throw new ConvergentError('ERR_INVALID_ARGUMENT', `No keyspace '${record.keyspace}' in this store.`)
      await sublevel.del(record.key)
    })
  }

  /**
   * Runs a synchronous read if open, as read() does for async ones. Point reads are
   * synchronous (getSync): a few µs from LevelDB's caches, against ~25 µs for a round trip
   * through libuv's thread pool per get — loading an entity was ~60 µs, now ~9. The cost: a
   * read that misses LevelDB's and the OS's caches waits for the disk on the event loop; an
   * entity is a head, a snapshot and at most a few dozen small deltas (see compactAfter).
   */
  private readNow<T>(fn: () => T): Promise<T> {
    if (this.state !== 'open') return Promise.reject(this.stateError())
    try {
      return Promise.resolve(fn())
    } catch (err) {
      if (err instanceof ConvergentError) return Promise.reject(err)
      return Promise.reject(readError(err, this.state !== 'open'))
    }
  }

  /** Runs a read if open; level errors become ERR_STORE (ERR_CLOSED if we closed meanwhile). */
  private async read<T>(fn: () => Promise<T>): Promise<T> {
    if (this.state !== 'open') throw this.stateError()
    try {
      return await fn()
    } catch (err) {
      if (err instanceof ConvergentError) throw err
      throw readError(err, this.state !== 'open')
    }
  }

  /** Iterates one collection's range of a sublevel, READ_CHUNK entries per round trip. */
  private async *scan<V, T>(
    sublevel: Sublevel<V>,
    collection: string,
    range: () => KeyRange | undefined,
    map: (key: string, value: V) => T,
  ): AsyncGenerator<T> {
    if (this.state !== 'open') throw this.stateError()
    checkName('collection', collection)
    const bounds = range()
    if (bounds === undefined) return
    const iterator = sublevel.iterator(bounds)
    try {
      for (;;) {
        let entries: [string, V][]
        try {
          entries = await iterator.nextv(READ_CHUNK)
        } catch (err) {
          throw readError(err, this.state !== 'open')
        }
        if (entries.length === 0) return
        for (const [key, value] of entries) yield map(key, value)
      }
    } finally {
      await iterator.close().catch(() => undefined) // already closed if the db closed under it
    }
  }

  private stateError(): ConvergentError {
    return this.state === 'new' || this.state === 'opening' ? notOpenError() : closedError()
  }
}

/** Ops are pre-prefixed root keys and pre-encoded values (see ops.ts): no transcoding. */
const RAW = { keyEncoding: 'utf8', valueEncoding: 'view' } as const

/**
 * Whether the database's own default encodings are RAW's (both factories open it so), in
 * which case batch ops go without options. Why: abstract-level's chained batch put() clones
 * any non-empty options object into the op on a slow path — ~3 µs of its ~5 µs per op here
 * (classic-level 3.0, abstract-level 3.1), against ~1.5 µs with no options.
 */
function hasRawEncodings(db: AnyLevel): boolean {
  try {
    return db.keyEncoding() === db.keyEncoding(RAW.keyEncoding) && db.valueEncoding() === db.valueEncoding(RAW.valueEncoding)
  } catch {
    return false
  }
}

/**
 * Writes one group commit atomically as a CHAINED batch on the root database. Why chained:
 * classic-level hands each op of a chained batch to LevelDB at once, while an array batch
 * makes C++ read every op object back property by property — 4-5× slower for the small ops
 * of a write (measured: 256 ops, 0.5 ms vs 2.8 ms with sublevel ops).
 */
async function writeBatch(
  db: AnyLevel,
  ops: readonly LevelOp[],
  options: { sync: boolean },
  opOptions: typeof RAW | undefined,
): Promise<void> {
  const batch = db.batch()
  try {
    // Only the last op of each key counts in an atomic batch, so earlier ones are skipped
    // (e.g. a head rewritten by several ticks that share this batch). Walking backwards
    // keeps the last; the order of distinct keys does not matter.
    const seen = new Set<string>()
    for (let i = ops.length - 1; i >= 0; i--) {
      const op = ops[i]!
      if (seen.has(op.key)) continue
      seen.add(op.key)
      if (opOptions === undefined) {
        if (op.type === 'put') batch.put(op.key, op.value)
        else batch.del(op.key)
      } else if (op.type === 'put') batch.put(op.key, op.value, opOptions)
      else batch.del(op.key, opOptions)
    }
  } catch (err) {
    await batch.close() // e.g. a prewrite hook refused an op: write nothing
    throw err
  }
  // `sync` is a classic-level option; other databases ignore it.
  await batch.write(options as object)
}

function copyOrUndefined(bytes: Uint8Array | undefined): Uint8Array | undefined {
  return bytes === undefined ? undefined : new Uint8Array(bytes)
}
