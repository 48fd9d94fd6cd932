import type { ChangeEvents, DurableChange } from './changes.js'
import type { CollectionState, Entities } from './entities.js'
import { ConvergentError } from './errors.js'
import { checkId, cloneJson, jsonEqual, toEntityValue, type JsonObject, type NameLimits, type ValueLimits, type JsonValue } from './json.js'
import type { FeedEntry } from './store.js'
import { writeTo } from './write.js'
import { checkWriteOptions, type AckOptions, type WriteOptions } from './write-options.js'
import { startWriteSpan, type WriteSpan } from './tracing.js'
import type { Tracer } from '@opentelemetry/api'
import { isSealed, sealedKeyId, type PersonalOptions, type SubjectKeys } from './personal/subject-keys.js'
import { checkActor, type ReadAudit, type ReadOptions, type ReadVia } from './personal/read-audit.js'
import type { PersonalReadEvent } from './observe.js'

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

/** What a Collection uses of its replica (kept narrow so the Collection stays testable). */
export interface ReplicaServices {
  entities: Entities
  /** Durable changes of this collection (local and remote) reach subscribers through it. */
  events: ChangeEvents
  limits: ValueLimits & NameLimits
  assertOpen(): void
  /** Throws ERR_FORBIDDEN unless the cluster policy lets this replica read or write the collection. */
  authorize(collection: string, what: 'read' | 'write'): void
  /** Registers an operation called while open: close() waits for it before closing the store. */
  track<T>(operation: Promise<T>): Promise<T>
  /**
   * Waits until `ack.peers` peers hold the entity at `version` durably (see replication/acks.ts);
   * undefined on a replica without a network.
   */
  waitForAcks?(col: CollectionState, id: string, version: Uint8Array, ack: AckOptions, what: string): Promise<void>
  /** Where write spans go (see tracing.ts). */
  tracer: Tracer
  /** Subject keys of personal fields (see personal/subject-keys.ts). */
  personal: SubjectKeys
  /** Where audited reads of personal fields are recorded (see personal/read-audit.ts). */
  readAudit: ReadAudit
  /** This replica's peer id ('local' without a network), for the read audit. */
  peerId: string
  now(): number
  /** Told of every read that opened personal fields (observers' personalRead); undefined while none listens. */
  personalRead?: ((event: PersonalReadEvent) => void) | undefined
  /**
   * While a peer's delta that switched this collection's default backend is judged: resolves
   * once it is taken or undone (replication/provisional.ts). Undefined otherwise.
   */
  backendSettled?(collection: string): Promise<void> | undefined
  /**
   * Before a write: a collection still only a default (opened without a backend, nothing
   * written) takes the backend the cluster policy pins it to, if that is another — a handle
   * opened before the policy came writes under the pin, as one opened after it does.
   */
  pinBackend?(collection: string): void
  /**
   * In a cluster, for a collection of counters: why a local write from `before` to `after` would
   * be refused by every peer (the counter row guard), or undefined if it passes; undefined for
   * any other collection. A write peers would refuse fails here instead (ERR_FORBIDDEN).
   */
  counterWriteRefusal?(
    collection: string,
  ):
    | ((id: string, before: JsonObject | undefined, after: JsonObject | undefined, conflicted: { before: string[]; after: string[] }) => string | undefined)
    | undefined
  /**
   * Whether a value the application gives may not hold strings of the envelope form in its
   * top-level fields (true unless a test turns it off: testing/personal.ts, a member writing
   * envelopes with its own code).
   */
  reserveSealedForm?: boolean
}

/** How a value is being read, when it goes to the application (what the read audit records). */
interface Read {
  via: ReadVia
  actor: string | undefined
}

/**
 * A named set of entities of one type, each a CRDT document of the collection's backend.
 * Writes apply locally and resolve once durable on disk; replication follows.
 */
export class Collection<T extends object = JsonObject> {
  /** Each listener with the last feed seq committed before it subscribed (see subscribe()) and its actor. */
  private readonly listeners = new Map<ChangeListener<T>, { since: number; actor: string | undefined }>()

  /** Personal fields of this collection (replica.collection(name, { personal })). */
  private personal: PersonalOptions<T> | undefined

  /** @internal — use replica.collection(name). */
  constructor(
    private readonly replica: ReplicaServices,
    private readonly state: CollectionState,
  ) {}

  /** @internal — replica.collection(name, { personal }) declares them (the last declaration counts). */
  declarePersonal(personal: PersonalOptions<T>): void {
    this.personal = personal
  }

  /**
   * The value to store: `value` with its personal fields sealed under the subject's key.
   *
   * - A replica that has not declared personal fields for this collection may not write an
   *   entity holding envelopes (even dead ones): it cannot know their subject, and would write
   *   opened or new personal values in plain (ERR_INVALID_VALUE, telling it to declare them).
   * - Personal: the declared fields, and every field stored as an envelope.
   * - A field keeps its envelope (no CRDT operation) when its value is that very envelope
   *   (update() keeps those this replica cannot open) or its plain value is unchanged, and the
   *   envelope's key is the entity's subject's; after a subject change, fields are sealed again
   *   under the new subject's key, so forget() of either subject does what it says.
   * - An envelope under a key this replica destroyed (forget()) is dead: kept, it is dropped.
   * - With an envelope this replica cannot open (its key has not arrived), the write may change
   *   neither the subject nor any personal field (ERR_INVALID_VALUE): the subject could depend
   *   on what is hidden. Declared fields still stored plain and unchanged are then left plain,
   *   as they are when the subject was forgotten (otherwise the next write seals them).
   *
   * The subject is `personal.subject(app)`: `app` is the value as the application gave it,
   * never one holding envelopes. `subjectBefore` gives the entity's subject before the write
   * (undefined if it cannot be worked out). `keyWrites` gets the write of a new subject key (it
   * must be durable before the write resolves).
   */
  private seal(
    id: string,
    value: JsonObject,
    current: JsonObject | undefined,
    keyWrites: Promise<void>[],
    app: JsonObject = value,
    subjectBefore: () => string | undefined = () => undefined,
  ): JsonObject {
    const personal = this.personal
    const keys = this.replica.personal
    // The envelope form is reserved in top-level fields: a string of that form the application
    // gives (not the very envelope stored there, which update() keeps, nor the unchanged plain
    // value of the envelope there — an earlier release sealed such strings) would be read back
    // as a sealed field — absent, or another's value.
    for (const f in this.replica.reserveSealedForm === false ? {} : value) {
      const v = value[f]
      const was = current?.[f]
      if (isSealed(v) && v !== was && !(isSealed(was) && keys.open(this.name, id, f, was, this.replica.limits) === v)) {
        throw new ConvergentError(
          'ERR_INVALID_VALUE',
          `'${f}' of '${id}' in '${this.name}' is a string of the form $sealed1.<key id>.…, which is reserved for sealed personal fields at the top level of a value.`,
        )
      }
    }
    if (personal === undefined) {
      if (current === undefined) return value
      for (const f in current) {
        if (isSealed(current[f])) {
          throw new ConvergentError(
            'ERR_INVALID_VALUE',
            `'${id}' in '${this.name}' holds personal fields: declare them on this replica (replica.collection('${this.name}', { personal: { subject, fields } })) before writing it.`,
          )
        }
      }
      return value
    }
    let subject: string | undefined // of the entity as written, worked out when first needed
    const subjectNow = (): string => (subject ??= this.subjectOf(app))
    let out: JsonObject | undefined
    const toSeal: [field: string, plain: JsonValue][] = []
    const plainUnchanged: string[] = []
    let unopenable = false
    const fields = new Set(personal.fields)
    if (current !== undefined) for (const f in current) if (isSealed(current[f])) fields.add(f)
    for (const f of fields) {
      const v = value[f]
      if (v === undefined) continue
      const was = current?.[f]
      if (!isSealed(was)) {
        if (was !== undefined && jsonEqual(was, v)) plainUnchanged.push(f)
        else toSeal.push([f, v])
        continue
      }
      const keyId = sealedKeyId(was)
      if (keys.isDead(keyId)) {
        if (v === was) delete (out ??= { ...value })[f]
        else toSeal.push([f, v])
        continue
      }
      const owner = keys.subjectOf(keyId) // undefined: its key is not held here
      if (owner === undefined) {
        if (v === was) unopenable = true
        else toSeal.push([f, v])
        continue
      }
      const opened = keys.open(this.name, id, f, was, this.replica.limits)
      const plain = v === was ? opened : v
      if (plain === undefined) {
        unopenable = true // held, yet it does not open here (damaged, or not this place's)
        continue
      }
      if (owner === subjectNow() && opened !== undefined && jsonEqual(opened, plain)) {
        if (v !== was) (out ??= { ...value })[f] = was
        continue
      }
      toSeal.push([f, plain])
    }
    if (unopenable) {
      let same: boolean
      try {
        same = subjectBefore() === subjectNow()
      } catch {
        same = false // a subject that cannot be worked out cannot be shown unchanged
      }
      if (!same || toSeal.length > 0) {
        throw new ConvergentError(
          'ERR_INVALID_VALUE',
          `'${id}' in '${this.name}' has personal fields this replica cannot open (their key has not arrived): neither its personal fields nor its subject can change here until it has. Other fields can; put() replaces the whole value.`,
        )
      }
      return out ?? value
    }
    // Declared fields still stored plain get sealed now — unless the subject was forgotten: no
    // key can be made for it, and forget() never reached a value that was never sealed.
    if (plainUnchanged.length > 0 && !keys.isForgotten(this.name, subjectNow())) for (const f of plainUnchanged) toSeal.push([f, value[f]!])
    if (toSeal.length === 0) return out ?? value
    const { key, written } = keys.keyFor(this.name, subjectNow())
    if (written !== undefined) keyWrites.push(written)
    out ??= { ...value }
    for (const [f, plain] of toSeal) out[f] = keys.seal(this.name, id, f, plain, key)
    return out
  }

  /** personal.subject of the value the application gave; ERR_INVALID_VALUE if it throws or names an envelope. */
  private subjectOf(app: JsonObject): string {
    let subject: unknown
    try {
      subject = this.personal!.subject(app as unknown as T)
    } catch (err) {
      throw new ConvergentError('ERR_INVALID_VALUE', `personal.subject of '${this.name}' threw: ${(err as Error).message}`)
    }
    if (isSealed(subject)) {
      throw new ConvergentError(
        'ERR_INVALID_VALUE',
        `personal.subject of '${this.name}' returned a sealed envelope: derive the subject from fields this replica can read.`,
      )
    }
    return subject as string // keyFor checks it is a string of the allowed size
  }

  /**
   * update()'s value to store: `result`, plus each sealed field of `raw` this replica could not
   * open (its key has not arrived; `hidden`) that `fn` did not set — the draft never showed it,
   * so its absence is not a deletion.
   */
  private keepHidden(raw: JsonObject | undefined, hidden: readonly string[], result: JsonObject): JsonObject {
    let out: JsonObject | undefined
    for (const f of hidden) {
      if (result[f] === undefined) (out ??= { ...result })[f] = raw![f]!
    }
    return out ?? result
  }

  /**
   * A stored value as the application sees it: sealed fields opened with their subject key;
   * a field whose key is not held here (forgotten, or not received yet) is left out.
   *
   * `reads` (when the value goes to the application) says who reads and how: each opened field
   * is then counted for observers (personalRead) and, if the collection audits reads, recorded
   * in the read audit — one entry per subject and reader. Values opened for internal use (put()
   * comparing envelopes, has()) pass none: nothing personal leaves the replica's code.
   */
  private open(id: string, raw: JsonObject | undefined, reads?: readonly Read[]): JsonObject | undefined {
    if (raw === undefined) return undefined
    let out: JsonObject | undefined
    const keys = this.replica.personal
    const audit = reads !== undefined && reads.length > 0 && this.personal?.auditReads === true
    const observe = reads !== undefined && reads.length > 0 ? this.replica.personalRead : undefined
    // Fields opened, by subject (only while someone records or counts them).
    let opened: Map<string, string[]> | undefined
    let count = 0
    for (const f in raw) {
      const v = raw[f]
      if (!isSealed(v)) continue
      out ??= { ...raw }
      const plain = keys.open(this.name, id, f, v, this.replica.limits)
      if (plain === undefined) {
        delete out[f]
        continue
      }
      out[f] = plain
      count++
      if (audit) {
        const subject = keys.subjectOf(sealedKeyId(v))
        if (subject === undefined) continue
        opened ??= new Map()
        const fields = opened.get(subject)
        if (fields === undefined) opened.set(subject, [f])
        else fields.push(f)
      }
    }
    if (count > 0 && reads !== undefined) {
      if (observe !== undefined) observe({ collection: this.name, id, via: reads[0]!.via, fields: count, audited: audit })
      if (opened !== undefined) {
        const time = this.replica.now()
        for (const [subject, fields] of opened) {
          fields.sort()
          for (const { via, actor } of reads) {
            this.replica.readAudit.record({
              time,
              collection: this.name,
              id,
              subject,
              fields,
              via,
              peer: this.replica.peerId,
              ...(actor === undefined ? {} : { actor }),
            })
          }
        }
      }
    }
    return out ?? raw
  }

  get name(): string {
    return this.state.name
  }

  /** The backend this collection's entities use: 'yjs' or 'automerge'. */
  get backend(): string {
    return this.state.backend.name
  }

  /**
   * Writes the entity's whole value. Only fields that differ from the current value become
   * CRDT operations, so concurrent writes of different fields merge. Resolves once durable —
   * and with `ack: { peers, timeoutMs }`, once that many peers confirm they hold the change
   * durably too (ERR_ACK_TIMEOUT if they do not in time; the local write stands either way).
   */
  async put(id: string, value: T, options?: WriteOptions): Promise<void> {
    this.assertUsable('write')
    checkId(id, 'id', this.replica.limits)
    const { ack } = this.checkOptions(options, 'put')
    const plain = toEntityValue(value, this.replica.limits)
    const keyWrites: Promise<void>[] = []
    const version = await this.replica.track(
      this.write(
        id,
        (doc) => {
          const current = this.state.backend.read(doc) ?? undefined
          const before = (): string | undefined => {
            const opened = this.open(id, current)
            return opened === undefined ? undefined : this.subjectOf(opened)
          }
          const stored = this.seal(id, plain, current, keyWrites, plain, before)
          return this.state.backend.put(doc, stored)
        },
        'put',
        ack !== undefined,
      ),
    )
    await Promise.all(keyWrites)
    if (ack !== undefined) await this.waitForAcks(id, version!, ack, 'put')
  }

  /**
   * Read-modify-write: `fn` gets a plain mutable copy of the current value (a draft); its
   * mutations — or the value it returns — become the new value, as minimal CRDT operations.
   * Rejects with ERR_NOT_FOUND if the entity does not exist — unless `upsert` is set, then
   * the draft of a missing entity is {}. Resolves with the new value once durable.
   * `fn` must be synchronous: the read and the write are atomic. `ack` as for put(). The draft
   * is a read of the personal fields it holds: `actor` names the reader for the read audit.
   */
  async update(id: string, fn: (draft: T) => T | void, options: { upsert?: boolean } & WriteOptions & ReadOptions = {}): Promise<T> {
    this.assertUsable('write')
    checkId(id, 'id', this.replica.limits)
    if (typeof fn !== 'function') throw new ConvergentError('ERR_INVALID_ARGUMENT', 'update(id, fn) needs a function.')
    const { ack } = this.checkOptions(options, 'update')
    const actor = checkActor(options, `update('${this.name}')`)
    let result: JsonObject | undefined
    const keyWrites: Promise<void>[] = []
    const version = await this.replica.track(
      this.write(
        id,
        (doc) => {
          const raw = this.state.backend.read(doc) ?? undefined
          const current = this.open(id, raw, [{ via: 'update', actor }]) ?? (options.upsert ? {} : undefined)
          if (current === undefined) {
            throw new ConvergentError('ERR_NOT_FOUND', `No entity '${id}' in '${this.name}' to update; create it with put().`)
          }
          // The stored value as it was: fn may mutate the draft, which is `raw` itself when no field
          // is sealed (nested values too), and seal() compares the new value with the stored one.
          const stored = this.personal !== undefined && raw !== undefined ? cloneJson(raw) : raw
          const hidden = raw === undefined ? [] : Object.keys(raw).filter((f) => isSealed(raw[f]) && !(f in current))
          // The subject before fn changes the draft (only needed when some field is hidden).
          let before: string | undefined
          if (hidden.length > 0 && this.personal !== undefined) {
            try {
              before = this.subjectOf(current)
            } catch {
              before = undefined
            }
          }
          const returned = fn(current as unknown as T)
          if (typeof returned === 'object' && returned !== null && typeof (returned as { then?: unknown }).then === 'function') {
            throw new ConvergentError('ERR_INVALID_ARGUMENT', 'update(id, fn): fn must be synchronous (it returned a promise).')
          }
          result = toEntityValue(returned === undefined ? current : returned, this.replica.limits)
          return this.state.backend.put(
            doc,
            this.seal(id, this.keepHidden(stored, hidden, result), stored, keyWrites, result, () => before),
          )
        },
        'put',
        ack !== undefined,
      ),
    )
    await Promise.all(keyWrites)
    if (ack !== undefined) await this.waitForAcks(id, version!, ack, 'update')
    return result as unknown as T
  }

  /**
   * Deletes the entity (a delete wins over concurrent updates). Resolves once durable; `ack`
   * as for put() (peers confirm they hold the delete).
   */
  async delete(id: string, options?: WriteOptions): Promise<void> {
    this.assertUsable('write')
    checkId(id, 'id', this.replica.limits)
    const { ack } = this.checkOptions(options, 'delete')
    const version = await this.replica.track(this.write(id, (doc) => this.state.backend.delete(doc), 'delete', ack !== undefined))
    if (ack !== undefined) await this.waitForAcks(id, version!, ack, 'delete')
  }

  /** Checks write options before anything is written; an ack needs a network to ask peers on. */
  private checkOptions(options: unknown, method: string): WriteOptions {
    const checked = checkWriteOptions(options, `${method}('${this.name}')`)
    if (checked.ack !== undefined && this.replica.waitForAcks === undefined) {
      throw new ConvergentError(
        'ERR_INVALID_ARGUMENT',
        `${method}(…, { ack }): this replica has no network, so no peer can confirm; omit ack or open it with one.`,
      )
    }
    return checked
  }

  private waitForAcks(id: string, version: Uint8Array, ack: AckOptions, method: string): Promise<void> {
    return this.replica.waitForAcks!(this.state, id, version, ack, `${method} of '${this.name}/${id}'`)
  }

  /**
   * The current value (a plain copy), or undefined if absent or deleted. `actor` names the
   * reader for the read audit (see PersonalOptions.auditReads).
   */
  async get(id: string, options?: ReadOptions): Promise<T | undefined> {
    this.assertUsable()
    checkId(id, 'id', this.replica.limits)
    const actor = checkActor(options, `get('${this.name}')`)
    return this.replica.track(this.read(id, { via: 'get', actor }))
  }

  private async read(id: string, read: Read | undefined): Promise<T | undefined> {
    const { entities } = this.replica
    const entity = await entities.acquire(this.state, id)
    try {
      const raw = this.state.backend.read(entity.doc) ?? undefined
      // has() hands no value out: nothing to open.
      return (read === undefined ? raw : this.open(id, raw, [read])) as T | undefined
    } finally {
      entities.release(entity)
    }
  }

  /** Whether the entity exists (not a read of its personal fields: none is opened). */
  async has(id: string): Promise<boolean> {
    this.assertUsable()
    checkId(id, 'id', this.replica.limits)
    return (await this.replica.track(this.read(id, undefined))) !== undefined
  }

  /**
   * Ids of live (not deleted) entities, in storage order — as get() sees them: an entity whose
   * latest change is still being written shows as get() shows it.
   */
  async *keys(): AsyncGenerator<string> {
    this.assertUsable()
    yield* this.replica.entities.liveIds(this.state)
  }

  /**
   * [id, value] of every live entity. Loads documents one at a time: memory stays bounded.
   * Each value is a read for the read audit (`actor` as for get()).
   */
  async *entries(options?: ReadOptions): AsyncGenerator<[string, T]> {
    const actor = checkActor(options, `entries('${this.name}')`)
    for await (const id of this.keys()) {
      this.assertUsable()
      const value = await this.replica.track(this.read(id, { via: 'entries', actor }))
      if (value !== undefined) yield [id, value]
    }
  }

  /**
   * Calls `listener` after every change committed from now on (local ones once durable,
   * remote ones once persisted), in commit order. Returns a function that unsubscribes.
   * Each event's value is a read for the read audit, by `actor` (one entry per event and actor).
   */
  subscribe(listener: ChangeListener<T>, options?: ReadOptions): () => void {
    const actor = checkActor(options, `subscribe('${this.name}')`)
    // Changes committed before this call are not told to it, even if they become durable
    // later: their value was read (or not) when they were made.
    this.listeners.set(listener, { since: this.state.seq, actor })
    this.unlisten ??= this.replica.events.onCollection(this.name, (change) => this.tell(change))
    return () => {
      this.listeners.delete(listener)
      if (this.listeners.size === 0) {
        this.unlisten?.()
        this.unlisten = undefined
      }
    }
  }

  /** Stops listening to the replica's changes while no one subscribes (no values are read then). */
  private unlisten: (() => void) | undefined

  /**
   * The change feed: every change applied to this collection, local and remote, in commit
   * order, with seq > since. Resumable: keep the last seq you processed and pass it back.
   * Each entry names its `author`: this replica's peer id for a local write, the signer of a
   * signed push (then `proof` names the stored signature), the author whose signed heads vouched
   * for a change anti-entropy brought (Automerge in a cluster, when heads of one author cover all
   * of it; then `proof` is `h:<actor>[,<actor>…]`, its heads), or else the peer that sent it —
   * which vouched for it, or, when `proof` names heads of several authors (a change of up to 5
   * actors, to a late joiner), relayed what they signed: `author` is then not who wrote it.
   */
  changes(options: { since?: number } = {}): AsyncIterable<ChangeEntry> {
    this.assertUsable()
    return withAuthors(this.replica.entities.feed(this.state, options.since ?? 0), this.replica.peerId)
  }

  /**
   * Tells subscribers of a durable change, in commit order, with the value the entity had
   * right after that change. Not the latest value: a later change may still be in the write
   * queue, and a crash would lose it — an event must never show what a restart could take back.
   */
  private tell(change: DurableChange): void {
    if (change.value === undefined) return // made before anyone subscribed
    // Who the value goes to: one read per actor among the listeners it is told to.
    const reads: Read[] = []
    for (const { since, actor } of this.listeners.values()) {
      if (change.entry.seq > since && !reads.some((r) => r.actor === actor)) reads.push({ via: 'subscribe', actor })
    }
    if (reads.length === 0) return
    const event: ChangeEvent<T> = {
      collection: this.name,
      id: change.id,
      value: this.open(change.id, change.value.value, reads) as T | undefined,
      origin: change.peer === undefined ? 'local' : 'remote',
      seq: change.entry.seq,
      ...(change.peer === undefined ? {} : { peer: change.peer }),
    }
    for (const [listener, { since }] of this.listeners) {
      if (change.entry.seq <= since) continue
      try {
        listener(event)
      } catch (err) {
        this.replica.events.listenerFailed(err) // reported; the writer and the other listeners go on
      }
    }
  }

  /** Throws ERR_CLOSED once the replica is closing or this collection was dropped. */
  private assertUsable(what: 'read' | 'write' = 'read'): void {
    this.replica.assertOpen()
    this.replica.authorize(this.state.name, what)
    if (this.state.dropped === true) {
      throw new ConvergentError('ERR_CLOSED', `Collection '${this.name}' was dropped; open it again with replica.collection('${this.name}').`)
    }
  }

  /**
   * Commits one change and resolves once durable — with the entity's version right after it
   * when `wantVersion` (what an ack waits for peers to hold), taken in the same synchronous
   * step: a Yjs document changes in place, so a later write would be in it otherwise.
   */
  private async write(
    id: string,
    change: (doc: unknown) => { doc: unknown; delta: Uint8Array | null },
    kind: 'put' | 'delete',
    wantVersion = false,
  ): Promise<Uint8Array | undefined> {
    const span = startWriteSpan(this.replica.tracer, this.name, id, kind)
    try {
      return await this.writeOnce(id, change, kind, span, wantVersion)
    } catch (err) {
      span?.fail(err)
      throw err
    } finally {
      span?.release() // the pusher may still hold it until the delta is published
    }
  }

  private async writeOnce(
    id: string,
    change: (doc: unknown) => { doc: unknown; delta: Uint8Array | null },
    kind: 'put' | 'delete',
    span: WriteSpan | undefined,
    wantVersion: boolean,
  ): Promise<Uint8Array | undefined> {
    // (Not assertOpen: close() waits for writes called before it; see Replica.close.)
    // A write never takes a backend a peer's delta switched to and that is then switched back:
    // it waits for the delta's verdict — also when the switch came while it made its entity (the
    // first write loads the collection's digest tree: a store read), which it then makes again.
    let entity
    for (;;) {
      const switching = this.replica.backendSettled?.(this.name)
      if (switching !== undefined) await switching
      this.replica.pinBackend?.(this.name)
      entity = await this.replica.entities.acquire(this.state, id)
      if (entity.backend === this.state.backend && this.replica.backendSettled?.(this.name) === undefined) break
      this.replica.entities.release(entity)
    }
    const lastWrite = entity.lastWrite
    let version: Uint8Array | undefined
    const refusal = this.replica.counterWriteRefusal?.(this.name)
    const pending = writeTo(this.replica.entities, this.replica.events, this.state, entity, undefined, (e) => {
      const backend = this.state.backend
      const before = refusal === undefined ? undefined : backend.read(e.doc)
      const conflictedBefore = refusal === undefined ? [] : (backend.conflictedKeys?.(e.doc) ?? [])
      const result = change(e.doc)
      if (wantVersion) version = backend.version(result.doc)
      if (result.delta === null) return 'unchanged'
      if (refusal !== undefined) {
        const why = refusal(id, before, kind === 'delete' ? undefined : backend.read(result.doc), {
          before: conflictedBefore,
          after: backend.conflictedKeys?.(result.doc) ?? [],
        })
        if (why !== undefined) {
          this.replica.entities.discard(this.state, e) // the change was made on the document: gone with it
          throw new ConvergentError(
            'ERR_FORBIDDEN',
            `${why}: every peer would refuse this write, so it is not made. Write counters through replica.counter('${this.name}').`,
          )
        }
      }
      return { kind, doc: result.doc, delta: result.delta, deleted: kind === 'delete' }
    })
    if (pending !== 'unchanged') {
      const entry = await pending.committed
      span?.event('durable')
      pending.finish(entry, span === undefined ? undefined : { span })
      return version
    }
    span?.event('unchanged')
    // Nothing changed — but an earlier write of the same value may still be in flight:
    // acknowledge only once that one is durable, and fail if it failed.
    if (!(await lastWrite)) {
      throw new ConvergentError(
        'ERR_STORE',
        `An earlier write of '${id}' in '${this.name}' failed, so this one (the same value) is not durable either. Try again.`,
      )
    }
    return version
  }
}

/** A change-feed entry as `changes()` yields it: with its author (see Collection.changes). */
export type ChangeEntry = FeedEntry & { author: string }

async function* withAuthors(feed: AsyncIterable<FeedEntry>, self: string): AsyncIterable<ChangeEntry> {
  for await (const entry of feed) yield { ...entry, author: entry.origin === 'local' ? self : entry.origin }
}
