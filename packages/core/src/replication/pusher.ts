import { codeOf } from '../logger.js'
import type { Backend } from '../backend.js'
import type { TimerHandle } from '../clock.js'
import { topicOf, type ReplicationContext } from './context.js'
import { encodePush, MAX_PUSH_ENTRIES } from './messages/index.js'
import { inlineLimit } from './parts.js'

/**
 * Push: durable local deltas are gathered for one tick — or for `delayMs` when a batching
 * window is set — coalesced per entity (the backend merges them into one delta), packed into
 * as few messages as fit under maxPushBytes and published on the collection's topic.
 * A window that gathers a full message's worth is flushed early. Publishing is best effort:
 * anti-entropy repairs loss.
 */
export class Pusher {
  private pending = new Map<string, { backend: Backend; byId: Map<string, Uint8Array[]> }>()
  private scheduled: TimerHandle | undefined
  /** Bytes of deltas gathered since the last flush (to flush early when a message is full). */
  private pendingBytes = 0
  private early = false
  private seq = 0
  private inFlight = new Set<Promise<void>>()

  constructor(
    private readonly ctx: ReplicationContext,
    /** Batching window (ms); 0 = flush on the next tick. */
    private readonly delayMs = 0,
  ) {}

  enqueue(collection: string, backend: Backend, id: string, delta: Uint8Array): void {
    let col = this.pending.get(collection)
    if (col === undefined) {
      col = { backend, byId: new Map() }
      this.pending.set(collection, col)
    }
    const list = col.byId.get(id)
    if (list === undefined) col.byId.set(id, [delta])
    else list.push(delta)
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
    if (!this.ctx.isOpen()) return
    for (const [collection, { backend, byId }] of pending) {
      const entries: [string, Uint8Array][] = []
      for (const [id, deltas] of byId) {
        entries.push([id, deltas.length === 1 ? deltas[0]! : backend.mergeDeltas(deltas)])
      }
      for (const batch of this.pack(entries)) this.send(collection, backend, batch)
    }
  }

  /** The largest push: maxPushBytes, within maxMessageBytes. */
  private get maxBytes(): number {
    return Math.min(this.ctx.limits.maxPushBytes, this.ctx.limits.maxMessageBytes)
  }

  /** Splits entries into batches whose encoded size stays under maxBytes. */
  private *pack(entries: [string, Uint8Array][]): Generator<[string, Uint8Array][]> {
    const budget = this.maxBytes - 1024 // header, collection, origin
    let batch: [string, Uint8Array][] = []
    let size = 0
    for (const entry of entries) {
      const bytes = entry[1].byteLength + Buffer.byteLength(entry[0]) + 16
      // A delta too large to go inline is left to anti-entropy, which sends it in parts.
      if (entry[1].byteLength > inlineLimit(this.ctx.limits)) continue
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

  private send(collection: string, backend: Backend, entries: [string, Uint8Array][]): void {
    const message = encodePush({ collection, backend: backend.name, origin: this.ctx.network.peerId, sequence: ++this.seq, entries })
    if (message.byteLength > this.maxBytes) {
      // One delta alone is over the limit: leave it to anti-entropy, which sends it by itself.
      this.ctx.logger.warn(`not pushing ${entries.length} delta(s) of '${collection}': ${message.byteLength} bytes is over maxPushBytes`, {
        collection,
        reason: 'tooLarge',
      })
      return
    }
    this.bytesOut += message.byteLength
    this.messagesOut++
    const p = this.ctx.network
      .publish(topicOf(this.ctx.namespace, collection), message)
      .catch((err: unknown) => {
        this.ctx.logger.warn(`push of '${collection}' failed (anti-entropy will repair it): ${(err as Error).message}`, { collection, ...codeOf(err) })
      })
      .finally(() => this.inFlight.delete(p))
    this.inFlight.add(p)
  }

  bytesOut = 0
  messagesOut = 0

  /** Waits for publishes in flight (at close). */
  async drain(): Promise<void> {
    await Promise.all([...this.inFlight])
  }
}
