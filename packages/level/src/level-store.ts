import {
  ConvergentError,
  leafOf,
  StoreCorruptError,
  corruptRecordOwner,
  type CollectionMeta,
  type CorruptRecord,
  type EntityHead,
  type FeedEntry,
  type Store,
  type StoredEntity,
  type StoreOp,
} from '@convergent/core'
import { AckedMark } from './acked.js'
import { decodeCollectionMeta, decodeFeedRecord, decodeHead, decodeJson, encodeJson } from './codec.js'
import { closeError, closedError, corruptError, isLevelCorruption, notOpenError, openError, readError, recordCorruptError, writeError } from './errors.js'
import { formatOp, openBody, prepareFormat, STORE_FORMAT, type Maintenance } from './format.js'
import { AtRestSealer, resolveKey, type EncryptionOptions } from './encryption.js'
import { GroupCommit, type GroupCommitStats } from './group-commit.js'
import { infoLogDamage } from './info-log.js'
import type { InspectionSnapshot } from './inspect.js'
import {
  BATCH_KEY,
  checkName,
  collectionOfDropMarker,
  collectionRange,
  deltaKey,
  DROP_MARKERS,
  dropMarkerKey,
  feedFloorKey,
  feedRange,
  headKey,
  headRange,
  idOfHeadKey,
  leafOfLeafKey,
  quarantineKey,
  seqOfFeedKey,
  snapshotKey,
  type KeyRange,
} from './keys.js'
import { prefixesOf, putRecord, toLevelOps, type LevelOp, type Prefixes } from './ops.js'
import { PLAIN_SEALER, prefixSum, type RecordSealer } from './record.js'
import {
  COLLECTION_KEYSPACES,
  isDataKeyspace,
  openSublevels,
  type AnyLevel,
  type DataKeyspace,
  type Keyspace,
  type LevelDatabase,
  type Sublevels,
} from './sublevels.js'

export interface LevelStoreOptions {
  /** Reported as store.kind (default 'abstract-level'). */
  kind?: string
  /**
   * fsync every batch (default false). Without it a resolved write() has reached the OS
   * (LevelDB's log write): it survives a crash of the process, even SIGKILL (see
   * test/durability.test.ts), but not a power loss or kernel crash. With it, it survives
   * those too, at the cost of one fsync per batch (W1 in bench/ measures both); group commit
   * amortises it over a tick. Also for the batches of a migration, a drop and a quarantine.
   */
  sync?: boolean
  /** Where the data lives, for error messages (the data dir). */
  location?: string
  /**
   * Records per batch when open() migrates an older format and when a collection is dropped
   * (default 1000): each batch is atomic, the work between them resumable.
   */
  chunk?: number
  /**
   * Encryption at rest: every value written is sealed with XChaCha20-Poly1305 under a subkey of
   * this key (encryption.ts). `{ key }`: 32 bytes, or 64 hex characters; `{ keyFile }`: a file holding
   * the 64 hex characters, read when the store is made. Keys (entity ids, collection names)
   * stay visible. A store opened with another key than its data was written with fails open()
   * with ERR_WRONG_KEY, an encrypted one opened without a key with ERR_ENCRYPTED, a plain one
   * opened with a key with ERR_NOT_ENCRYPTED; classicLevelStore() checks the folder before
   * LevelDB opens it, so the folder is left as it was.
   */
  encryption?: EncryptionOptions | AtRestSealer
  /**
   * Called once, synchronously, before the first batch reaches LevelDB; if it throws, that
   * batch is refused and the next one calls it again. classicLevelStore() passes it for a folder
   * an earlier release encrypted, to rewrite its marker file first (encryption.ts).
   */
  beforeFirstWrite?: () => void
  /**
   * For tools that look into a folder (the CLI): a damaged record is reported, never moved
   * aside — quarantine() rejects with ERR_STORE_CORRUPT naming it, so the read that met it fails
   * and the folder stays as it was (the evidence with it). Default false: the replica moves it
   * aside and goes on. classicLevelStore() opens a private snapshot of the folder (inspect.ts),
   * since LevelDB's own open rewrites files in it.
   */
  inspect?: boolean
  /**
   * Set by classicLevelStore() with `inspect`: the snapshot the database is opened on. Its
   * folder's side files (the acknowledged-batch mark) are read in the folder itself, LevelDB's
   * messages name the folder's files, and the snapshot is removed when the store closes or its
   * open fails.
   */
  snapshot?: InspectionSnapshot
}

/** A record quarantine() moved aside, as LevelStore.quarantined() lists it. */
export interface QuarantinedRecord {
  keyspace: string
  key: string
  /** When it was moved (ms since the epoch). */
  time: number
  /** The bytes that were stored (header and all); undefined if LevelDB could not read them. */
  bytes: Uint8Array | undefined
  /** Why LevelDB could not read them, if it could not. */
  error?: string
}

type State = 'new' | 'opening' | 'open' | 'closing' | 'closed'
type Names = { collection?: string; id?: string }

const READ_CHUNK = 256 // entries fetched per iterator round trip
const DEFAULT_CHUNK = 1000

const copyBytes = (body: Uint8Array): Uint8Array => new Uint8Array(body) // the caller may keep it

/** In a quarantine key (time NUL keyspace NUL key), what comes before a feed record's key. */
const SEP_FEED = '\u0000feed\u0000'

/** The number after a key's last NUL: a feed key's seq (collection NUL seq). */
function seqAfterLastNul(key: string): number {
  return Number(key.slice(key.lastIndexOf('\u0000') + 1))
}

/** How each data keyspace's bodies decode: a record that fails to is as corrupt as one that fails its checksum. */
const DECODERS: Record<DataKeyspace, (body: Uint8Array, key: string) => unknown> = {
  heads: decodeHead,
  snapshots: copyBytes,
  deltas: copyBytes,
  // A page's entries count back from the seq its key names.
  feed: (body, key) => decodeFeedRecord(seqAfterLastNul(key), body),
  leaves: copyBytes,
  collections: decodeCollectionMeta,
  meta: copyBytes,
}

/**
 * A Store over any abstract-level database. Writes go through group commit (one atomic
 * db.batch per tick); reads go straight to the database, so they see every write whose
 * promise has resolved. The store owns the database: open() opens it, close() closes it.
 *
 * Integrity: every value is a checksummed record (record.ts) and every read checks it: a
 * record that fails is never returned, the read rejects with StoreCorruptError naming it (as
 * it does when LevelDB itself reports a record corrupt); quarantine() moves it aside. open()
 * migrates older formats first (format.ts), finishes drops a crash interrupted, and reports in
 * `damage` what LevelDB said it dropped while recovering (info-log.ts) and acknowledged batches
 * it lost without saying so (acked.ts).
 */
export class LevelStore implements Store {
  readonly kind: string
  /** The underlying database, for tests and tooling. Never write to it directly. */
  readonly db: AnyLevel
  private found: readonly string[] = []
  private readonly sub: Sublevels
  private readonly prefixes: Prefixes
  /** crc32 of each keyspace's prefix: where a record's checksum starts. */
  private readonly sums: Record<Keyspace, number>
  private readonly commits: GroupCommit<LevelOp>
  private readonly writeOps: (ops: readonly LevelOp[]) => Promise<void>
  private readonly location: string | undefined
  /** See LevelStoreOptions.inspect. */
  private readonly inspect: boolean
  /** See LevelStoreOptions.snapshot. */
  private readonly snapshot: InspectionSnapshot | undefined
  private readonly chunk: number
  private readonly sealer: RecordSealer
  private readonly encryption: AtRestSealer | undefined
  /**
   * Collections whose drop has begun and not finished: they read as empty, and writes to them
   * are refused (a drop that failed stays here until a later drop or open() finishes it).
   */
  private readonly dropping = new Set<string>()
  /** The acknowledged-batch mark (classic-level: a file in the db folder; see acked.ts). */
  private acked: AckedMark | undefined
  /** The number of the last batch written. */
  private batchNo = 0
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
    this.inspect = options.inspect === true
    this.snapshot = options.snapshot
    this.chunk = Math.max(1, Math.floor(options.chunk ?? DEFAULT_CHUNK))
    const encryption = options.encryption
    this.encryption = encryption === undefined ? undefined : encryption instanceof AtRestSealer ? encryption : new AtRestSealer(resolveKey(encryption))
    this.sealer = this.encryption ?? PLAIN_SEALER
    this.sub = openSublevels(this.db)
    this.prefixes = prefixesOf(this.sub)
    this.sums = Object.fromEntries(Object.entries(this.prefixes).map(([name, prefix]) => [name, prefixSum(prefix)])) as Record<Keyspace, number>
    // `sync` is a classic-level batch option; other databases ignore it.
    const batchOptions = { sync: options.sync ?? false }
    const opOptions = hasRawEncodings(this.db) ? undefined : RAW
    let beforeFirstWrite = options.beforeFirstWrite
    this.writeOps = (ops) => {
      if (this.inspect) {
        // Whatever path would write: looking at a folder changes nothing in it.
        return Promise.reject(new ConvergentError('ERR_STORE', `The store${this.where()} is opened for inspection: nothing is written.`))
      }
      if (beforeFirstWrite !== undefined) {
        try {
          beforeFirstWrite()
        } catch (err) {
          return Promise.reject(err instanceof Error ? err : new Error(String(err)))
        }
        beforeFirstWrite = undefined
      }
      return writeBatch(this.db, ops, batchOptions, opOptions)
    }
    this.commits = new GroupCommit<LevelOp>((ops) => this.commitBatch(ops), writeError)
  }

  /**
   * What open() found damaged and could not keep, in words; empty when all was well: what
   * LevelDB dropped from its write-ahead log while recovering it (acknowledged writes may be
   * lost), acknowledged batches missing after recovery, a drop marker that failed its check.
   */
  get damage(): readonly string[] {
    return this.found
  }

  /** ' in <folder>' for messages, when the folder is known. */
  private where(): string {
    return this.location === undefined ? '' : ` in ${this.location}`
  }

  /** See Store.readOnly: true when opened for inspection (LevelStoreOptions.inspect). */
  get readOnly(): boolean {
    return this.inspect
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
        // open() may be retried, but not on a snapshot: it is removed when open() fails.
        if (this.state === 'opening') this.state = this.snapshot === undefined ? 'new' : 'closed'
        const error = openError(err, this.location)
        if (this.snapshot !== undefined) error.message = this.snapshot.rename(error.message)
        throw error
      },
    )
    return this.opening
  }

  /**
   * Opens the database, then, before anything can be read: reads what LevelDB's recovery
   * reported (its info log is rewritten by every open, so this must come first), brings an
   * older format to the current one, and finishes drops that a crash interrupted.
   */
  private async openDatabase(): Promise<void> {
    if (this.snapshot === undefined) return this.openAndCheck()
    try {
      this.snapshot.beforeOpen()
      await this.openAndCheck()
    } catch (err) {
      this.acked?.close()
      this.acked = undefined
      await this.db.close().catch(() => undefined)
      this.snapshot.remove()
      throw err
    }
  }

  private async openAndCheck(): Promise<void> {
    await this.db.open()
    // Sublevels fail along with a failed open and do not follow a later retry by themselves.
    await Promise.all((Object.values(this.sub) as { open(): Promise<void> }[]).map((sublevel) => sublevel.open()))
    const dir = (this.db as { location?: unknown }).location
    // A snapshot's LOG names the snapshot's files: the folder's are meant.
    const damage = typeof dir === 'string' ? (await infoLogDamage(dir)).map((d) => this.snapshot?.rename(d) ?? d) : []
    const prepared = await prepareFormat(this.maintenance())
    this.format = prepared.version
    damage.push(...prepared.damage)
    // The mark is the folder's (a snapshot holds a copy: the folder's is the one the service writes).
    if (typeof dir === 'string') damage.push(...this.checkAcked(this.snapshot?.source ?? dir))
    damage.push(...(await this.finishDrops()))
    if (this.inspect && damage.length > 0) {
      // Looking must not hide what went wrong: the read fails (the service reports it when it opens).
      this.acked?.close()
      this.acked = undefined
      await this.db.close()
      throw new ConvergentError('ERR_STORE_CORRUPT', `The store${this.where()} is damaged (left as it is: opened for inspection): ${damage.join(' ')}`)
    }
    this.found = Object.freeze(damage)
  }

  /**
   * Writes one group commit; with an acknowledged-batch mark, numbers it (in the same atomic
   * batch) and, once written, records the number in the mark (acked.ts).
   */
  private async commitBatch(ops: LevelOp[]): Promise<void> {
    const mark = this.acked
    if (mark === undefined) return this.writeOps(ops)
    const n = this.batchNo + 1
    ops.push(putRecord(this.prefixes.store + BATCH_KEY, encodeJson(n), this.sealer))
    await this.writeOps(ops)
    this.batchNo = n
    this.markAcked(n)
  }

  private markAcked(n: number): void {
    try {
      this.acked?.write(n)
    } catch {
      // The batch is written and acknowledged all the same; the mark stops here (it can only
      // lag behind LevelDB then, which the check at open reads as no loss).
      this.acked?.close()
      this.acked = undefined
    }
  }

  /** Compares the acknowledged-batch mark with the batch LevelDB recovered (open() calls it). */
  private checkAcked(dir: string): string[] {
    let mark: AckedMark
    try {
      mark = AckedMark.open(dir, this.inspect)
    } catch {
      return [] // a folder we may not write a file to: no mark, no check
    }
    this.acked = mark
    const acked = mark.read()
    const stored = this.sub.store.getSync(BATCH_KEY)
    const body = stored === undefined ? undefined : this.openBody('store', BATCH_KEY, stored)
    const recovered = body === undefined ? undefined : decodeJson(body, 'batch number')
    if (stored !== undefined && typeof recovered !== 'number') {
      this.batchNo = acked ?? 0
      return ["The store's record of its last batch failed its checksum: whether LevelDB lost acknowledged writes while recovering cannot be told."]
    }
    // From here on the mark follows what LevelDB has: a loss is reported by the open that finds it, once.
    const last = (recovered as number | undefined) ?? 0
    this.batchNo = last
    this.markAcked(last)
    if (acked === undefined || last >= acked) return []
    return [
      `LevelDB recovered the store only up to its batch ${last}, but batches up to ${acked} had been acknowledged: ` +
        `the writes of the last ${acked - last} acknowledged batches are lost (LevelDB's write-ahead log was damaged or cut short)`,
    ]
  }

  private openBody(keyspace: Keyspace, key: string, stored: Uint8Array): Uint8Array | undefined {
    return openBody(this.maintenance(), keyspace, key, stored)
  }

  private maintenance(): Maintenance {
    return {
      db: this.db,
      sub: this.sub,
      prefixes: this.prefixes,
      sums: this.sums,
      write: this.writeOps,
      chunk: this.chunk,
      sealer: this.sealer,
      encryption: this.encryption,
      where: this.location === undefined ? 'database' : `data dir ${this.location}`,
      decode: (keyspace, key, body) => DECODERS[keyspace](body, key),
      moveAsideOps: (key, stored) => this.moveAsideOps('store', key, stored, undefined),
      inspect: this.inspect,
    }
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
      this.acked?.close()
      this.acked = undefined
      this.snapshot?.remove()
      this.state = 'closed'
    }
  }

  write(ops: StoreOp[]): Promise<void> {
    if (this.state !== 'open') return Promise.reject(this.stateError())
    if (this.dropping.size !== 0) {
      const op = ops.find((o) => 'collection' in o && this.dropping.has(o.collection))
      if (op !== undefined) return Promise.reject(droppingError((op as { collection: string }).collection))
    }
    let levelOps: LevelOp[] & { paged?: boolean }
    try {
      levelOps = toLevelOps(ops, this.prefixes, this.sealer)
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)))
    }
    if (this.format < STORE_FORMAT) {
      // The first record older code cannot read: a feed page (format 3) or a feed entry with a
      // proof (format 2). The folder says so in the same batch — and never less than a batch
      // queued before it says (batches share a LevelDB batch, where the last 'format' wins, or
      // follow each other), so a proof entry queued after a page cannot take 3 back to 2.
      const needs = levelOps.paged === true ? 3 : ops.some((op) => op.type === 'feed' && op.entry.proof !== undefined) ? 2 : 0
      if (needs > this.format) {
        const version = Math.max(needs, this.queuedFormat)
        this.queuedFormat = version
        levelOps.push(formatOp({ prefixes: this.prefixes, sealer: this.sealer }, version))
        return this.commits.add(levelOps, ops.length).then(
          () => {
            this.format = Math.max(this.format, version)
          },
          (err: unknown) => {
            // Not written (and every batch queued behind it fails too): nothing claims more now.
            this.queuedFormat = this.format
            throw err
          },
        )
      }
    }
    return this.commits.add(levelOps, ops.length)
  }

  /** The folder's format as written (format.ts): 1 or 2 until a record that needs more is written. */
  private format = STORE_FORMAT
  /** The highest format a queued batch writes (the folder's once those batches are written). */
  private queuedFormat = 0

  readEntity(collection: string, id: string): Promise<StoredEntity | undefined> {
    return this.readNow(() => {
      checkName('collection', collection)
      checkName('id', id)
      if (this.dropping.has(collection)) return undefined
      const names = { collection, id }
      // One explicit snapshot, so head, snapshot and deltas come from the same version even
      // if a batch lands between the reads (LevelDB writes on its own thread).
      const snapshot = this.db.snapshot()
      try {
        const options = { snapshot }
        const head = this.get('heads', headKey(collection, leafOf(id), id), names, decodeHead, options)
        if (head === undefined) return undefined
        const snap = this.get('snapshots', snapshotKey(collection, id), names, copyBytes, options)
        // A record the head says exists but cannot be found (its key damaged on disk) is damage
        // too: the entity must not load without it.
        if (snap === undefined && head.hasSnapshot === true) {
          throw new StoreCorruptError(
            { keyspace: 'snapshots', key: snapshotKey(collection, id), collection, id },
            'it is missing though its head names one',
            this.location,
          )
        }
        const deltas: Uint8Array[] = []
        for (let i = 0; i < head.deltaCount; i++) {
          const delta = this.get('deltas', deltaKey(collection, id, i), names, copyBytes, options)
          if (delta === undefined) {
            throw new StoreCorruptError(
              { keyspace: 'deltas', key: deltaKey(collection, id, i), collection, id },
              `delta ${i} is missing though its head counts ${head.deltaCount}`,
              this.location,
            )
          }
          deltas.push(delta)
        }
        return { head, snapshot: snap, deltas }
      } finally {
        snapshot.close().catch(() => undefined) // nothing to do if the db closed meanwhile
      }
    })
  }

  getHead(collection: string, id: string): Promise<EntityHead | undefined> {
    return this.readNow(() => {
      checkName('collection', collection)
      checkName('id', id)
      if (this.dropping.has(collection)) return undefined
      return this.get('heads', headKey(collection, leafOf(id), id), { collection, id }, decodeHead)
    })
  }

  heads(collection: string, range?: { fromLeaf: number; toLeaf: number }): AsyncIterable<[string, EntityHead]> {
    return this.scan(
      'heads',
      collection,
      () => headRange(collection, range),
      (key, value) => {
        const id = idOfHeadKey(collection, key)
        return [id, this.check('heads', key, value, { collection, id }, decodeHead)]
      },
    )
  }

  leaves(collection: string): AsyncIterable<[number, Uint8Array]> {
    return this.scan(
      'leaves',
      collection,
      () => collectionRange(collection),
      (key, value) => [leafOfLeafKey(collection, key), this.check('leaves', key, value, { collection }, copyBytes)],
    )
  }

  async *feed(collection: string, since: number): AsyncGenerator<FeedEntry> {
    // A record is keyed by its last entry's seq: the first one at or after since + 1 holds it.
    for await (const entries of this.scan(
      'feed',
      collection,
      () => feedRange(collection, since),
      (key, value) => this.check('feed', key, value, { collection }, (body) => decodeFeedRecord(seqOfFeedKey(collection, key), body)),
    )) {
      for (const e of entries) if (!(e.seq <= since)) yield e
    }
  }

  lastSeq(collection: string): Promise<number> {
    return this.read(async () => {
      checkName('collection', collection)
      if (this.dropping.has(collection)) return 0
      // Never below what quarantine() moved aside, so no seq is handed out twice.
      const floor = await this.feedFloor(collection)
      const [last] = await this.sub.feed.iterator({ ...collectionRange(collection), reverse: true, limit: 1 }).all()
      if (last === undefined) return floor
      const [key, value] = last
      this.check('feed', key, value, { collection }, (body) => decodeFeedRecord(seqOfFeedKey(collection, key), body))
      return Math.max(floor, seqOfFeedKey(collection, key))
    })
  }

  collections(): Promise<Map<string, CollectionMeta>> {
    return this.read(async () => {
      const out = new Map<string, CollectionMeta>()
      for (const [name, value] of await this.sub.collections.iterator().all()) {
        if (this.dropping.has(name)) continue
        out.set(name, this.check('collections', name, value, { collection: name }, decodeCollectionMeta))
      }
      return out
    })
  }

  /**
   * See Store.headCollections: a skip-scan of the heads keyspace (one seek per collection; the
   * heads of a collection in `skip` are not read), each other collection's heads read up to the
   * first that passes its check and decodes.
   */
  headCollections(skip: ReadonlySet<string>): Promise<Map<string, CollectionMeta>> {
    return this.read(async () => {
      const out = new Map<string, CollectionMeta>()
      let bounds: { gt?: string; gte?: string } = {}
      for (;;) {
        const [first] = await this.sub.heads.keys({ ...bounds, limit: 1 }).all()
        if (first === undefined) return out
        const nul = first.indexOf('\u0000')
        if (nul <= 0) {
          bounds = { gt: first } // no collection part: a damaged key, passed over
          continue
        }
        const collection = first.slice(0, nul)
        if (!skip.has(collection) && !this.dropping.has(collection)) {
          const backend = await this.firstSoundBackend(collection)
          if (backend !== undefined) out.set(collection, { backend })
        }
        bounds = { gte: collectionRange(collection).lt }
      }
    })
  }

  /** The backend the first head of `collection` that passes its check names; undefined if none does. */
  private async firstSoundBackend(collection: string): Promise<string | undefined> {
    for await (const backend of this.chunks(this.sub.heads.iterator(collectionRange(collection)), `the heads of collection '${collection}'`, (key, value) => {
      const body = this.openBody('heads', key, value)
      if (body === undefined) return undefined
      try {
        return decodeHead(body).backend
      } catch {
        return undefined
      }
    })) {
      if (backend !== undefined) return backend
    }
    return undefined
  }

  getMeta(key: string): Promise<Uint8Array | undefined> {
    return this.readNow(() => this.get('meta', key, {}, copyBytes))
  }

  /** Meta records whose key starts with `prefix` (and sorts after `after`), in key order (each checked like any record). */
  async *metas(prefix: string, after?: string): AsyncGenerator<[string, Uint8Array]> {
    if (this.state !== 'open') throw this.stateError()
    const iterator = this.sub.meta.iterator(
      after !== undefined && after >= prefix ? { gt: after, lt: prefix + '\uffff' } : { gte: prefix, lt: prefix + '\uffff' },
    )
    yield* this.chunks(iterator, 'the meta records', (key, value): [string, Uint8Array] => [key, this.check('meta', key, value, {}, copyBytes)])
  }

  /**
   * classic-level: compacts the meta keyspace so no file keeps a deleted or overwritten meta
   * value (forget()'s subject keys). LevelDB's CompactRange first flushes the memtable — the
   * write-ahead log that held the values goes — then merges the range level by level. But a
   * flushed table keeps every version of a key (the put and its delete side by side), and it
   * may land below the levels that range compaction rewrites. So a second pass: deletion
   * markers at both ends of the range make the next flushed table overlap every table of the
   * range, so it lands above them and the merge drops the shadowed values. Waits for the
   * writes queued before it. memory-level has no files: nothing to do.
   */
  async compact(): Promise<void> {
    if (this.state !== 'open') throw this.stateError()
    await this.commits.add([], 0)
    const db = this.db as { compactRange?: (start: string, end: string) => Promise<void> }
    if (typeof db.compactRange !== 'function') return
    const low = this.prefixes.meta
    const high = this.prefixes.meta + '\uffff\uffff'
    try {
      await db.compactRange(low, high)
      await this.commits.add(
        [
          { type: 'del', key: low },
          { type: 'del', key: high },
        ],
        0,
      )
      await db.compactRange(low, high)
    } catch (err) {
      throw readError(err, this.state !== 'open')
    }
  }

  /**
   * Crash-safe, in three steps: (1) one batch writes a drop marker (store keyspace) and
   * deletes the collection's meta, so collections() no longer lists it; (2) batches of `chunk`
   * deletes go through heads, snapshots, deltas, feed and leaves; (3) the marker is deleted,
   * last. A crash anywhere in between leaves the marker, and the next open() finishes the
   * drop before anything is read. From the call on, the collection reads as empty and writes
   * to it are refused (ERR_STORE) until the drop is done. The drop runs alone in the write
   * sequence: writes to other collections made meanwhile wait for it. Quarantined records of
   * the collection are kept (they are evidence, not data).
   */
  dropCollection(collection: string): Promise<void> {
    if (this.state !== 'open') return Promise.reject(this.stateError())
    try {
      checkName('collection', collection)
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)))
    }
    this.dropping.add(collection)
    return this.read(() =>
      this.commits.exclusive(async () => {
        await this.writeOps([
          putRecord(this.prefixes.store + dropMarkerKey(collection), encodeJson({ time: Date.now() }), this.sealer),
          { type: 'del', key: this.prefixes.collections + collection },
        ])
        await this.finishDrop(collection)
      }),
    )
  }

  /** Steps (2) and (3) of dropCollection. */
  private async finishDrop(collection: string): Promise<void> {
    for (const keyspace of COLLECTION_KEYSPACES) await this.deleteRange(keyspace, collectionRange(collection))
    // Its meta once more, with the marker: deleting a missing key costs nothing, and a marker
    // written by hand (or by another version) may not have deleted it.
    await this.writeOps([
      { type: 'del', key: this.prefixes.collections + collection },
      { type: 'del', key: this.prefixes.store + feedFloorKey(collection) },
      { type: 'del', key: this.prefixes.store + dropMarkerKey(collection) },
    ])
    this.dropping.delete(collection)
  }

  private async deleteRange(keyspace: Keyspace, range: KeyRange): Promise<void> {
    const prefix = this.prefixes[keyspace]
    let bounds: { gte?: string; gt?: string; lt: string } = range
    for (;;) {
      const keys = await this.sub[keyspace].keys({ ...bounds, limit: this.chunk }).all()
      if (keys.length === 0) return
      await this.writeOps(keys.map((key): LevelOp => ({ type: 'del', key: prefix + key })))
      bounds = { gt: keys[keys.length - 1]!, lt: range.lt } // not over the deleted keys again
    }
  }

  /** Finishes every drop a crash interrupted (open() calls it); returns damage to report. */
  private async finishDrops(): Promise<string[]> {
    const damage: string[] = []
    for (const [key, value] of await this.sub.store.iterator(DROP_MARKERS).all()) {
      const collection = collectionOfDropMarker(key)
      if (this.inspect) {
        // Looked at, not changed: the collection reads as dropped, the service finishes the drop.
        if (this.openBody('store', key, value) === undefined) damage.push(`The drop marker of collection '${collection}' failed its checksum.`)
        else this.dropping.add(collection)
        continue
      }
      if (this.openBody('store', key, value) === undefined) {
        // Its key may be damaged too: dropping what it names could drop the wrong collection.
        await this.moveAside('store', key)
        damage.push(
          `The drop marker of collection '${collection}' failed its checksum: it was quarantined and the drop was not finished; drop the collection again if it is still wanted gone.`,
        )
        continue
      }
      this.dropping.add(collection)
      await this.finishDrop(collection)
    }
    return damage
  }

  /**
   * Moves the record into the quarantine keyspace (its key, the stored bytes, the time) and
   * deletes it from its keyspace, in ONE atomic batch. It runs alone in the write sequence, and
   * only moves a record that still fails its check: one rewritten since the read that failed
   * (e.g. fetched again from a peer) is healthy and stays. A record that is gone is a no-op.
   */
  quarantine(record: CorruptRecord): Promise<void> {
    if (this.state !== 'open') return Promise.reject(this.stateError())
    const { keyspace, key } = record
    if (!isDataKeyspace(keyspace) || typeof key !== 'string') {
      return Promise.reject(new ConvergentError('ERR_INVALID_ARGUMENT', `No keyspace '${keyspace}' in this store, or no key.`))
    }
    if (this.inspect) {
      return Promise.reject(
        new ConvergentError(
          'ERR_STORE_CORRUPT',
          `A stored ${keyspace} record ${JSON.stringify(key)} of ${corruptRecordOwner(record)}${this.where()} is damaged: it failed its check. Left as it is (this folder is opened for inspection); the service moves it aside when it meets it and fetches what it held again from its peers.`,
        ),
      )
    }
    return this.read(() => this.commits.exclusive(async () => void (await this.moveAside(keyspace, key))))
  }

  /** quarantine()'s work; true if the record was moved. */
  private async moveAside(keyspace: DataKeyspace | 'store', key: string): Promise<boolean> {
    let stored: Uint8Array | undefined
    let error: string | undefined
    try {
      stored = this.sub[keyspace].getSync(key)
    } catch (err) {
      if (!isLevelCorruption(err)) throw err
      error = err instanceof Error ? err.message : String(err) // LevelDB cannot read it: delete it all the same
    }
    if (stored === undefined && error === undefined) return false
    if (stored !== undefined && this.isHealthy(keyspace, key, stored)) return false
    const ops = this.moveAsideOps(keyspace, key, stored, error)
    if (keyspace === 'feed') ops.push(...(await this.feedFloorOps(key)))
    await this.writeOps(ops)
    return true
  }

  /** The ops that move a record into the quarantine keyspace (its key, the stored bytes, the time) and delete it from its own. */
  private moveAsideOps(keyspace: DataKeyspace | 'store', key: string, stored: Uint8Array | undefined, error: string | undefined): LevelOp[] {
    const time = Date.now()
    const entry = { keyspace, key, time, bytes: stored === undefined ? null : Buffer.from(stored).toString('base64'), error }
    return [
      putRecord(this.prefixes.quarantine + quarantineKey(time, keyspace, key), encodeJson(entry), this.sealer),
      { type: 'del', key: this.prefixes[keyspace] + key },
    ]
  }

  /**
   * A feed record moved aside: its collection's lastSeq must not fall below its seq (a page:
   * its last entry's), or the seqs it held would be handed out again to later changes.
   */
  private async feedFloorOps(key: string): Promise<LevelOp[]> {
    const seq = seqAfterLastNul(key)
    if (!Number.isSafeInteger(seq)) return []
    const collection = key.slice(0, key.lastIndexOf('\u0000'))
    const floor = await this.feedFloor(collection)
    return [putRecord(this.prefixes.store + feedFloorKey(collection), encodeJson(Math.max(seq, floor)), this.sealer)]
  }

  /**
   * The highest feed seq of `collection` quarantine() moved aside (0 if none). A floor record
   * that fails its check is rebuilt from the quarantine keyspace, which keeps every record moved
   * aside with its key (a scan, only then).
   */
  private async feedFloor(collection: string): Promise<number> {
    try {
      const recorded = this.get('store', feedFloorKey(collection), { collection }, (body) => decodeJson(body, 'feed floor'))
      if (recorded === undefined) return 0
      if (typeof recorded === 'number') return recorded
    } catch {
      // damaged: rebuilt below
    }
    let floor = 0
    const mark = `${SEP_FEED}${collection}\u0000`
    for (const key of await this.sub.quarantine.keys().all()) {
      const at = key.indexOf(mark)
      if (at < 0 || key.indexOf('\u0000') !== at) continue // the first NUL ends the time; then 'feed' NUL collection NUL
      const seq = seqAfterLastNul(key)
      if (Number.isSafeInteger(seq) && seq > floor) floor = seq
    }
    return floor
  }

  private isHealthy(keyspace: DataKeyspace | 'store', key: string, stored: Uint8Array): boolean {
    const body = this.openBody(keyspace, key, stored)
    if (body === undefined) return false
    if (keyspace === 'store') return true
    try {
      DECODERS[keyspace](body, key)
      return true
    } catch {
      return false
    }
  }

  /** The records quarantine() moved aside, oldest first (for tools and tests). */
  async *quarantined(): AsyncGenerator<QuarantinedRecord> {
    if (this.state !== 'open') throw this.stateError()
    for (const [key, value] of await this.read(() => this.sub.quarantine.iterator().all())) {
      const entry = this.check('quarantine', key, value, {}, (body) => decodeJson(body, 'quarantined record')) as {
        keyspace: string
        key: string
        time: number
        bytes: string | null
        error?: string
      }
      yield {
        keyspace: entry.keyspace,
        key: entry.key,
        time: entry.time,
        bytes: entry.bytes === null ? undefined : new Uint8Array(Buffer.from(entry.bytes, 'base64')),
        ...(entry.error === undefined ? {} : { error: entry.error }),
      }
    }
  }

  /** The decoded body of a stored record; StoreCorruptError naming it if it fails its check or does not decode. */
  private check<T>(keyspace: Keyspace, key: string, stored: Uint8Array, names: Names, decode: (body: Uint8Array) => T): T {
    const body = this.openBody(keyspace, key, stored)
    if (body === undefined) throw new StoreCorruptError({ keyspace, key, ...names }, undefined, this.location)
    try {
      return decode(body)
    } catch (err) {
      throw new StoreCorruptError(
        { keyspace, key, ...names },
        `it passed its checksum but does not decode: ${err instanceof Error ? err.message : String(err)}`,
        this.location,
      )
    }
  }

  /** A point read, checked; LevelDB reporting the record corrupt is a StoreCorruptError naming it too. */
  private get<T>(keyspace: Keyspace, key: string, names: Names, decode: (body: Uint8Array) => T, options?: object): T | undefined {
    let stored: Uint8Array | undefined
    try {
      stored = options === undefined ? this.sub[keyspace].getSync(key) : this.sub[keyspace].getSync(key, options as never)
    } catch (err) {
      if (isLevelCorruption(err)) throw recordCorruptError({ keyspace, key, ...names }, err, this.location)
      throw err
    }
    return stored === undefined ? undefined : this.check(keyspace, key, stored, names, decode)
  }

  /**
   * Runs a synchronous read if open, as read() does for async ones. Point reads are
   * synchronous (getSync): a few µs from LevelDB's caches, against ~25 µs for a round trip
   * through libuv's thread pool per get (an entity loads in ~9 µs). The cost: a
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

  /** Iterates one collection's range of a keyspace, READ_CHUNK entries per round trip. */
  private async *scan<T>(
    keyspace: Keyspace,
    collection: string,
    range: () => KeyRange | undefined,
    map: (key: string, value: Uint8Array) => T,
  ): AsyncGenerator<T> {
    if (this.state !== 'open') throw this.stateError()
    checkName('collection', collection)
    const bounds = range()
    if (bounds === undefined || this.dropping.has(collection)) return
    yield* this.chunks(this.sub[keyspace].iterator(bounds), `the ${keyspace} of collection '${collection}'`, map)
  }

  /** Reads an iterator READ_CHUNK entries per round trip, mapping each; closes it at the end. */
  private async *chunks<T>(
    iterator: { nextv(n: number): Promise<[string, Uint8Array][]>; close(): Promise<void> },
    what: string,
    map: (key: string, value: Uint8Array) => T,
  ): AsyncGenerator<T> {
    try {
      for (;;) {
        let entries: [string, Uint8Array][]
        try {
          entries = await iterator.nextv(READ_CHUNK)
        } catch (err) {
          if (isLevelCorruption(err)) throw corruptError(what, err)
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

function droppingError(collection: string): ConvergentError {
  return new ConvergentError(
    'ERR_STORE',
    `Collection '${collection}' is being dropped: writes to it are refused until the drop has finished (reopen the store to finish a drop that failed).`,
  )
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
async function writeBatch(db: AnyLevel, ops: readonly LevelOp[], options: { sync: boolean }, opOptions: typeof RAW | undefined): Promise<void> {
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
