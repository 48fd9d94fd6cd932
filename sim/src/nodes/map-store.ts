import {
  ConvergentError,
  StoreCorruptError,
  leafOf,
  type CollectionMeta,
  type CorruptRecord,
  type EntityHead,
  type FeedEntry,
  type Store,
  type StoredEntity,
  type StoreOp,
} from '@convergent/core'

/** What a MapStore holds; a new MapStore over the same data is a "reopen". */
export interface MapStoreData {
  collections: Map<string, CollectionMeta>
  meta: Map<string, Uint8Array>
  byCollection: Map<string, CollectionData>
}

interface CollectionData {
  /** leaf → id → head */
  heads: Map<number, Map<string, EntityHead>>
  /** Leaves that hold heads, ascending. */
  headLeaves: number[]
  snapshots: Map<string, Uint8Array>
  deltas: Map<string, Map<number, Uint8Array>>
  leaves: Map<number, Uint8Array>
  /** Ascending by seq. */
  feed: FeedEntry[]
}

export function emptyMapStoreData(): MapStoreData {
  return { collections: new Map(), meta: new Map(), byCollection: new Map() }
}

/**
 * A Store in plain JavaScript maps, for very large simulations where memory-level's encoding
 * and batching would dominate. It keeps core's Store contract (it runs core's store compliance
 * suite): a write's ops apply atomically and in order, bytes are copied in and out, reads see
 * every resolved write, and a closed store rejects with ERR_CLOSED. Writes apply at once
 * (there is no disk), so there is no group commit and no `stats`.
 */
export class MapStore implements Store {
  readonly kind = 'map'
  private state: 'new' | 'open' | 'closed' = 'new'

  constructor(readonly data: MapStoreData = emptyMapStoreData()) {}

  async open(): Promise<void> {
    if (this.state === 'closed') throw closed()
    this.state = 'open'
  }

  async close(): Promise<void> {
    this.state = 'closed'
  }

  write(ops: StoreOp[]): Promise<void> {
    if (this.state !== 'open') return Promise.reject(this.state === 'closed' ? closed() : notOpen())
    for (const op of ops) this.apply(op)
    return Promise.resolve()
  }

  private apply(op: StoreOp): void {
    const d = this.data
    switch (op.type) {
      case 'meta':
        d.meta.set(op.key, op.bytes.slice())
        return
      case 'delMeta':
        d.meta.delete(op.key)
        return
      case 'collection':
        d.collections.set(op.collection, { ...op.meta })
        return
      case 'head': {
        const c = this.col(op.collection)
        const leaf = leafOf(op.id)
        let ids = c.heads.get(leaf)
        if (ids === undefined) {
          c.heads.set(leaf, (ids = new Map<string, EntityHead>()))
          insertSorted(c.headLeaves, leaf)
        }
        ids.set(op.id, copyHead(op.head))
        return
      }
      case 'snapshot':
        this.col(op.collection).snapshots.set(op.id, op.bytes.slice())
        return
      case 'delta': {
        const c = this.col(op.collection)
        let list = c.deltas.get(op.id)
        if (list === undefined) c.deltas.set(op.id, (list = new Map<number, Uint8Array>()))
        list.set(op.index, op.bytes.slice())
        return
      }
      case 'delDelta':
        this.col(op.collection).deltas.get(op.id)?.delete(op.index)
        return
      case 'delEntity': {
        const c = this.col(op.collection)
        const leaf = leafOf(op.id)
        const ids = c.heads.get(leaf)
        ids?.delete(op.id)
        if (ids !== undefined && ids.size === 0) {
          c.heads.delete(leaf)
          c.headLeaves.splice(lowerBoundNumber(c.headLeaves, leaf), 1)
        }
        c.snapshots.delete(op.id)
        return
      }
      case 'leaf': {
        const c = this.col(op.collection)
        if (op.bytes.every((b) => b === 0)) c.leaves.delete(op.leaf)
        else c.leaves.set(op.leaf, op.bytes.slice())
        return
      }
      case 'feed': {
        const feed = this.col(op.collection).feed
        const entry = { ...op.entry }
        if (feed.length === 0 || feed[feed.length - 1]!.seq < entry.seq) feed.push(entry)
        else {
          const i = lowerBound(feed, entry.seq)
          if (feed[i]?.seq === entry.seq) feed[i] = entry
          else feed.splice(i, 0, entry)
        }
        return
      }
    }
  }

  async readEntity(collection: string, id: string): Promise<StoredEntity | undefined> {
    this.assertOpen()
    const c = this.data.byCollection.get(collection)
    const head = c?.heads.get(leafOf(id))?.get(id)
    if (c === undefined || head === undefined) return undefined
    const list = c.deltas.get(id)
    const deltas: Uint8Array[] = []
    for (let i = 0; i < head.deltaCount; i++) {
      const delta = list?.get(i)
      if (delta === undefined)
        throw new StoreCorruptError(
          { keyspace: 'deltas', key: `${collection}\u0000${id}\u0000${i}`, collection, id },
          `delta ${i} is missing though its head counts ${head.deltaCount}`,
        )
      deltas.push(delta.slice())
    }
    return { head: copyHead(head), snapshot: c.snapshots.get(id)?.slice(), deltas }
  }

  async getHead(collection: string, id: string): Promise<EntityHead | undefined> {
    this.assertOpen()
    const head = this.data.byCollection.get(collection)?.heads.get(leafOf(id))?.get(id)
    return head === undefined ? undefined : copyHead(head)
  }

  async *heads(collection: string, range?: { fromLeaf: number; toLeaf: number }): AsyncIterable<[string, EntityHead]> {
    this.assertOpen()
    const c = this.data.byCollection.get(collection)
    if (c === undefined) return
    const from = range?.fromLeaf ?? 0
    const to = range?.toLeaf ?? Infinity
    const rows: [string, EntityHead][] = []
    for (let i = lowerBoundNumber(c.headLeaves, from); i < c.headLeaves.length && c.headLeaves[i]! <= to; i++) {
      for (const [id, head] of c.heads.get(c.headLeaves[i]!)!) rows.push([id, copyHead(head)])
    }
    yield* rows
  }

  async *leaves(collection: string): AsyncIterable<[number, Uint8Array]> {
    this.assertOpen()
    const c = this.data.byCollection.get(collection)
    if (c === undefined) return
    const rows = [...c.leaves].sort((a, b) => a[0] - b[0]).map(([l, b]): [number, Uint8Array] => [l, b.slice()])
    yield* rows
  }

  async *feed(collection: string, since: number): AsyncIterable<FeedEntry> {
    this.assertOpen()
    const feed = this.data.byCollection.get(collection)?.feed
    if (feed === undefined) return
    const rows = feed.slice(lowerBound(feed, since + 1)).map((e) => ({ ...e }))
    yield* rows
  }

  async lastSeq(collection: string): Promise<number> {
    this.assertOpen()
    return this.data.byCollection.get(collection)?.feed.at(-1)?.seq ?? 0
  }

  async collections(): Promise<Map<string, CollectionMeta>> {
    this.assertOpen()
    return new Map([...this.data.collections].map(([k, v]) => [k, { ...v }]))
  }

  async getMeta(key: string): Promise<Uint8Array | undefined> {
    this.assertOpen()
    return this.data.meta.get(key)?.slice()
  }

  async *metas(prefix: string): AsyncGenerator<[string, Uint8Array]> {
    this.assertOpen()
    const keys = [...this.data.meta.keys()].filter((k) => k.startsWith(prefix)).sort()
    for (const k of keys) {
      const v = this.data.meta.get(k)
      if (v !== undefined) yield [k, v.slice()]
    }
  }

  async dropCollection(collection: string): Promise<void> {
    this.assertOpen()
    this.data.collections.delete(collection)
    this.data.byCollection.delete(collection)
  }

  /** Maps hold what was written: nothing here fails a check, so there is nothing to move aside. */
  async quarantine(_record: CorruptRecord): Promise<void> {
    this.assertOpen()
  }

  private col(name: string): CollectionData {
    let c = this.data.byCollection.get(name)
    if (c === undefined) {
      c = { heads: new Map(), headLeaves: [], snapshots: new Map(), deltas: new Map(), leaves: new Map(), feed: [] }
      this.data.byCollection.set(name, c)
    }
    return c
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw this.state === 'closed' ? closed() : notOpen()
  }
}

function copyHead(h: EntityHead): EntityHead {
  return {
    backend: h.backend,
    versionHash: h.versionHash.slice(),
    deltaCount: h.deltaCount,
    deleted: h.deleted,
    ...(h.hasSnapshot === true ? { hasSnapshot: true } : {}),
  }
}

function closed(): ConvergentError {
  return new ConvergentError('ERR_CLOSED', 'the store is closed')
}

function notOpen(): ConvergentError {
  return new ConvergentError('ERR_CLOSED', 'the store is not open; call open() first')
}

/** First index whose seq is ≥ seq. */
function lowerBound(feed: FeedEntry[], seq: number): number {
  let lo = 0
  let hi = feed.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (feed[mid]!.seq < seq) lo = mid + 1
    else hi = mid
  }
  return lo
}

function lowerBoundNumber(list: number[], v: number): number {
  let lo = 0
  let hi = list.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (list[mid]! < v) lo = mid + 1
    else hi = mid
  }
  return lo
}

function insertSorted(list: number[], v: number): void {
  list.splice(lowerBoundNumber(list, v), 0, v)
}
