import { codeOf } from '../logger.js'
import type { Backend } from '../backend.js'
import type { TimerHandle } from '../clock.js'
import { topicOf, type ReplicationContext } from './context.js'
import { encodePush, MAX_PUSH_ENTRIES, signPush, type PushHeads } from './messages/index.js'
import { actorOwnedBy } from '../trust/actor-binding.js'
import { MAX_LEAVES, unsignedKey, type HeadLeaf } from '../trust/signed-heads.js'
import { inlineLimit } from './parts.js'
import type { WriteSpan } from '../tracing.js'

/** One entity's durable local deltas waiting to be pushed. */
interface Waiting {
  deltas: Uint8Array[]
  /** Commit time of the first of them (clock ms): a push carries its oldest, for replication lag. */
  time: number
  /** Spans of the traced writes among them, held until published. */
  spans: WriteSpan[] | undefined
  /** Their change-feed sequence numbers (their heads' markers: signed-heads.ts). */
  seqs: number[]
}

/** One entity in a push: its deltas merged into one. */
interface Outgoing {
  id: string
  delta: Uint8Array
  /** The deltas merged, each one local change (their actors: see signedHeads). */
  parts: Uint8Array[]
  time: number
  spans: WriteSpan[] | undefined
  /** The trace a run before an entity's last goes in (the last holds the spans: see runsOf). */
  traceparent?: string
  seqs: number[]
}

/**
 * Push: durable local deltas are gathered for one tick — or for `delayMs` when a batching
 * window is set — coalesced per entity (the backend merges them into one delta), packed into
 * as few messages as fit under maxPushBytes and published on the collection's topic.
 * A window that gathers a full message's worth is flushed early. Publishing is best effort:
 * anti-entropy repairs loss. Each push carries the commit time of its oldest change (replication
 * lag is measured from it) and the trace context of its first traced write.
 */
export class Pusher {
  private pending = new Map<string, { backend: Backend; byId: Map<string, Waiting>; publish: boolean }>()
  private scheduled: TimerHandle | undefined
  /** Bytes of deltas gathered since the last flush (to flush early when a message is full). */
  private pendingBytes = 0
  private early = false
  private seq = 0
  private inFlight = new Set<Promise<void>>()
  /** Settles once the last push made so far is encoded (signed): publishes keep the order pushes were made in. */
  private lastMade: Promise<void> = Promise.resolve()

  constructor(
    private readonly ctx: ReplicationContext,
    /** Batching window (ms); 0 = flush on the next tick. */
    private readonly delayMs = 0,
  ) {}

  /**
   * A durable local delta, committed at `time` (clock ms); the pusher holds `span` until it is
   * published. `publish` false: a collection not every member may read — nothing is gossiped,
   * but its heads are signed and stored all the same (anti-entropy relays them).
   */
  enqueue(collection: string, backend: Backend, id: string, delta: Uint8Array, time: number, seq: number, span?: WriteSpan, publish = true): void {
    let col = this.pending.get(collection)
    if (col === undefined) {
      col = { backend, byId: new Map(), publish }
      this.pending.set(collection, col)
    }
    col.publish &&= publish
    let waiting = col.byId.get(id)
    if (waiting === undefined) col.byId.set(id, (waiting = { deltas: [delta], time, spans: undefined, seqs: [seq] }))
    else {
      waiting.deltas.push(delta)
      waiting.seqs.push(seq)
    }
    if (span !== undefined) {
      span.hold()
      ;(waiting.spans ??= []).push(span)
    }
    this.pendingBytes += delta.byteLength + Buffer.byteLength(id) + 16
    if (this.scheduled === undefined) {
      this.schedule(this.delayMs)
    } else if (this.delayMs > 0 && !this.early && this.pendingBytes >= this.maxBytes / 2) {
      // The window already holds a message's worth: no point in waiting longer.
      this.ctx.clock.clearTimeout(this.scheduled)
      this.schedule(0)
      this.early = true
    }
  }

  private schedule(ms: number): void {
    this.scheduled = this.ctx.clock.setTimeout(() => {
      this.scheduled = undefined
      this.flush()
    }, ms)
  }

  /** Publishes everything gathered so far. */
  flush(): void {
    if (this.scheduled !== undefined) this.ctx.clock.clearTimeout(this.scheduled)
    this.scheduled = undefined
    this.early = false
    this.pendingBytes = 0
    const pending = this.pending
    this.pending = new Map()
    if (!this.ctx.isOpen()) {
      for (const { byId } of pending.values()) for (const w of byId.values()) release(w.spans, 'not pushed: the replica closed')
      return
    }
    for (const [collection, { backend, byId, publish }] of pending) {
      // Wave k holds the k-th run of each entity's deltas (runsOf): one entity's runs go out in
      // successive pushes, in the order they were written.
      const waves: Outgoing[][] = []
      for (const [id, waiting] of byId) this.runsOf(backend, id, waiting, publish).forEach((run, k) => (waves[k] ??= []).push(run))
      for (const entries of waves) {
        if (!publish) {
          this.signHeadsOnly(collection, backend, entries)
          continue
        }
        const unpushed: Outgoing[] = []
        for (const batch of this.pack(entries, unpushed)) this.send(collection, backend, batch)
        if (unpushed.length > 0) this.signHeadsOnly(collection, backend, unpushed)
      }
    }
  }

  /**
   * An entity's gathered deltas merged into one — or, where that one would be too large to go
   * inline (a hot entity's writes gathered over a tick or a batching window), into runs of
   * consecutive deltas that each fit, pushed one after another. Merged whole, they would all be
   * left to anti-entropy: a receiver would wait up to a sync interval for writes that each fit
   * in a push. A single delta over the limit is still left to anti-entropy (pack). In a cluster,
   * runs also end where the entity's actor changes (actorsOf). Not `split` (a collection not
   * gossiped: only its heads are signed): merged whole, whatever its size.
   */
  private runsOf(backend: Backend, id: string, { deltas, time, spans, seqs }: Waiting, split: boolean): Outgoing[] {
    const merged = deltas.length === 1 ? deltas[0]! : backend.mergeDeltas(deltas)
    const limit = inlineLimit(this.ctx.limits)
    const actors = split ? this.actorsOf(backend, deltas) : undefined
    if (!split || deltas.length === 1 || (merged.byteLength <= limit && actors === undefined)) return [{ id, delta: merged, parts: deltas, time, spans, seqs }]
    const runs: Outgoing[] = []
    let start = 0
    let bytes = 0
    const close = (end: number): void => {
      const parts = deltas.slice(start, end)
      runs.push({ id, delta: parts.length === 1 ? parts[0]! : backend.mergeDeltas(parts), parts, time, spans: undefined, seqs: seqs.slice(start, end) })
      start = end
      bytes = 0
    }
    for (let i = 0; i < deltas.length; i++) {
      // The sum of the parts' sizes: about what they merge to (a merge drops little).
      if (i > start && (bytes + deltas[i]!.byteLength > limit || (actors !== undefined && actors[i] !== actors[i - 1]))) close(i)
      bytes += deltas[i]!.byteLength
    }
    close(deltas.length)
    // The spans are held until the last run is published (it carries the newest write). The runs
    // before it carry the trace of the entity's first traced write, so that their apply spans on
    // receivers are children of a write too, not roots of traces of their own.
    runs[runs.length - 1]!.spans = spans
    const traceparent = spans?.map((span) => span.traceparent()).find((t) => t !== undefined)
    if (traceparent !== undefined) for (const run of runs.slice(0, -1)) run.traceparent = traceparent
    return runs
  }

  /**
   * Each delta's actor, where a cluster signs heads and they are not all one (an entity reloaded
   * between its writes under a new actor: Entities.newActor); else undefined. A push carries one
   * head per entity, for its newest change's actor: merged with changes of an earlier actor, those
   * would be signed apart and left to anti-entropy (signedHeads), every receiver answering the push
   * 'later'. So runs end where the actor changes, and each carries its own actor's head.
   */
  private actorsOf(backend: Backend, deltas: readonly Uint8Array[]): string[] | undefined {
    const history = backend.history
    if (history === undefined || this.ctx.heads === undefined || !this.ctx.access.signsWrites || deltas.length < 2) return undefined
    if (history.lastChange(deltas[0]!).actor === history.lastChange(deltas.at(-1)!).actor) return undefined
    return deltas.map((delta) => history.lastChange(delta).actor)
  }

  /** The largest push: maxPushBytes, within maxMessageBytes. */
  private get maxBytes(): number {
    return Math.min(this.ctx.limits.maxPushBytes, this.ctx.limits.maxMessageBytes)
  }

  /** Splits entries into batches whose encoded size stays under maxBytes. */
  private *pack(entries: Outgoing[], unpushed: Outgoing[]): Generator<Outgoing[]> {
    const budget = this.maxBytes - 1024 // header, collection, origin, time, traceparent, signature
    let batch: Outgoing[] = []
    let size = 0
    for (const entry of entries) {
      const bytes = entry.delta.byteLength + Buffer.byteLength(entry.id) + PER_ENTRY_BYTES
      // A delta too large to go inline is left to anti-entropy, which sends it in parts.
      if (entry.delta.byteLength > inlineLimit(this.ctx.limits)) {
        release(entry.spans, 'not pushed: too large, left to anti-entropy')
        unpushed.push({ ...entry, spans: undefined })
        continue
      }
      if (batch.length > 0 && (size + bytes > budget || batch.length >= MAX_PUSH_ENTRIES)) {
        yield batch
        batch = []
        size = 0
      }
      batch.push(entry)
      size += bytes
    }
    if (batch.length > 0) yield batch
  }

  private send(collection: string, backend: Backend, batch: Outgoing[]): void {
    let time = Infinity
    let traceparent: string | undefined
    const spans: WriteSpan[] = []
    for (const entry of batch) {
      time = Math.min(time, entry.time)
      traceparent ??= entry.traceparent
      if (entry.spans === undefined) continue
      spans.push(...entry.spans)
      for (const span of entry.spans) traceparent ??= span.traceparent()
    }
    const entries = batch.map((e): [string, Uint8Array] => [e.id, e.delta])
    const push = { collection, backend: backend.name, origin: this.ctx.network.peerId, sequence: ++this.seq, entries, time }
    // In a cluster the push is signed by this replica (one signature for the whole push), and
    // so are its heads (one more). Pushes are signed one after another and published in the
    // order they were made.
    const made = this.ctx.access.signsWrites
      ? this.signedHeads(collection, backend, batch).then((heads) =>
          signPush(this.ctx.namespace, { ...push, ...(traceparent !== undefined ? { traceparent } : {}) }, (data) => this.ctx.access.signOwn(data), heads),
        )
      : Promise.resolve(encodePush({ ...push, ...(traceparent !== undefined ? { traceparent } : {}) }))
    // Handled now (the catch below reports it): `made` may reject before the pushes ahead of it
    // are signed, and a rejection with no handler yet is an unhandled one, fatal to Node.
    made.catch(() => undefined)
    const ordered = this.lastMade.then(() => made)
    this.lastMade = ordered.then(
      () => undefined,
      () => undefined,
    )
    const p = ordered
      .then((message) => this.publish(collection, message, entries.length, spans))
      .catch((err: unknown) => {
        release(spans, 'not pushed: signing failed (anti-entropy repairs it)')
        this.ctx.logger.warn(`push of '${collection}' not signed (anti-entropy will repair it): ${(err as Error).message}`, { collection, ...codeOf(err) })
      })
      .finally(() => this.inFlight.delete(p))
    this.inFlight.add(p)
  }

  /**
   * This replica's heads of a batch's entities, signed and stored (heads.ts): one leaf per
   * entity, for the actor of its latest change. Undefined for a backend without a history.
   */
  private async signedHeads(collection: string, backend: Backend, batch: readonly Outgoing[]): Promise<PushHeads | undefined> {
    const heads = this.ctx.heads
    if (heads === undefined || backend.history === undefined) return undefined
    const history = backend.history
    const own = (leaf: HeadLeaf): boolean => actorOwnedBy(leaf.actor, this.ctx.network.peerId)
    // One leaf per entity: its newest change's actor. An entity reloaded between two of its writes
    // in this batch (a new actor per load) also has changes of an earlier actor: those heads are
    // signed apart (stored, not carried: receivers of the push wait for anti-entropy for them).
    const earlier: HeadLeaf[] = []
    const leaves: (HeadLeaf | null)[] = batch.map(({ id, delta, parts }) => {
      const last: HeadLeaf = { id, ...history.lastChange(delta) }
      if (parts.length > 1 && history.lastChange(parts[0]!).actor !== last.actor) {
        const newest = new Map<string, HeadLeaf>()
        for (const part of parts) newest.set(history.lastChange(part).actor, { id, ...history.lastChange(part) })
        newest.delete(last.actor)
        earlier.push(...[...newest.values()].filter(own))
      }
      return own(last) ? last : null
    })
    const present = leaves.filter((l): l is HeadLeaf => l !== null)
    const done = batch.flatMap(({ seqs }) => seqs.map((seq) => unsignedKey(collection, seq)))
    // Their markers stay if this fails (the batch's are deleted only with the push's heads below).
    for (let i = 0; i < earlier.length; i += MAX_LEAVES) await (await heads.signOwn(collection, earlier.slice(i, i + MAX_LEAVES))).stored
    if (present.length === 0) return undefined
    const signed = await heads.signOwn(collection, present, done)
    let next = 0
    return { statement: signed.statement, signature: signed.signature, leaves: leaves.map((l) => (l === null ? null : signed.leaves[next++]!)) }
  }

  /** A collection that is not gossiped: its heads are signed and stored all the same. */
  private signHeadsOnly(collection: string, backend: Backend, entries: Outgoing[]): void {
    for (const entry of entries) release(entry.spans, 'not pushed: not every member may read the collection, or too large')
    if (!this.ctx.access.signsWrites) return
    for (let i = 0; i < entries.length; i += MAX_PUSH_ENTRIES) {
      const p = this.signedHeads(collection, backend, entries.slice(i, i + MAX_PUSH_ENTRIES))
        .then(() => undefined)
        .catch((err: unknown) => {
          this.ctx.logger.warn(`heads of '${collection}' not signed (they are signed when the entities are next served): ${(err as Error).message}`, {
            collection,
            ...codeOf(err),
          })
        })
        .finally(() => this.inFlight.delete(p))
      this.inFlight.add(p)
    }
  }

  private async publish(collection: string, message: Uint8Array, count: number, spans: WriteSpan[]): Promise<void> {
    if (message.byteLength > this.maxBytes) {
      // One delta alone is over the limit: leave it to anti-entropy, which sends it by itself.
      this.ctx.logger.warn(`not pushing ${count} delta(s) of '${collection}': ${message.byteLength} bytes is over maxPushBytes`, {
        collection,
        reason: 'tooLarge',
      })
      release(spans, 'not pushed: too large, left to anti-entropy')
      return
    }
    if (!this.ctx.isOpen()) return release(spans, 'not pushed: the replica closed')
    this.bytesOut += message.byteLength
    this.messagesOut++
    try {
      await this.ctx.network.publish(topicOf(this.ctx.namespace, collection), message)
      release(spans, 'published')
    } catch (err) {
      release(spans, 'push failed (anti-entropy repairs it)')
      this.ctx.logger.warn(`push of '${collection}' failed (anti-entropy will repair it): ${(err as Error).message}`, { collection, ...codeOf(err) })
    }
  }

  bytesOut = 0
  messagesOut = 0

  /** Waits for publishes in flight (at close). */
  async drain(): Promise<void> {
    await Promise.all([...this.inFlight])
  }
}

/** What an entry costs in a push besides its delta and id: CBOR framing, and in a signed push its delta's hash (32 bytes). */
const PER_ENTRY_BYTES = 56

function release(spans: readonly WriteSpan[] | undefined, event: string): void {
  if (spans !== undefined) for (const span of spans) span.release(event)
}
