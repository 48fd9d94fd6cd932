import { ConvergentError } from '../errors.js'
import { DigestTree, leafOf } from '../digest.js'
import type { CollectionState } from '../entities.js'
import { applyRemoteDelta } from './apply.js'
import { acquireDurable, wholeStateOf } from './durable.js'
import { serveRightsRequest } from './rights.js'
import type { ReplicationContext } from './context.js'
import { emptyVersionOf } from './empty-version.js'
import type { PeerRateLimiter } from './rate-limit.js'
import { admit, dropMessage } from './receiver.js'
import {
  advertisedRoots,
  decodeDeltasRequest,
  decodeExchangeRequest,
  decodeLeavesRequest,
  decodeNodesRequest,
  decodeRangeRequest,
  decodeRoots,
  type ExchangeResponse,
  type LeafRange,
  type RangeRequest,
  type RangeResponse,
  type RootEntry,
} from './sync-messages.js'
import { encodeMessage, MessageType, UnsupportedTypeError, type ErrorBody } from './wire.js'

const EMPTY_TREE = new DigestTree()

/**
 * The responder side of anti-entropy: answers digest, leaf, exchange and delta requests.
 * Malformed requests are counted and logged against the peer and answered with an Error
 * message; nothing malformed reaches the store.
 */
export class SyncServer {
  constructor(
    private readonly ctx: ReplicationContext,
    private readonly limiter: PeerRateLimiter,
    /** Called when a peer starts a round with us (its roots request arrives). */
    private readonly onRoundStarted: (peer: string) => void = () => undefined,
  ) {}

  async handle(from: string, data: Uint8Array): Promise<Uint8Array> {
    const msg = admit(this.ctx, this.limiter, from, data)
    if (msg === undefined) return this.error('request dropped (malformed, too large or over the rate bound)')
    try {
      const response = await this.dispatch(from, msg.type, msg.body)
      const stats = this.ctx.stats.of(from)
      stats.messagesOut++
      stats.bytesOut += response.byteLength
      return response
    } catch (err) {
      const message = (err as Error).message
      if (err instanceof ConvergentError && err.code === 'ERR_INVALID_MESSAGE') {
        dropMessage(this.ctx, this.ctx.stats.of(from), from, 'malformed', message)
      } else {
        this.ctx.logger.warn(`sync request from ${from} failed: ${message}`)
      }
      return this.error(message, err instanceof UnsupportedTypeError ? err.type : undefined)
    }
  }

  private error(message: string, unsupportedType?: number): Uint8Array {
    const body: ErrorBody = unsupportedType === undefined ? { m: message } : { m: message, u: unsupportedType }
    return encodeMessage(MessageType.Error, body)
  }

  private async dispatch(from: string, type: number, body: unknown): Promise<Uint8Array> {
    switch (type) {
      case MessageType.RootsRequest: {
        const theirs = decodeRoots(body)
        this.onRoundStarted(from)
        return this.roots(theirs)
      }
      case MessageType.NodesRequest: {
        const req = decodeNodesRequest(body)
        const tree = await this.treeOf(req.c)
        // Sparse for requesters that read it; dense (the original form) for older ones.
        const children = req.z === true ? { s: req.n.map((n) => tree.sparseChildren(req.l, n)) } : { d: req.n.map((n) => tree.children(req.l, n)) }
        return encodeMessage(MessageType.NodesResponse, children)
      }
      case MessageType.LeavesRequest: {
        const req = decodeLeavesRequest(body)
        const col = this.ctx.entities.collections.get(req.c)
        const e: [string, Uint8Array][] = []
        if (col !== undefined) {
          for (const leaf of req.n) {
            for await (const [id, head] of this.ctx.entities.heads(col, { fromLeaf: leaf, toLeaf: leaf })) e.push([id, head.versionHash])
          }
        }
        return encodeMessage(MessageType.LeavesResponse, { e })
      }
      case MessageType.ExchangeRequest:
        return this.exchange(from, decodeExchangeRequest(body))
      case MessageType.DeltasRequest: {
        const req = decodeDeltasRequest(body)
        const results = await Promise.all(req.e.map(([id, delta]) => applyRemoteDelta(this.ctx, from, req.c, req.b, id, delta)))
        return encodeMessage(MessageType.Ack, { n: results.filter((r) => r === 'applied').length })
      }
      case MessageType.RangeRequest:
        return this.range(from, decodeRangeRequest(body))
      case MessageType.RightsRequest:
        return serveRightsRequest(this.ctx, from, body)
      default:
        throw new UnsupportedTypeError(type)
    }
  }

  /** Our roots for every collection we have plus those the requester named. */
  private async roots(theirs: RootEntry[]): Promise<Uint8Array> {
    const r = await advertisedRoots(this.ctx.entities)
    void theirs // the requester compares; we list all of ours so it learns of collections it lacks
    return encodeMessage(MessageType.RootsResponse, { r })
  }

  private async treeOf(name: string): Promise<DigestTree> {
    const col = this.ctx.entities.collections.get(name)
    return col === undefined ? EMPTY_TREE : this.ctx.entities.tree(col)
  }

  /**
   * Every entity in the requested leaf ranges, each as one delta from the empty version, in
   * store order, until about maxChunkBytes; the rest is named in `n` for the next request.
   * The requester holds nothing there, so no versions are exchanged first.
   */
  private async range(from: string, req: RangeRequest): Promise<Uint8Array> {
    const col = this.ctx.entities.collections.get(req.c)
    const response: RangeResponse = { e: [] }
    if (col === undefined) return encodeMessage(MessageType.RangeResponse, response)
    if (col.backend.name !== req.b) {
      throw new ConvergentError('ERR_INVALID_MESSAGE', `invalid message: collection '${req.c}' uses '${col.backend.name}', not '${req.b}'`)
    }
    const budget = this.ctx.limits.maxChunkBytes
    // Room left under the message limit for one more entry (ids are bounded by maxIdBytes).
    const hardLimit = this.ctx.limits.maxMessageBytes - 1024 - this.ctx.limits.maxIdBytes
    let bytes = 0
    for (let i = 0; i < req.r.length; i++) {
      const [fromLeaf, toLeaf] = req.r[i]!
      let skip = i === 0 ? req.s : 0
      let leaf = fromLeaf
      let seenInLeaf = 0
      for await (const [id] of this.ctx.entities.heads(col, { fromLeaf, toLeaf })) {
        const at = leafOf(id)
        if (at !== leaf) {
          leaf = at
          seenInLeaf = 0
          skip = 0
        }
        if (seenInLeaf < skip) {
          seenInLeaf++
          continue
        }
        if (bytes >= budget) {
          // Full: the rest starts here.
          const rest: LeafRange[] = [[leaf, toLeaf], ...req.r.slice(i + 1)]
          response.n = { r: rest, s: seenInLeaf }
          return encodeMessage(MessageType.RangeResponse, response)
        }
        seenInLeaf++
        const delta = await wholeStateOf(this.ctx.entities, col, id)
        if (delta === null) continue
        const size = delta.byteLength + Buffer.byteLength(id) + 8
        if (bytes + size > hardLimit) {
          if (bytes === 0) {
            this.ctx.logger.warn(`not sending '${req.c}/${id}' to ${from}: its ${delta.byteLength} bytes exceed maxMessageBytes`)
            continue
          }
          seenInLeaf--
          response.n = { r: [[leaf, toLeaf], ...req.r.slice(i + 1)], s: seenInLeaf }
          return encodeMessage(MessageType.RangeResponse, response)
        }
        response.e.push([id, delta])
        bytes += size
      }
    }
    return encodeMessage(MessageType.RangeResponse, response)
  }

  /** For each id: the delta the requester lacks, and our version so it can send what we lack. */
  private async exchange(from: string, req: { c: string; b: string; e: [string, Uint8Array | null][] }): Promise<Uint8Array> {
    const col: CollectionState | undefined = this.ctx.entities.collections.get(req.c)
    const response: ExchangeResponse = { e: [], m: [] }
    if (col === undefined) {
      for (const [id] of req.e) response.e.push([id, null, null])
      return encodeMessage(MessageType.ExchangeResponse, response)
    }
    if (col.backend.name !== req.b) {
      throw new ConvergentError('ERR_INVALID_MESSAGE', `invalid message: collection '${req.c}' uses '${col.backend.name}', not '${req.b}'`)
    }
    const backend = col.backend
    let bytes = 0
    for (const [id, version] of req.e) {
      if (bytes >= this.ctx.limits.maxChunkBytes) {
        response.m.push(id)
        continue
      }
      const entity = await acquireDurable(this.ctx.entities, col, id)
      if (entity === undefined) continue // busy with local writes: the next round gets it
      try {
        if (entity.head === undefined) {
          response.e.push([id, null, null])
          continue
        }
        let delta: Uint8Array | null
        try {
          delta = backend.deltaSince(entity.doc, version ?? emptyVersionOf(backend).version)
        } catch (err) {
          dropMessage(this.ctx, this.ctx.stats.of(from), from, 'malformed', `bad version for '${id}': ${(err as Error).message}`)
          delta = null
        }
        const ours = backend.version(entity.doc)
        bytes += (delta?.byteLength ?? 0) + ours.byteLength
        response.e.push([id, delta, ours])
      } finally {
        this.ctx.entities.release(entity)
      }
    }
    return encodeMessage(MessageType.ExchangeResponse, response)
  }
}
