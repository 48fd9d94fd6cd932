import type { CollectionState, Entities } from './entities.js'
import { ConvergentError } from './errors.js'
import { checkId, toEntityValue, type JsonObject, type NameLimits, type ValueLimits } from './json.js'
import type { FeedEntry } from './store.js'

/** What subscribe() listeners receive for every applied change, local or remote. */
export interface ChangeEvent<T> {
  collection: string
  id: string
  /** The entity's value after the change (a plain copy); undefined when deleted. */
  value: T | undefined
  origin: 'local' | 'remote'
  /** For remote changes: the peer that sent it. */
  peer?: string
  /** The change's sequence number in this collection's change feed. */
  seq: number
}

export type ChangeListener<T> = (event: ChangeEvent<T>) => void

/** What a Collection needs from its replica (kept narrow so the Collection stays testable). */
export interface CollectionContext {
  entities: Entities
  limits: ValueLimits & NameLimits
  assertOpen(): void
  /** Registers an operation called while open: close() waits for it before closing the store. */
  track<T>(operation: Promise<T>): Promise<T>
  /**
   * Hands a durable local delta to replication; `created` when this write created the
   * collection here (peers are told of it: they subscribe and sync).
   */
  published(collection: string, id: string, delta: Uint8Array, created: boolean): void
  /** Reports a listener that threw (never breaks the writer). */
  listenerFailed(err: unknown): void
  store: { feed(collection: string, since: number): AsyncIterable<FeedEntry> }
}

/**
 * A named set of entities of one type, each a CRDT document of the collection's backend.
 * Writes apply locally and resolve once durable on disk; replication follows.
 */
export class Collection<T extends object = JsonObject> {
  /** Each listener with the last feed seq committed before it subscribed (see subscribe()). */
  private readonly listeners = new Map<ChangeListener<T>, number>()

  /** @internal — use replica.collection(name). */
  constructor(
    private readonly ctx: CollectionContext,
    private readonly state: CollectionState,
  ) {}

  get name(): string {
    return this.state.name
  }

  /** The backend this collection's entities use: 'yjs' or 'automerge'. */
  get backend(): string {
    return this.state.backend.name
  }

  /**
   * Writes the entity's whole value. Only fields that differ from the current value become
   * CRDT operations, so concurrent writes of different fields merge. Resolves once durable.
   */
  async put(id: string, value: T): Promise<void> {
    this.assertUsable()
    checkId(id, 'id', this.ctx.limits)
    const plain = toEntityValue(value, this.ctx.limits)
    await this.ctx.track(this.write(id, (doc) => this.state.backend.put(doc, plain), 'put'))
  }

  /**
   * Read-modify-write: `fn` gets a plain mutable copy of the current value (a draft); its
   * mutations — or the value it returns — become the new value, as minimal CRDT operations.
   * Rejects with ERR_NOT_FOUND if the entity does not exist — unless `upsert` is set, then
   * the draft of a missing entity is {}. Resolves with the new value once durable.
   * `fn` must be synchronous: the read and the write are atomic.
   */
  async update(id: string, fn: (draft: T) => T | void, options: { upsert?: boolean } = {}): Promise<T> {
    this.assertUsable()
    checkId(id, 'id', this.ctx.limits)
    if (typeof fn !== 'function') throw new ConvergentError('ERR_INVALID_ARGUMENT', 'update(id, fn) needs a function.')
    let result: JsonObject | undefined
    await this.ctx.track(this.write(
      id,
      (doc) => {
        const current = this.state.backend.read(doc) ?? (options.upsert ? {} : undefined)
        if (current === undefined) {
          throw new ConvergentError('ERR_NOT_FOUND', `No entity '${id}' in '${this.name}' to update; create it with put().`)
        }
        const returned = fn(current as unknown as T)
        if (typeof returned === 'object' && returned !== null && typeof (returned as { then?: unknown }).then === 'function') {
          throw new ConvergentError('ERR_INVALID_ARGUMENT', 'update(id, fn): fn must be synchronous (it returned a promise).')
        }
        result = toEntityValue(returned === undefined ? current : returned, this.ctx.limits)
        return this.state.backend.put(doc, result)
      },
      'put',
    ))
    return result as unknown as T
  }

  /** Deletes the entity (a delete wins over concurrent updates). Resolves once durable. */
  async delete(id: string): Promise<void> {
    this.assertUsable()
    checkId(id, 'id', this.ctx.limits)
    await this.ctx.track(this.write(id, (doc) => this.state.backend.delete(doc), 'delete'))
  }

  /** The current value (a plain copy), or undefined if absent or deleted. */
  async get(id: string): Promise<T | undefined> {
    this.assertUsable()
    checkId(id, 'id', this.ctx.limits)
    return this.ctx.track(this.read(id))
  }

  private async read(id: string): Promise<T | undefined> {
    const { entities } = this.ctx
    const entity = await entities.acquire(this.state, id)
    try {
      return this.state.backend.read(entity.doc) as T | undefined
    } finally {
      entities.release(entity)
    }
  }

  async has(id: string): Promise<boolean> {
    return (await this.get(id)) !== undefined
  }

  /**
   * Ids of live (not deleted) entities, in storage order — as get() sees them: an entity whose
   * latest change is still being written shows as get() shows it.
   */
  async *keys(): AsyncGenerator<string> {
    this.assertUsable()
    yield* this.ctx.entities.liveIds(this.state)
  }

  /** [id, value] of every live entity. Loads documents one at a time: memory stays bounded. */
  async *entries(): AsyncGenerator<[string, T]> {
    for await (const id of this.keys()) {
      const value = await this.get(id)
      if (value !== undefined) yield [id, value]
    }
  }

  /**
   * Calls `listener` after every change committed from now on (local ones once durable,
   * remote ones once persisted), in commit order. Returns a function that unsubscribes.
   */
  subscribe(listener: ChangeListener<T>): () => void {
    // Changes committed before this call are not told to it, even if they become durable
    // later: their value was read (or not) when they were made.
    this.listeners.set(listener, this.state.seq)
    return () => {
      this.listeners.delete(listener)
    }
  }

  /**
   * The change feed: every change applied to this collection, local and remote, in commit
   * order, with seq > since. Resumable: keep the last seq you processed and pass it back.
   */
  changes(options: { since?: number } = {}): AsyncIterable<FeedEntry> {
    this.assertUsable()
    return this.ctx.entities.feed(this.state, options.since ?? 0)
  }

  /**
   * @internal — called once a change is durable (local) or persisted (remote), in commit
   * order, with the value the entity had right after that change. Not the latest value: a
   * later change may still be in the write queue, and a crash would lose it — an event must
   * never show what a restart could take back.
   */
  emit(entry: FeedEntry, value: JsonObject | undefined, peer?: string): void {
    if (this.listeners.size === 0) return
    const event: ChangeEvent<T> = {
      collection: this.name,
      id: entry.id,
      value: value as T | undefined,
      origin: peer === undefined ? 'local' : 'remote',
      seq: entry.seq,
      ...(peer === undefined ? {} : { peer }),
    }
    for (const [l, since] of this.listeners) {
      if (entry.seq <= since) continue
      try {
        l(event)
      } catch (err) {
        this.ctx.listenerFailed(err)
      }
    }
  }

  /** Throws ERR_CLOSED once the replica is closing or this collection was dropped. */
  private assertUsable(): void {
    this.ctx.assertOpen()
    if (this.state.dropped === true) {
      throw new ConvergentError('ERR_CLOSED', `Collection '${this.name}' was dropped; open it again with replica.collection('${this.name}').`)
    }
  }

  private async write(id: string, change: (doc: unknown) => { doc: unknown; delta: Uint8Array | null }, kind: 'put' | 'delete'): Promise<void> {
    const { entities } = this.ctx
    const entity = await entities.acquire(this.state, id)
    let outcome:
      | { committed: Promise<FeedEntry>; delta: Uint8Array; value: { value: JsonObject | undefined } | undefined; created: boolean }
      | { unchangedAfter: Promise<boolean> }
    try {
      // (Not assertOpen: close() waits for writes called before it; see Replica.close.)
      const result = change(entity.doc)
      if (result.delta === null) {
        // Nothing changed — but an earlier write of the same value may still be in flight:
        // acknowledge only once that one is durable, and fail if it failed.
        outcome = { unchangedAfter: entity.lastWrite }
      } else {
        const deleted = kind === 'delete'
        // Read now, for subscribers (see emit()); a Yjs document changes in place.
        const value = this.listeners.size > 0 ? { value: deleted ? undefined : this.state.backend.read(result.doc) } : undefined
        const created = !this.state.persisted
        const committed = entities.commit(this.state, entity, result.doc, result.delta, kind, 'local', deleted)
        outcome = { committed, delta: result.delta, value, created }
      }
    } finally {
      entities.release(entity)
    }
    if ('unchangedAfter' in outcome) {
      if (await outcome.unchangedAfter) return
      throw new ConvergentError('ERR_STORE', `An earlier write of '${id}' in '${this.name}' failed, so this one (the same value) is not durable either. Try again.`)
    }
    const entry = await outcome.committed
    this.ctx.published(this.name, id, outcome.delta, outcome.created)
    // Told to those subscribed when the change was made (a later subscriber would need a value
    // read now, which may hold changes that are not durable yet).
    if (outcome.value !== undefined) this.emit(entry, outcome.value.value)
  }
}
