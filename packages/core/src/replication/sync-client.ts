import { ConvergentError } from '../errors.js'
import { DEPTH, DIGEST_BYTES, DigestTree, FANOUT, LEAF_COUNT } from '../digest.js'
import type { CollectionState } from '../entities.js'
import { bytesEqual, toHex } from '../hash.js'
import { applyRemoteDelta } from './apply.js'
import { acquireDurable, wholeStateOf } from './durable.js'
import type { ReplicationContext } from './context.js'
import { emptyVersionOf } from './empty-version.js'
import {
  advertisedRoots,
  decodeExchangeResponse,
  decodeLeavesResponse,
  decodeNodesResponse,
  decodeRangeResponse,
  decodeRoots,
  MAX_IDS_PER_EXCHANGE,
  MAX_LEAVES_PER_REQUEST,
  MAX_NODES_PER_REQUEST,
  MAX_RANGES_PER_REQUEST,
  type LeafRange,
} from './sync-messages.js'
import { decodeMessage, encodeMessage, invalid, MessageType, SyncRefusedError, type ErrorBody, type MessageTypeValue } from './wire.js'

/** What one anti-entropy round with one peer did. */
export interface RoundResult {
  peer: string
  /** Collections whose digests differed. */
  collectionsDiffering: number
  /** Entities whose versions differed. */
  entitiesDiffering: number
  deltasReceived: number
  deltasSent: number
  messages: number
  bytesSent: number
  bytesReceived: number
}

const ZERO_ROOT = new Uint8Array(DIGEST_BYTES)

/** What a descent found: leaves both sides hold and that differ, and ranges only one side holds. */
interface DescentPlan {
  leaves: number[]
  /** ranges only the peer has entities in */
  pull: LeafRange[]
  /** ranges only we have entities in */
  push: LeafRange[]
}

/** Appends a range, merging it with the last one when they touch (ranges come in ascending order). */
function addRange(ranges: LeafRange[], from: number, to: number): void {
  const last = ranges[ranges.length - 1]
  if (last !== undefined && last[1] + 1 === from) last[1] = to
  else ranges.push([from, to])
}

/** A continuation must start later than what was asked for, or skip more of the same leaf. */
function progressed(asked: { r: LeafRange[]; s: number }, next: { r: LeafRange[]; s: number }): boolean {
  const a = asked.r[0]
  const b = next.r[0]
  if (a === undefined || b === undefined) return b === undefined
  return b[0] > a[0] || (b[0] === a[0] && next.s > asked.s)
}

/** The peer does not serve range requests (an older version). */
function isUnsupportedRange(err: unknown): boolean {
  return err instanceof SyncRefusedError && err.unsupported(MessageType.RangeRequest)
}

/**
 * Batches outgoing deltas into DeltasRequests of about maxChunkBytes, keeping one request in
 * flight while the next batch is gathered.
 */
class DeltaSender {
  private batch: [string, Uint8Array][] = []
  private size = 0
  private inFlight: Promise<void> = Promise.resolve()

  constructor(
    private readonly client: SyncClient,
    private readonly peer: string,
    private readonly col: CollectionState,
    private readonly result: RoundResult,
    private readonly signal: AbortSignal | undefined,
  ) {}

  async add(id: string, delta: Uint8Array): Promise<void> {
    const bytes = delta.byteLength + Buffer.byteLength(id) + 16
    if (this.batch.length > 0 && this.size + bytes > this.client.maxChunkBytes) await this.flush()
    this.batch.push([id, delta])
    this.size += bytes
  }

  private async flush(): Promise<void> {
    const batch = this.batch
    this.batch = []
    this.size = 0
    await this.inFlight
    this.inFlight = this.client.sendDeltas(this.peer, this.col, batch, this.result, this.signal)
    this.inFlight.catch(() => undefined) // awaited later; not an unhandled rejection meanwhile
  }

  /** Sends what is left and waits for every request; rethrows the first failure. */
  async finish(): Promise<void> {
    try {
      if (this.batch.length > 0) await this.flush()
    } finally {
      await this.inFlight
    }
  }
}

/**
 * The initiator side of anti-entropy. One round with a peer: compare per-collection roots
 * (one small message when in sync); for each collection that differs, descend the 16-ary
 * digest tree only into children that differ, list the (id, version hash) of differing
 * leaves, then exchange versions of just the differing entities: the peer answers with the
 * deltas we lack and its versions, and we send the deltas it lacks — in bounded chunks.
 * d divergent entities out of n cost O(d log n) digest traffic plus the missing deltas.
 */
export class SyncClient {
  constructor(private readonly ctx: ReplicationContext) {}

  get maxChunkBytes(): number {
    return this.ctx.limits.maxChunkBytes
  }

  async round(peer: string, signal?: AbortSignal): Promise<RoundResult> {
    const result: RoundResult = {
      peer,
      collectionsDiffering: 0,
      entitiesDiffering: 0,
      deltasReceived: 0,
      deltasSent: 0,
      messages: 0,
      bytesSent: 0,
      bytesReceived: 0,
    }
    const { entities } = this.ctx
    const ours = await advertisedRoots(entities)
    const theirs = decodeRoots(await this.request(peer, MessageType.RootsRequest, { r: ours }, MessageType.RootsResponse, result, signal))

    const theirRoots = new Map(theirs.map(([c, b, root]) => [c, { backend: b, root }]))
    const names = new Set([...entities.collections.keys(), ...theirRoots.keys()])
    for (const name of names) {
      signal?.throwIfAborted()
      const their = theirRoots.get(name)
      let col = entities.collections.get(name)
      const ourRoot = col === undefined ? ZERO_ROOT : (await entities.tree(col)).root()
      const theirRoot = their?.root ?? ZERO_ROOT
      if (bytesEqual(ourRoot, theirRoot)) continue
      // No collection here, or an empty one whose backend is only a default: take the peer's.
      if (col === undefined || (col.tentative && their !== undefined && their.backend !== col.backend.name && bytesEqual(ourRoot, ZERO_ROOT))) {
        const backend = this.ctx.backends.get(their!.backend)
        if (backend === undefined) {
          this.ctx.logger.warn(`peer ${peer} has collection '${name}' with backend '${their!.backend}', which this replica does not have; skipped`)
          continue
        }
        col = this.ctx.collectionFor(name, backend)
      }
      if (their !== undefined && their.backend !== col.backend.name) {
        this.ctx.logger.warn(`collection '${name}' uses '${col.backend.name}' here but '${their.backend}' on ${peer}; not synced`)
        continue
      }
      result.collectionsDiffering++
      if (!this.legacyPeers.has(peer)) {
        try {
          await this.syncCollection(peer, col, ourRoot, theirRoot, true, result, signal)
          continue
        } catch (err) {
          if (!isUnsupportedRange(err)) throw err
          // A peer that does not serve range requests yet: the per-entity exchange works everywhere.
          this.legacyPeers.add(peer)
        }
      }
      await this.syncCollection(peer, col, ourRoot, theirRoot, false, result, signal)
    }
    const stats = this.ctx.stats.of(peer)
    stats.syncRounds++
    return result
  }

  /** Peers that answered a range request with "unexpected type": they get the per-entity exchange only. */
  private readonly legacyPeers = new Set<string>()

  /**
   * One collection whose roots differ. Subtrees only one side has anything in are moved whole:
   * pulled with range requests (no versions or ids sent first) or pushed as full deltas.
   * Subtrees both sides hold are descended, and the entities of differing leaves exchanged.
   */
  private async syncCollection(
    peer: string,
    col: CollectionState,
    ourRoot: Uint8Array,
    theirRoot: Uint8Array,
    useRanges: boolean,
    result: RoundResult,
    signal?: AbortSignal,
  ): Promise<void> {
    const all: LeafRange = [0, LEAF_COUNT - 1]
    let plan: DescentPlan
    if (useRanges && bytesEqual(ourRoot, ZERO_ROOT)) plan = { leaves: [], pull: [all], push: [] }
    else if (useRanges && bytesEqual(theirRoot, ZERO_ROOT)) plan = { leaves: [], pull: [], push: [all] }
    else plan = await this.descend(peer, col, useRanges, result, signal)
    // Pulling and pushing go to different directions of the link: run them side by side.
    const outcomes = await Promise.allSettled([
      plan.pull.length > 0 ? this.pullRanges(peer, col, plan.pull, result, signal) : undefined,
      plan.push.length > 0 ? this.pushRanges(peer, col, plan.push, result, signal) : undefined,
      (async () => {
        if (plan.leaves.length === 0) return
        const ids = await this.differingIds(peer, col, plan.leaves, result, signal)
        result.entitiesDiffering += ids.length
        await this.exchange(peer, col, ids, result, signal)
      })(),
    ])
    for (const o of outcomes) if (o.status === 'rejected') throw o.reason
  }

  /**
   * Walks down the tree level by level, following only children whose digests differ. With
   * useRanges, a child empty on one side is not descended: its leaf range is pulled or pushed.
   */
  private async descend(peer: string, col: CollectionState, useRanges: boolean, result: RoundResult, signal?: AbortSignal): Promise<DescentPlan> {
    const tree: DigestTree = await this.ctx.entities.tree(col)
    const plan: DescentPlan = { leaves: [], pull: [], push: [] }
    let frontier = [0]
    for (let level = 0; level < DEPTH && frontier.length > 0; level++) {
      const next: number[] = []
      const span = FANOUT ** (DEPTH - level - 1) // leaves under one child
      for (let i = 0; i < frontier.length; i += MAX_NODES_PER_REQUEST) {
        const nodes = frontier.slice(i, i + MAX_NODES_PER_REQUEST)
        const body = await this.request(peer, MessageType.NodesRequest, { c: col.name, l: level, n: nodes, z: true }, MessageType.NodesResponse, result, signal)
        const children = decodeNodesResponse(body, nodes.length)
        nodes.forEach((node, j) => {
          const mine = tree.children(level, node)
          const theirs = children[j]!
          for (let k = 0; k < FANOUT; k++) {
            const a = mine.subarray(k * DIGEST_BYTES, (k + 1) * DIGEST_BYTES)
            const b = theirs.subarray(k * DIGEST_BYTES, (k + 1) * DIGEST_BYTES)
            if (bytesEqual(a, b)) continue
            const child = node * FANOUT + k
            if (useRanges && bytesEqual(a, ZERO_ROOT)) addRange(plan.pull, child * span, child * span + span - 1)
            else if (useRanges && bytesEqual(b, ZERO_ROOT)) addRange(plan.push, child * span, child * span + span - 1)
            else if (level === DEPTH - 1) plan.leaves.push(child)
            else next.push(child)
          }
        })
      }
      frontier = next
    }
    return plan
  }

  /**
   * Fetches every entity of leaf ranges we hold nothing of, in bounded chunks; the next chunk
   * is requested while the previous one is being applied.
   */
  private async pullRanges(peer: string, col: CollectionState, ranges: LeafRange[], result: RoundResult, signal?: AbortSignal): Promise<void> {
    const backend = col.backend
    let applying: Promise<void> = Promise.resolve()
    try {
      for (let i = 0; i < ranges.length; i += MAX_RANGES_PER_REQUEST) {
        let next: { r: LeafRange[]; s: number } | undefined = { r: ranges.slice(i, i + MAX_RANGES_PER_REQUEST), s: 0 }
        while (next !== undefined) {
          signal?.throwIfAborted()
          const asked: { r: LeafRange[]; s: number } = next
          const body = await this.request(peer, MessageType.RangeRequest, { c: col.name, b: backend.name, r: asked.r, s: asked.s }, MessageType.RangeResponse, result, signal)
          const response = decodeRangeResponse(body)
          next = response.n
          result.entitiesDiffering += response.e.length
          if (next !== undefined && !progressed(asked, next)) throw invalid(`peer ${peer} answered a range request without progress`)
          await applying
          // Applied concurrently, so that the whole chunk lands in one group commit.
          applying = Promise.all(response.e.map(([id, delta]) => applyRemoteDelta(this.ctx, peer, col.name, backend.name, id, delta))).then((applied) => {
            result.deltasReceived += applied.length
          })
          applying.catch(() => undefined) // awaited before the next chunk and at the end
        }
      }
    } finally {
      await applying
    }
  }

  /** Sends every entity of leaf ranges the peer holds nothing of, as full deltas. */
  private async pushRanges(peer: string, col: CollectionState, ranges: LeafRange[], result: RoundResult, signal?: AbortSignal): Promise<void> {
    const sender = new DeltaSender(this, peer, col, result, signal)
    try {
      for (const [fromLeaf, toLeaf] of ranges) {
        for await (const [id] of this.ctx.entities.heads(col, { fromLeaf, toLeaf })) {
          signal?.throwIfAborted()
          const delta = await wholeStateOf(this.ctx.entities, col, id)
          if (delta === null) continue
          result.entitiesDiffering++
          await sender.add(id, delta)
        }
      }
    } finally {
      await sender.finish()
    }
  }

  /** Ids in the given leaves whose version hash differs, or that only one side has. */
  private async differingIds(peer: string, col: CollectionState, leaves: number[], result: RoundResult, signal?: AbortSignal): Promise<string[]> {
    const ids: string[] = []
    for (let i = 0; i < leaves.length; i += MAX_LEAVES_PER_REQUEST) {
      const chunk = leaves.slice(i, i + MAX_LEAVES_PER_REQUEST)
      const body = await this.request(peer, MessageType.LeavesRequest, { c: col.name, n: chunk }, MessageType.LeavesResponse, result, signal)
      const theirs = new Map(decodeLeavesResponse(body).map(([id, vh]) => [id, toHex(vh)]))
      for (const leaf of chunk) {
        for await (const [id, head] of this.ctx.entities.heads(col, { fromLeaf: leaf, toLeaf: leaf })) {
          const their = theirs.get(id)
          if (their !== toHex(head.versionHash)) ids.push(id)
          theirs.delete(id)
        }
      }
      for (const id of theirs.keys()) ids.push(id) // only they have it
    }
    return ids
  }

  /** Two-way exchange of the missing deltas of the given entities, in bounded chunks. */
  private async exchange(peer: string, col: CollectionState, ids: string[], result: RoundResult, signal?: AbortSignal): Promise<void> {
    const backend = col.backend
    const queue = [...ids]
    const sender = new DeltaSender(this, peer, col, result, signal)
    try {
      while (queue.length > 0) {
        signal?.throwIfAborted()
        const chunk = queue.splice(0, MAX_IDS_PER_EXCHANGE)
        const entries: [string, Uint8Array | null][] = []
        for (const id of chunk) {
          const entity = await this.ctx.entities.acquire(col, id)
          try {
            entries.push([id, entity.head === undefined ? null : backend.version(entity.doc)])
          } finally {
            this.ctx.entities.release(entity)
          }
        }
        const body = await this.request(peer, MessageType.ExchangeRequest, { c: col.name, b: backend.name, e: entries }, MessageType.ExchangeResponse, result, signal)
        const response = decodeExchangeResponse(body)
        const requested = new Set(chunk)
        for (const id of response.m) if (requested.has(id)) queue.push(id)

        // Apply what we lacked — concurrently, so the whole chunk shares one group commit.
        const applied = await Promise.all(
          response.e
            .filter(([id, delta]) => delta !== null && requested.has(id))
            .map(([id, delta]) => applyRemoteDelta(this.ctx, peer, col.name, backend.name, id, delta!)),
        )
        result.deltasReceived += applied.length

        // Send what they lack, given their versions.
        for (const [id, , theirVersion] of response.e) {
          if (!requested.has(id)) continue
          const entity = await acquireDurable(this.ctx.entities, col, id)
          if (entity === undefined) continue
          let delta: Uint8Array | null = null
          try {
            if (entity.head === undefined) continue
            try {
              delta = backend.deltaSince(entity.doc, theirVersion ?? emptyVersionOf(backend).version)
            } catch (err) {
              this.ctx.logger.warn(`peer ${peer} sent an unusable version for '${id}': ${(err as Error).message}`)
              continue
            }
          } finally {
            this.ctx.entities.release(entity)
          }
          if (delta !== null) await sender.add(id, delta)
        }
      }
    } finally {
      await sender.finish()
    }
  }

  /** @internal A DeltasRequest to the peer (used by DeltaSender). */
  async sendDeltas(peer: string, col: CollectionState, batch: [string, Uint8Array][], result: RoundResult, signal?: AbortSignal): Promise<void> {
    await this.request(peer, MessageType.DeltasRequest, { c: col.name, b: col.backend.name, e: batch }, MessageType.Ack, result, signal)
    result.deltasSent += batch.length
  }

  /** One request/response, with size bounds, stats and a typed error for Error replies. */
  private async request(
    peer: string,
    type: MessageTypeValue,
    body: unknown,
    expect: MessageTypeValue,
    result: RoundResult,
    signal?: AbortSignal,
  ): Promise<unknown> {
    const data = encodeMessage(type, body)
    const stats = this.ctx.stats.of(peer)
    stats.messagesOut++
    stats.bytesOut += data.byteLength
    result.messages++
    result.bytesSent += data.byteLength
    const response = await this.ctx.network.request(peer, data, { maxBytes: this.ctx.limits.maxMessageBytes, ...(signal ? { signal } : {}) })
    stats.messagesIn++
    stats.bytesIn += response.byteLength
    result.bytesReceived += response.byteLength
    const msg = decodeMessage(response, this.ctx.limits.maxMessageBytes)
    if (msg.type === MessageType.Error) {
      const body = msg.body
      throw new SyncRefusedError(peer, typeof body === 'object' && body !== null ? (body as Partial<ErrorBody>) : {})
    }
    if (msg.type !== expect) throw new ConvergentError('ERR_INVALID_MESSAGE', `invalid message: expected type ${expect}, got ${msg.type}`)
    return msg.body
  }
}
