import type { CollectionMeta, CorruptRecord, EntityHead, FeedEntry, Store, StoredEntity, StoreOp } from '@convergent/core'

const never = <T>(): Promise<T> => new Promise<T>(() => {})

/**
 * One live incarnation's view of a node's store, which outlives crashes (a memory-level
 * store). After crash() nothing answers — the process is gone — and close() leaves the store
 * open for the next incarnation.
 */
export class GateStore implements Store {
  private dead = false

  constructor(private readonly inner: Store) {}

  get kind(): string {
    return this.inner.kind
  }

  get stats(): Store['stats'] {
    return this.inner.stats
  }

  get damage(): Store['damage'] {
    return this.inner.damage
  }

  crash(): void {
    this.dead = true
  }

  open(): Promise<void> {
    return this.dead ? never() : this.inner.open()
  }

  async close(): Promise<void> {}

  write(ops: StoreOp[]): Promise<void> {
    return this.dead ? never() : this.inner.write(ops)
  }

  readEntity(collection: string, id: string): Promise<StoredEntity | undefined> {
    return this.dead ? never() : this.inner.readEntity(collection, id)
  }

  getHead(collection: string, id: string): Promise<EntityHead | undefined> {
    return this.dead ? never() : this.inner.getHead(collection, id)
  }

  heads(collection: string, range?: { fromLeaf: number; toLeaf: number }): AsyncIterable<[string, EntityHead]> {
    return this.inner.heads(collection, range)
  }

  leaves(collection: string): AsyncIterable<[number, Uint8Array]> {
    return this.inner.leaves(collection)
  }

  feed(collection: string, since: number): AsyncIterable<FeedEntry> {
    return this.inner.feed(collection, since)
  }

  lastSeq(collection: string): Promise<number> {
    return this.dead ? never() : this.inner.lastSeq(collection)
  }

  collections(): Promise<Map<string, CollectionMeta>> {
    return this.dead ? never() : this.inner.collections()
  }

  getMeta(key: string): Promise<Uint8Array | undefined> {
    return this.dead ? never() : this.inner.getMeta(key)
  }

  dropCollection(collection: string): Promise<void> {
    return this.dead ? never() : this.inner.dropCollection(collection)
  }

  quarantine(record: CorruptRecord): Promise<void> {
    return this.dead ? never() : this.inner.quarantine(record)
  }
}
