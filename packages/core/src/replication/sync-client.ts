import { ConvergentError } from '../errors.js'
import { DEPTH, DIGEST_BYTES, DigestTree, FANOUT } from '../digest.js'
import type { CollectionState } from '../entities.js'
import { bytesEqual, toHex } from '../hash.js'
import { applyRemoteDelta } from './apply.js'
import type { ReplicationContext } from './context.js'
import { emptyVersionOf } from './empty-version.js'
import {
  decodeExchangeResponse,
  decodeLeavesResponse,
  decodeNodesResponse,
  decodeRoots,
  MAX_IDS_PER_EXCHANGE,
  MAX_LEAVES_PER_REQUEST,
  MAX_NODES_PER_REQUEST,
  type RootEntry,
} from './sync-messages.js'
import { decodeMessage, encodeMessage, MessageType, type MessageTypeValue } from './wire.js'

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
    const ours: RootEntry[] = []
    for (const col of entities.collections.values()) ours.push([col.name, col.backend.name, (await entities.tree(col)).root()])
    const theirs = decodeRoots(await this.request(peer, MessageType.RootsRequest, { r: ours }, MessageType.RootsResponse, result, signal))

    const theirRoots = new Map(theirs.map(([c, b, root]) => [c, { backend: b, root }]))
    const names = new Set([...entities.collections.keys(), ...theirRoots.keys()])
    for (const name of names) {
      signal?.throwIfAborted()
      const their = theirRoots.get(name)
      let col = entities.collections.get(name)
      const ourRoot = col === undefined ? ZERO_ROOT : (await entities.tree(col)).root()
      if (bytesEqual(ourRoot, their?.root ?? ZERO_ROOT)) continue
      if (col === undefined) {
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
      const leaves = await this.differingLeaves(peer, col, result, signal)
      const ids = await this.differingIds(peer, col, leaves, result, signal)
      result.entitiesDiffering += ids.length
      await this.exchange(peer, col, ids, result, signal)
    }
    const stats = this.ctx.stats.of(peer)
    stats.syncRounds++
    return result
  }

  /** Walks down the tree level by level, following only children whose digests differ. */
  private async differingLeaves(peer: string, col: CollectionState, result: RoundResult, signal?: AbortSignal): Promise<number[]> {
    const tree: DigestTree = await this.ctx.entities.tree(col)
    let frontier = [0]
    for (let level = 0; level < DEPTH; level++) {
      const next: number[] = []
      for (let i = 0; i < frontier.length; i += MAX_NODES_PER_REQUEST) {
        const nodes = frontier.slice(i, i + MAX_NODES_PER_REQUEST)
        const body = await this.request(peer, MessageType.NodesRequest, { c: col.name, l: level, n: nodes }, MessageType.NodesResponse, result, signal)
        const children = decodeNodesResponse(body, nodes.length)
        nodes.forEach((node, j) => {
          const mine = tree.children(level, node)
          const theirs = children[j]!
          for (let k = 0; k < FANOUT; k++) {
            const a = mine.subarray(k * DIGEST_BYTES, (k + 1) * DIGEST_BYTES)
            const b = theirs.subarray(k * DIGEST_BYTES, (k + 1) * DIGEST_BYTES)
            if (!bytesEqual(a, b)) next.push(node * FANOUT + k)
          }
        })
      }
      frontier = next
      if (frontier.length === 0) break
    }
    return frontier
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
      const outgoing: [string, Uint8Array][] = []
      for (const [id, , theirVersion] of response.e) {
        if (!requested.has(id)) continue
        const entity = await this.ctx.entities.acquire(col, id)
        try {
          if (entity.head === undefined) continue
          let delta: Uint8Array | null
          try {
            delta = backend.deltaSince(entity.doc, theirVersion ?? emptyVersionOf(backend).version)
          } catch (err) {
            this.ctx.logger.warn(`peer ${peer} sent an unusable version for '${id}': ${(err as Error).message}`)
            continue
          }
          if (delta !== null) outgoing.push([id, delta])
        } finally {
          this.ctx.entities.release(entity)
        }
      }
      await this.sendDeltas(peer, col, outgoing, result, signal)
    }
  }

  private async sendDeltas(peer: string, col: CollectionState, deltas: [string, Uint8Array][], result: RoundResult, signal?: AbortSignal): Promise<void> {
    let batch: [string, Uint8Array][] = []
    let size = 0
    const flush = async () => {
      if (batch.length === 0) return
      await this.request(peer, MessageType.DeltasRequest, { c: col.name, b: col.backend.name, e: batch }, MessageType.Ack, result, signal)
      result.deltasSent += batch.length
      batch = []
      size = 0
    }
    for (const entry of deltas) {
      const bytes = entry[1].byteLength + Buffer.byteLength(entry[0]) + 16
      if (batch.length > 0 && size + bytes > this.ctx.limits.maxChunkBytes) await flush()
      batch.push(entry)
      size += bytes
    }
    await flush()
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
      const m = (msg.body as { m?: unknown })?.m
      throw new ConvergentError('ERR_NETWORK', `peer ${peer} refused a sync request: ${typeof m === 'string' ? m : 'unknown error'}`)
    }
    if (msg.type !== expect) throw new ConvergentError('ERR_INVALID_MESSAGE', `invalid message: expected type ${expect}, got ${msg.type}`)
    return msg.body
  }
}
