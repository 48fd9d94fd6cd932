import { codeOf } from '../logger.js'
import { ConvergentError } from '../errors.js'
import { bytesEqual } from '../hash.js'
import { DigestTree, leafOf } from '../digest.js'
import type { CollectionState } from '../entities.js'
import { applyAll } from './apply-all.js'
import { applyRemoteDelta } from './apply.js'
import { acquireDurable, stillDurable, wholeStateOf } from './durable.js'
import { headed, headsFor, withHeads, withHeadsLength } from './heads.js'
import { packHeads, TableSizer, type OutgoingHead } from './messages/head-table.js'
import { serveRightsRequest } from './rights.js'
import { serveHoldsRequest } from './holds.js'
import { servePolicyOffer } from './policy-exchange.js'
import { keysDiffer, serveKeysOffer, serveKeysRequest } from './key-exchange.js'
import type { ReplicationContext } from './context.js'
import { emptyVersionOf } from '../empty-version.js'
import {
  decodeDeltasRequest,
  decodeExchangeRequest,
  decodeFetchRequest,
  decodeLeavesRequest,
  decodeNodesRequest,
  decodeRangeRequest,
  decodeRootsRequest,
  decodeUploadRequest,
  encodeAck,
  encodeErrorReply,
  encodeExchangeResponse,
  encodeFetchResponse,
  encodeLeavesResponse,
  encodeNodesResponse,
  encodeRangeResponse,
  encodeRootsResponse,
  FEATURE_HEADS,
  FEATURE_HEAD_TABLES,
  FEATURE_PARTS,
  MAX_LEAVES_ENTRIES,
  MAX_RANGE_ENTRIES,
  MAX_REFUSED_NAMES,
  MAX_ROOTS_PER_PAGE,
  MessageType,
  REFUSAL_CODES,
  UnsupportedTypeError,
  type DeltaSlot,
  type RefusalCode,
  type ExchangeRequest,
  type ExchangeResponse,
  type LeavesRequest,
  type RangeRequest,
  type RangeResponse,
  type RootsRequest,
} from './messages/index.js'
import { inlineLimit, Outbox, partBytes, Uploads } from './parts.js'
import type { PeerRateLimiter } from './rate-limit.js'
import { admitOrWhy, drop } from './receiver.js'
import type { DropReason } from './peer-stats.js'

const EMPTY_TREE = new DigestTree()

/**
 * The responder side of anti-entropy: answers digest, leaf, exchange and delta requests (and
 * rights and write-acknowledgement queries, which share the protocol).
 * Malformed requests are counted and logged against the peer and answered with an Error
 * message; nothing malformed reaches the store.
 */
export class SyncServer {
  private readonly outbox: Outbox
  private readonly uploads: Uploads

  constructor(
    private readonly ctx: ReplicationContext,
    private readonly limiter: PeerRateLimiter,
    /** Called when a peer starts a round with us (its first roots request arrives). */
    private readonly onRoundStarted: (peer: string) => void = () => undefined,
    /** Called when a peer's round finds both sides equal at once (its roots summary matches ours). */
    private readonly onInSync: (peer: string) => void = () => undefined,
  ) {
    const budget = Math.max(ctx.limits.maxPartsBytes, ctx.limits.maxDeltaBytes)
    this.outbox = new Outbox(ctx.clock, budget)
    this.uploads = new Uploads(ctx.clock, budget)
    // A ticket or an upload was allowed by the policy it began under: a new one decides again
    // (the peers ask for what they still may in their next round).
    ctx.access.onChange(() => {
      this.outbox.forgetAll()
      this.uploads.endAll()
    })
  }

  /** Drops what is kept for a peer that went away. */
  forget(peer: string): void {
    this.outbox.forget(peer)
    this.uploads.end(peer)
  }

  async handle(from: string, data: Uint8Array): Promise<Uint8Array> {
    const msg = admitOrWhy(this.ctx, this.limiter, from, data)
    if ('dropped' in msg) return this.error('request dropped (malformed, too large or over the rate bound)', refusalOfDrop(msg.dropped))
    try {
      const response = await this.dispatch(from, msg.type, msg.body)
      const stats = this.ctx.stats.of(from)
      stats.messagesOut++
      stats.bytesOut += response.byteLength
      return response
    } catch (err) {
      const message = (err as Error).message
      if (err instanceof OverEntryRateError) {
        drop(this.ctx, from, 'rateLimited', message)
      } else if (err instanceof ConvergentError && err.code === 'ERR_INVALID_MESSAGE') {
        drop(this.ctx, from, 'malformed', message)
      } else if (err instanceof ConvergentError && err.code === 'ERR_FORBIDDEN') {
        drop(this.ctx, from, 'forbidden', message)
      } else if (err instanceof ConvergentError && err.code === 'ERR_TOO_LARGE') {
        drop(this.ctx, from, 'tooLarge', message)
      } else {
        // Through the drop log: a peer sending failing requests gets a few lines, not one each.
        this.ctx.dropLog.log(from, `sync request from ${from} failed: ${message}`, { peer: from, ...codeOf(err) })
      }
      const code = refusalOfError(err)
      // The responder's own failure (its store, a bug) is logged here; the peer learns only that
      // it failed: a store's error can name files and paths of this machine.
      const told = code === 'failed' && isOwnFailure(err) ? FAILED_MESSAGE : message
      return this.error(told, code, err instanceof UnsupportedTypeError ? err.type : undefined)
    }
  }

  /** Read control: a peer without read on a collection learns nothing of it (ERR_FORBIDDEN reply). */
  private assertReads(from: string, collection: string): void {
    if (!this.ctx.access.mayRead(from, collection)) throw forbidden(`the cluster policy does not let ${from} read '${collection}'`)
  }

  private error(message: string, code: RefusalCode, unsupportedType?: number): Uint8Array {
    return encodeErrorReply(unsupportedType === undefined ? { message, code } : { message, code, unsupportedType })
  }

  private async dispatch(from: string, type: number, body: unknown): Promise<Uint8Array> {
    // Before any policy, a peer may offer the first one; after, members only (a removed member
    // learns nothing more, not even the policy).
    if (type === MessageType.PolicyOffer && (!this.ctx.access.hasPolicy || this.ctx.access.isMember(from))) {
      return servePolicyOffer(this.ctx, from, body)
    }
    if (!this.ctx.access.isMember(from)) throw forbidden(`${from} is not a member of this cluster`)
    switch (type) {
      case MessageType.RootsRequest: {
        const req = decodeRootsRequest(body)
        if (req.cursor === undefined) this.onRoundStarted(from)
        return this.roots(from, req)
      }
      case MessageType.NodesRequest: {
        const req = decodeNodesRequest(body)
        this.assertReads(from, req.collection)
        const tree = await this.treeOf(req.collection)
        // Sparse for requesters that read it; dense (the original form) for older ones.
        return encodeNodesResponse(
          req.sparse ? { sparse: req.nodes.map((n) => tree.sparseChildren(req.level, n)) } : { dense: req.nodes.map((n) => tree.children(req.level, n)) },
        )
      }
      case MessageType.LeavesRequest: {
        const req = decodeLeavesRequest(body)
        this.assertReads(from, req.collection)
        return this.leaves(req)
      }
      case MessageType.ExchangeRequest: {
        const req = decodeExchangeRequest(body)
        this.assertReads(from, req.collection)
        return this.exchange(from, req)
      }
      case MessageType.DeltasRequest: {
        // Charged to the entry rate (a head its table rebuilds counts as an entry) before any is rebuilt.
        const req = decodeDeltasRequest(body, (entries) => {
          if (!this.limiter.takeEntries(from, entries)) throw new OverEntryRateError()
        })
        const results = await applyAll(this.ctx, from, req.collection, req.backend, req.entries)
        return encodeAck(results.filter((r) => r === 'applied').length)
      }
      case MessageType.UploadRequest: {
        const req = decodeUploadRequest(body, this.ctx.limits.maxDeltaBytes)
        const whole = this.uploads.add(from, req)
        if (whole === 'more') return encodeAck(0)
        const result = await applyRemoteDelta(this.ctx, from, req.collection, req.backend, req.id, whole)
        return encodeAck(result === 'applied' ? 1 : 0)
      }
      case MessageType.FetchRequest: {
        const req = decodeFetchRequest(body)
        const part = this.outbox.read(from, req.ticket, req.offset, partBytes(this.ctx.limits))
        if (part === undefined) throw new ConvergentError('ERR_NETWORK', 'unknown or expired ticket; the entity is sent again in a later round')
        return encodeFetchResponse(part)
      }
      case MessageType.RangeRequest: {
        const req = decodeRangeRequest(body)
        this.assertReads(from, req.collection)
        return this.range(from, req)
      }
      case MessageType.RightsRequest:
        return serveRightsRequest(this.ctx, from, body)
      case MessageType.KeysRequest:
        if (!this.limiter.takeEntries(from, 1)) throw new OverEntryRateError()
        return serveKeysRequest(this.ctx, from, body)
      case MessageType.KeysOffer:
        if (!this.limiter.takeEntries(from, 1)) throw new OverEntryRateError()
        return serveKeysOffer(this.ctx, from, body)
      case MessageType.HoldsRequest:
        if (!this.limiter.takeEntries(from, 1)) throw new OverEntryRateError()
        return serveHoldsRequest(this.ctx, from, body)
      default:
        throw new UnsupportedTypeError(type)
    }
  }

  /** What this responder speaks: parts, and headed deltas in a cluster. */
  private get features(): number {
    return FEATURE_PARTS | (this.ctx.heads !== undefined ? FEATURE_HEADS | FEATURE_HEAD_TABLES : 0)
  }

  /**
   * A page of our roots. A requester that reads pages (`k`) and whose summary equals ours
   * learns that in one message; one that does not gets every root at once (older ones).
   */
  private async roots(from: string, req: RootsRequest & { paged: boolean }): Promise<Uint8Array> {
    if (req.heads === true) this.ctx.heads?.markReader(from, req.headTables === true)
    else this.ctx.heads?.unmarkReader(from)
    // The summary covers every collection: it answers "equal" only to a peer that may read them all.
    const readsAll = !this.ctx.access.hasPolicy || [...this.ctx.entities.collections.keys()].every((c) => this.ctx.access.mayRead(from, c))
    const summary = readsAll && req.paged && req.cursor === undefined && req.summary !== undefined ? await this.ctx.entities.rootsSummary() : undefined
    if (summary !== undefined && bytesEqual(req.summary!, summary)) {
      this.onInSync(from)
      return encodeRootsResponse({ roots: [], same: true, features: this.features, keysDiffer: keysDiffer(this.ctx, from, req.keys) })
    }
    // A peer that may not read every collection gets the ones it may read in one answer: a page's
    // cursor is a collection name, which would tell it of collections it may not read.
    const page = await this.ctx.entities.rootsPage(
      readsAll ? req.cursor : undefined,
      req.paged && readsAll ? Math.min(this.ctx.limits.rootsPerPage, MAX_ROOTS_PER_PAGE) : Infinity,
    )
    if (!readsAll) page.next = undefined
    const refused = req.cursor === undefined ? [...this.ctx.refused].filter((name) => this.ctx.access.mayRead(from, name)).slice(0, MAX_REFUSED_NAMES) : []
    const roots = readsAll ? page.roots : page.roots.filter(([name]) => this.ctx.access.mayRead(from, name))
    return encodeRootsResponse({
      roots,
      features: this.features,
      refused,
      keysDiffer: keysDiffer(this.ctx, from, req.keys),
      ...(req.paged && page.next !== undefined ? { next: page.next } : {}),
    })
  }

  private async treeOf(name: string): Promise<DigestTree> {
    const col = this.ctx.entities.collections.get(name)
    return col === undefined ? EMPTY_TREE : this.ctx.entities.tree(col)
  }

  /** [id, versionHash] of every entity in the requested leaves, up to MAX_LEAVES_ENTRIES; the rest named in `m`. */
  private async leaves(req: LeavesRequest): Promise<Uint8Array> {
    const col = this.ctx.entities.collections.get(req.collection)
    const e: [string, Uint8Array][] = []
    if (col === undefined) return encodeLeavesResponse({ entries: e })
    for (let i = 0; i < req.leaves.length; i++) {
      const leaf = req.leaves[i]!
      const start = e.length
      for await (const [id, head] of this.ctx.entities.heads(col, { fromLeaf: leaf, toLeaf: leaf })) {
        e.push([id, head.versionHash])
        if (e.length > MAX_LEAVES_ENTRIES) break
      }
      if (e.length > MAX_LEAVES_ENTRIES) {
        // This leaf did not fit: it and the rest are asked for again (a leaf alone always fits
        // unless it holds more than the cap, then only its first entries are compared).
        if (start > 0) {
          e.length = start
          return encodeLeavesResponse({ entries: e, more: req.leaves.slice(i) })
        }
        e.length = MAX_LEAVES_ENTRIES
        return encodeLeavesResponse({ entries: e, ...(i + 1 < req.leaves.length ? { more: req.leaves.slice(i + 1) } : {}) })
      }
    }
    return encodeLeavesResponse({ entries: e })
  }

  /**
   * A delta as it goes into a response: inline up to the inline limit; larger ones as a
   * ticket for a requester that fetches parts. 'later' when the outbox has no room now (every
   * ticket in it is being downloaded: a later request gets it); null when it cannot be sent to
   * this requester at all (over maxDeltaBytes, or too large for one that takes no parts).
   */
  private slot(from: string, id: string, collection: string, delta: Uint8Array, parts: boolean): DeltaSlot | null | 'later' {
    if (delta.byteLength <= inlineLimit(this.ctx.limits)) return delta
    if (parts && delta.byteLength <= this.ctx.limits.maxDeltaBytes) return this.outbox.put(from, delta) ?? 'later'
    if (!parts && delta.byteLength <= this.ctx.limits.maxMessageBytes - 64 * 1024) return delta // an older requester
    if (delta.byteLength > this.ctx.limits.maxDeltaBytes) this.ctx.entities.sizes?.tooLargeToSend(collection, id, delta.byteLength)
    this.ctx.logger.warn(
      `not sending '${collection}/${id}' to ${from}: its ${delta.byteLength} bytes do not fit (maxDeltaBytes ${this.ctx.limits.maxDeltaBytes}${parts ? '' : '; the peer takes no parts'})`,
      { peer: from, collection, entity: id, reason: 'tooLarge' },
    )
    return null
  }

  /**
   * Every entity in the requested leaf ranges, each as one delta from the empty version, in
   * store order, until about maxChunkBytes or MAX_RANGE_ENTRIES; the rest is named in `n`
   * for the next request. The requester holds nothing there, so no versions are exchanged first.
   */
  private async range(from: string, req: RangeRequest): Promise<Uint8Array> {
    const col = this.ctx.entities.collections.get(req.collection)
    if (col === undefined) return encodeRangeResponse({ entries: [] })
    if (col.backend.name !== req.backend) {
      throw new ConvergentError('ERR_INVALID_MESSAGE', `invalid message: collection '${req.collection}' uses '${col.backend.name}', not '${req.backend}'`)
    }
    const budget = this.ctx.limits.maxChunkBytes
    let bytes = 0
    // To a peer that reads head tables, inline entries go bare and their heads in the table.
    const tables = this.ctx.heads?.readsHeadTables(from) === true
    const entries: [string, DeltaSlot, OutgoingHead[]][] = []
    const sizer = new TableSizer()
    const answer = (next?: RangeResponse['next']): Uint8Array => {
      const packed = packHeads(entries)
      return encodeRangeResponse({ entries: packed.entries, table: packed.table, ...(next !== undefined ? { next } : {}) })
    }
    for (let i = 0; i < req.ranges.length; i++) {
      const [fromLeaf, toLeaf] = req.ranges[i]!
      let skip = i === 0 ? req.skip : 0
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
        if (bytes >= budget || entries.length >= MAX_RANGE_ENTRIES) {
          // Full: the rest starts here.
          return answer({ ranges: [[leaf, toLeaf], ...req.ranges.slice(i + 1)], skip: seenInLeaf })
        }
        const whole = await wholeStateOf(this.ctx.entities, col, id, this.ctx.limits.maxDeltaBytes)
        const heads = whole === null ? [] : await headsFor(this.ctx, col, id, whole, from, 'whole')
        // Inline with its heads in the table: bare (not headed here only to be taken apart again).
        if (tables && heads.length > 0 && withHeadsLength(whole!, heads) <= inlineLimit(this.ctx.limits)) {
          seenInLeaf++
          entries.push([id, whole!, heads])
          bytes += whole!.byteLength + sizer.add(heads) + Buffer.byteLength(id) + 8
          continue
        }
        const slot = whole === null ? null : this.slot(from, id, req.collection, withHeads(whole, heads), req.parts)
        if (slot === 'later') {
          // No room now: the requester asks again from here once it has fetched what it holds
          // (one refused entity per request, not a whole range of work refused). With nothing
          // to send yet, the range ends here and a later round goes on with it.
          return answer(entries.length > 0 ? { ranges: [[leaf, toLeaf], ...req.ranges.slice(i + 1)], skip: seenInLeaf } : undefined)
        }
        seenInLeaf++
        if (slot === null) continue
        entries.push([id, slot, []])
        // A ticket counts at its full size: the requester fetches it before its next request,
        // and the outbox holds it until then (many per response would fill it for one peer).
        bytes += (slot instanceof Uint8Array ? slot.byteLength : slot.size) + Buffer.byteLength(id) + 8
      }
    }
    return answer()
  }

  /** For each id: the delta the requester lacks, and our version so it can send what we lack. */
  private async exchange(from: string, req: ExchangeRequest): Promise<Uint8Array> {
    const col: CollectionState | undefined = this.ctx.entities.collections.get(req.collection)
    const response: ExchangeResponse = { entries: [], more: [] }
    if (col === undefined) {
      for (const [id] of req.entries) response.entries.push([id, null, null])
      return encodeExchangeResponse(response)
    }
    if (col.backend.name !== req.backend) {
      throw new ConvergentError('ERR_INVALID_MESSAGE', `invalid message: collection '${req.collection}' uses '${col.backend.name}', not '${req.backend}'`)
    }
    const backend = col.backend
    let bytes = 0
    for (const [id, version] of req.entries) {
      if (bytes >= this.ctx.limits.maxChunkBytes) {
        response.more.push(id)
        continue
      }
      const entity = await acquireDurable(this.ctx.entities, col, id)
      if (entity === undefined) continue // busy with local writes: the next round gets it
      try {
        if (!stillDurable(entity)) continue // written since it was found durable: busy too
        if (entity.head === undefined) {
          response.entries.push([id, null, null])
          continue
        }
        // Read now, before any await: later the document may hold a commit not durable yet.
        const ours = backend.version(entity.doc)
        let delta: Uint8Array | null
        try {
          delta = backend.deltaSince(entity.doc, version ?? emptyVersionOf(backend).version)
          if (delta !== null) delta = await headed(this.ctx, col, id, delta, from, { doc: entity.doc, theirVersion: version })
        } catch (err) {
          drop(this.ctx, from, 'malformed', `bad version for '${id}': ${(err as Error).message}`)
          delta = null
        }
        const slot = delta === null ? null : this.slot(from, id, req.collection, delta, req.parts)
        // A delta we have but cannot send now leaves the id out: the requester neither takes
        // our version as "nothing to send" (an unrepairable difference) nor asks again at once.
        if (slot === 'later' || (slot === null && delta !== null)) continue
        bytes += (slot === null ? 0 : slot instanceof Uint8Array ? slot.byteLength : slot.size) + ours.byteLength
        response.entries.push([id, slot, ours])
      } finally {
        this.ctx.entities.release(entity)
      }
    }
    return encodeExchangeResponse(response)
  }
}

/** What a peer is told of a request this replica failed to answer (the details are logged here). */
export const FAILED_MESSAGE = 'the responder could not answer this request (its own failure, logged there); a later round asks again'

/** A failure of this replica's own (its store, encryption at rest, a bug) rather than a refusal written for the peer. */
function isOwnFailure(err: unknown): boolean {
  return (
    !(err instanceof ConvergentError) ||
    err.code === 'ERR_STORE' ||
    err.code === 'ERR_STORE_CORRUPT' ||
    err.code === 'ERR_WRONG_KEY' ||
    err.code === 'ERR_ENCRYPTED'
  )
}

/** The code of the Error reply to a request that failed with `err` (the requester counts it). */
function refusalOfError(err: unknown): RefusalCode {
  if (err instanceof UnsupportedTypeError) return 'unsupportedType'
  if (err instanceof OverEntryRateError) return 'rateLimited'
  if (!(err instanceof ConvergentError)) return 'failed'
  if (err.code === 'ERR_INVALID_MESSAGE') return 'malformed'
  if (err.code === 'ERR_FORBIDDEN') return 'forbidden'
  if (err.code === 'ERR_TOO_LARGE') return 'tooLarge'
  return 'failed'
}

/** The code of the Error reply to a request dropped on arrival: the drop's reason. */
function refusalOfDrop(reason: DropReason): RefusalCode {
  return (REFUSAL_CODES as readonly string[]).includes(reason) ? (reason as RefusalCode) : 'failed'
}

/**
 * A request over the peer's inbound entry rate: the responder's rate bound, so counted and
 * coded 'rateLimited' (as a push over it is), not as a malformed request — an honest bulk sync
 * can get there. The message is the one older requesters have always read.
 */
class OverEntryRateError extends ConvergentError {
  constructor() {
    super('ERR_INVALID_MESSAGE', 'invalid message: over the inbound entry rate')
  }
}

/** The error a request the policy does not allow ends with (the requester sees the message). */
function forbidden(message: string): ConvergentError {
  return new ConvergentError('ERR_FORBIDDEN', message)
}
