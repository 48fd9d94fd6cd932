import type { Backend } from '../backend.js'
import { isConvergentError } from '../errors.js'
import { codeOf } from '../logger.js'
import { DEPTH, DIGEST_BYTES, DigestTree, FANOUT, LEAF_COUNT, leafOf } from '../digest.js'
import type { CollectionState } from '../entities.js'
import { bytesEqual, sha256, toHex } from '../hash.js'
import { applyAll } from './apply-all.js'
import { applyRemoteDelta, type ApplyResult } from './apply.js'
import { abortable, RoundBudget } from './budget.js'
import { acquireDurable, stillDurable, wholeStateOf } from './durable.js'
import { headed, headsFor, withHeads, withHeadsLength } from './heads.js'
import { packHeads, TableSizer, type OutgoingHead } from './messages/head-table.js'
import { checkId } from '../json.js'
import { drop } from './receiver.js'
import type { ReplicationContext } from './context.js'
import { emptyVersionOf } from '../empty-version.js'
import {
  decodeErrorReply,
  decodeExchangeResponse,
  decodeFetchResponse,
  decodeLeavesResponse,
  decodeMessage,
  decodeNodesResponse,
  decodeRangeResponse,
  decodeRootsResponse,
  encodeDeltasRequest,
  encodeExchangeRequest,
  encodeFetchRequest,
  encodeLeavesRequest,
  encodeNodesRequest,
  encodeRangeRequest,
  encodeRootsRequest,
  encodeUploadRequest,
  FEATURE_HEADS,
  FEATURE_HEAD_TABLES,
  FEATURE_PARTS,
  InvalidMessageError,
  invalid,
  isTicket,
  MAX_DELTAS_PER_REQUEST,
  MAX_IDS_PER_EXCHANGE,
  MAX_LEAVES_PER_REQUEST,
  MAX_NODES_PER_REQUEST,
  MAX_RANGES_PER_REQUEST,
  MessageType,
  refusalOf,
  SyncRefusedError,
  type DeltaSlot,
  type LeafRange,
  type MessageTypeValue,
  type RangeCursor,
  type RefusalCode,
  type Ticket,
} from './messages/index.js'
import { inlineLimit, partBytes } from './parts.js'
import { policyOffer, takePolicyResponse } from './policy-exchange.js'
import { exchangeKeys } from './key-exchange.js'

/** What one anti-entropy round with one peer did. */
export interface RoundResult {
  peer: string
  /** Collections whose digests differed. */
  collectionsDiffering: number
  /** Entities whose versions differed. */
  entitiesDiffering: number
  /** Deltas the peer sent us (applied, already held, or dropped) … */
  deltasReceived: number
  /** … and those of them that changed something here. */
  deltasApplied: number
  deltasSent: number
  messages: number
  bytesSent: number
  bytesReceived: number
  /**
   * Entities whose versions differ although neither side has a change the other lacks: the
   * same operation ids with different content (a forged or damaged write). Sync cannot repair
   * them; they are reported (here, in the peer's stats and in the log).
   */
  entitiesUnrepairable: number
  /**
   * Collections whose sync failed this round (a bad answer, a store error), with why; the
   * round went on with the others.
   */
  failed: { collection: string; error: string; refusal?: RefusalCode }[]
}

const ZERO_ROOT = new Uint8Array(DIGEST_BYTES)

function emptyResult(peer: string): RoundResult {
  return {
    peer,
    collectionsDiffering: 0,
    entitiesDiffering: 0,
    deltasReceived: 0,
    deltasApplied: 0,
    deltasSent: 0,
    messages: 0,
    bytesSent: 0,
    bytesReceived: 0,
    entitiesUnrepairable: 0,
    failed: [],
  }
}
const EMPTY_TREE = new DigestTree()

/** What a descent found: leaves both sides hold and that differ, and ranges only one side holds. */
interface DescentPlan {
  leaves: number[]
  /** ranges only the peer has entities in */
  pull: LeafRange[]
  /** ranges only we have entities in */
  push: LeafRange[]
}

/**
 * One collection in a round: its name and backend, and our state of it — undefined when we
 * do not hold it yet (it is created by the first of its deltas that applies cleanly).
 */
interface Target {
  name: string
  backend: Backend
  col: CollectionState | undefined
}

/** One round with one peer: its budget (and signal), what the peer speaks, and the tally. */
interface Round {
  peer: string
  budget: RoundBudget
  /** The peer fetches and uploads deltas in parts. */
  parts: boolean
  /** Collections the peer dropped and does not take back: not sent to it. */
  refusedByPeer: Set<string>
  result: RoundResult
  /** The peer's subject keys or tombstones differ from ours (its first roots response said so). */
  keysDiffer?: boolean
  /** The peer refused an upload this round: no more are sent to it until the next (see upload). */
  uploadRefused?: true
}

/** Appends a range, merging it with the last one when they touch (ranges come in ascending order). */
function addRange(ranges: LeafRange[], from: number, to: number): void {
  const last = ranges[ranges.length - 1]
  if (last !== undefined && last[1] + 1 === from) last[1] = to
  else ranges.push([from, to])
}

/** A continuation must start later than what was asked for, or skip more of the same leaf. */
function progressed(asked: RangeCursor, next: RangeCursor): boolean {
  const a = asked.ranges[0]
  const b = next.ranges[0]
  if (a === undefined || b === undefined) return b === undefined
  return b[0] > a[0] || (b[0] === a[0] && next.skip > asked.skip)
}

/** The peer does not serve range requests (an older version). */
function isUnsupportedRange(err: unknown): boolean {
  return err instanceof SyncRefusedError && err.unsupported(MessageType.RangeRequest)
}

/**
 * Failures that end the whole round rather than one collection's part of it: the link, the
 * budget, the caller. A peer's refusal of one request (an Error reply) ends only its collection.
 */
function endsRound(err: unknown): boolean {
  if (err instanceof SyncRefusedError) return false
  return (
    isConvergentError(err, 'ERR_NETWORK') ||
    isConvergentError(err, 'ERR_ABORTED') ||
    isConvergentError(err, 'ERR_CLOSED') ||
    isConvergentError(err, 'ERR_TIMEOUT')
  )
}

/**
 * Batches outgoing deltas into DeltasRequests of about maxChunkBytes (and at most
 * MAX_DELTAS_PER_REQUEST), keeping one request in flight while the next batch is gathered.
 * A delta over the inline limit is uploaded in parts, by itself.
 */
class DeltaSender {
  private batch: [string, Uint8Array, OutgoingHead[]][] = []
  private size = 0
  /** What the batch's head table takes (its bytes, as entries are added). */
  private sizer = new TableSizer()
  private inFlight: Promise<void> = Promise.resolve()

  constructor(
    private readonly client: SyncClient,
    private readonly round: Round,
    private readonly target: Target,
    /** The peer reads head tables: heads given to add() go in the batch's table. */
    private readonly tables: boolean,
  ) {}

  /** A delta for the batch: headed already, or bare with the heads that go with it. */
  async add(id: string, delta: Uint8Array, heads: OutgoingHead[] = []): Promise<void> {
    const inTable = this.tables && heads.length > 0
    const full = withHeadsLength(delta, heads)
    if (full > inlineLimit(this.client.limits)) {
      await this.client.upload(this.round, this.target, id, withHeads(delta, heads))
      return
    }
    const bytes = (inTable ? delta.byteLength : full) + Buffer.byteLength(id) + 16
    let headBytes = inTable ? this.sizer.add(heads) : 0
    if (this.batch.length > 0 && (this.size + bytes + headBytes > this.client.limits.maxChunkBytes || this.batch.length >= MAX_DELTAS_PER_REQUEST)) {
      await this.flush()
      if (inTable) headBytes = this.sizer.add(heads) // its statements are new to the next batch
    }
    this.batch.push(inTable ? [id, delta, heads] : [id, withHeads(delta, heads), []])
    this.size += bytes + headBytes
  }

  private async flush(): Promise<void> {
    const batch = this.batch
    this.batch = []
    this.size = 0
    this.sizer = new TableSizer()
    await this.inFlight
    this.inFlight = this.client.sendDeltas(this.round, this.target, batch)
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
 * The initiator side of anti-entropy. One round with a peer: compare a summary of all roots
 * (one small message when in sync), else the per-collection roots page by page; for each
 * collection that differs, descend the 16-ary digest tree only into children that differ,
 * list the (id, version hash) of differing leaves, then exchange versions of just the
 * differing entities: the peer answers with the deltas we lack and its versions, and we send
 * the deltas it lacks — in bounded chunks, large deltas in parts. d divergent entities out
 * of n cost O(d log n) digest traffic plus the missing deltas.
 *
 * Every round has a budget (requests, bytes received, time) and every wait in it ends when
 * the budget is spent or the caller's signal fires. One collection that fails (a bad answer,
 * a store error) is reported in the result and the round goes on with the others.
 */
export class SyncClient {
  constructor(private readonly ctx: ReplicationContext) {}

  get limits(): ReplicationContext['limits'] {
    return this.ctx.limits
  }

  async round(peer: string, signal?: AbortSignal): Promise<RoundResult> {
    const result = emptyResult(peer)
    const budget = new RoundBudget(this.ctx.clock, peer, this.ctx.limits, signal)
    const round: Round = { peer, budget, parts: false, refusedByPeer: new Set(), result }
    try {
      await this.exchangePolicy(round)
      const theirs = await this.theirRoots(round)
      if (round.keysDiffer === true) await this.exchangeKeys(round)
      if (theirs !== undefined) await this.syncCollections(round, theirs)
      await this.refetchHeads(round) // also when the summaries are equal
      const stats = this.ctx.stats.of(peer)
      stats.syncRounds++
      stats.divergentEntities = result.entitiesUnrepairable
      return result
    } catch (err) {
      if (budget.overBudget) this.ctx.stats.of(peer).dropped.overBudget++
      throw err
    } finally {
      budget.done()
    }
  }

  /** A round starts with the cluster policy: each side adopts the other's if it is newer. */
  private async exchangePolicy(round: Round): Promise<void> {
    if (!this.ctx.access.configured) return
    try {
      await takePolicyResponse(this.ctx, round.peer, await this.request(round, policyOffer(this.ctx), MessageType.PolicyResponse))
    } catch (err) {
      if (!(err instanceof SyncRefusedError)) throw err // a peer without policies (or one that refused) answers an error
    }
  }

  /**
   * Then subject keys and forget tombstones (personal fields): pulled from the peer, ours
   * offered to it. A peer that does not speak it (an older version) is skipped.
   */
  private async exchangeKeys(round: Round): Promise<void> {
    try {
      await exchangeKeys(this.ctx, round.peer, (data, expect) => this.request(round, data, expect))
    } catch (err) {
      if (!(err instanceof SyncRefusedError)) throw err
    }
  }

  /** A key exchange alone with one peer (a new key or tombstone to spread, a key a value names and this replica lacks). */
  async keysOnly(peer: string, signal?: AbortSignal): Promise<void> {
    const budget = new RoundBudget(this.ctx.clock, peer, this.ctx.limits, signal)
    const round: Round = { peer, budget, parts: false, refusedByPeer: new Set(), result: emptyResult(peer) }
    try {
      await this.exchangeKeys(round)
    } finally {
      budget.done()
    }
  }

  /**
   * The peer's roots: undefined when our summaries are equal (in sync), else every root it
   * has, fetched page by page.
   */
  private async theirRoots(round: Round): Promise<Map<string, { backend: string; root: Uint8Array }> | undefined> {
    const { entities } = this.ctx
    const summary = await entities.rootsSummary()
    const theirs = new Map<string, { backend: string; root: Uint8Array }>()
    // Collections we do not hold are kept only while we could still create them: a peer that
    // lists more (hundreds of thousands of names) costs requests, never memory.
    let room = Math.max(0, this.ctx.limits.maxCollections - entities.collections.size)
    let cursor: string | undefined = undefined
    for (;;) {
      const keys = cursor === undefined && this.ctx.personal.supported ? { keys: this.ctx.personal.summaryFor(round.peer) } : {}
      const heads = this.ctx.heads !== undefined ? { heads: true, headTables: true } : {}
      const request = encodeRootsRequest(
        cursor !== undefined ? { cursor, ...heads } : summary !== undefined ? { summary, ...keys, ...heads } : { ...keys, ...heads },
      )
      const response = decodeRootsResponse(await this.request(round, request, MessageType.RootsResponse))
      if (response.keysDiffer === true) round.keysDiffer = true
      round.parts = (response.features & FEATURE_PARTS) !== 0
      if ((response.features & FEATURE_HEADS) !== 0) this.ctx.heads?.markReader(round.peer, (response.features & FEATURE_HEAD_TABLES) !== 0)
      if (response.same === true) return undefined
      for (const name of response.refused ?? []) round.refusedByPeer.add(name)
      for (const [name, backend, root] of response.roots) {
        if (cursor !== undefined && name <= cursor) throw invalid(`peer ${round.peer} listed roots out of order`)
        if (entities.collections.has(name)) theirs.set(name, { backend, root })
        else if (room > 0 && !this.ctx.refused.has(name)) {
          theirs.set(name, { backend, root })
          room--
        }
      }
      if (response.next === undefined) return theirs
      if (cursor !== undefined && response.next <= cursor) throw invalid(`peer ${round.peer} answered a roots page without progress`)
      cursor = response.next
    }
  }

  private async syncCollections(round: Round, theirs: Map<string, { backend: string; root: Uint8Array }>): Promise<void> {
    const { entities } = this.ctx
    for (const name of theirs.keys()) {
      try {
        checkId(name, 'collection name', this.ctx.limits)
      } catch (err) {
        // Never used as a name here (it would be a key in the store): counted and skipped.
        theirs.delete(name)
        drop(this.ctx, round.peer, 'invalidId', `roots name a collection we cannot hold: ${(err as Error).message}`)
      }
    }
    const names = [...new Set([...entities.collections.keys(), ...theirs.keys()])].sort()
    for (const name of names) {
      round.budget.check()
      if (!theirs.has(name) && round.refusedByPeer.has(name)) continue
      // Read control: nothing of a collection goes to a peer that may not read it.
      if (!this.ctx.access.mayRead(round.peer, name) || !this.ctx.access.mayRead(this.ctx.access.self, name)) continue
      try {
        await this.syncOne(round, name, theirs.get(name))
      } catch (err) {
        if (endsRound(err) || round.budget.signal.aborted) throw err
        const error = (err as Error).message
        round.result.failed.push({ collection: name, error, ...refusalOf(err) })
        if (isConvergentError(err, 'ERR_INVALID_MESSAGE')) this.ctx.stats.drop(round.peer, 'malformed', error)
        this.ctx.logger.warn(`anti-entropy of '${name}' with ${round.peer} failed (the round goes on): ${error}`, {
          peer: round.peer,
          collection: name,
          ...codeOf(err),
          ...refusalOf(err),
        })
      }
    }
  }

  /** One collection: compare roots, then sync what differs. */
  private async syncOne(round: Round, name: string, their: { backend: string; root: Uint8Array } | undefined): Promise<void> {
    const { entities } = this.ctx
    const col = entities.collections.get(name)
    const ourRoot = col === undefined ? ZERO_ROOT : (await entities.tree(col)).root()
    const theirRoot = their?.root ?? ZERO_ROOT
    if (bytesEqual(ourRoot, theirRoot)) return
    let target: Target
    const ourEmpty = bytesEqual(ourRoot, ZERO_ROOT)
    if (their !== undefined && (col === undefined || (ourEmpty && col.tentative && col.backend.name !== their.backend))) {
      // We hold nothing of it (or an empty collection whose backend is only a default): take
      // the peer's backend — unless the policy pins another (counted below, not fetched). The
      // collection is created by its first delta that applies cleanly.
      const pinned = this.ctx.access.backendOf(name)
      const backend = this.ctx.backends.get(pinned ?? their.backend)
      if (backend === undefined) {
        const what = pinned === undefined ? `peer ${round.peer} has collection '${name}' with` : `the cluster policy pins collection '${name}' to`
        this.ctx.logger.warn(`${what} backend '${pinned ?? their.backend}', which this replica does not have; skipped`, {
          peer: round.peer,
          collection: name,
          reason: 'unknownBackend',
        })
        return
      }
      target = { name, backend, col: col !== undefined && col.backend === backend ? col : undefined }
    } else {
      target = { name, backend: col!.backend, col }
    }
    if (their !== undefined && their.backend !== target.backend.name) {
      // Counted as gossip's are (once a round): two replicas that took a new collection's first
      // delta under different backends stay apart on it for good (review-order-refusals HOLE 2).
      drop(
        this.ctx,
        round.peer,
        'backendMismatch',
        `collection '${name}' uses '${target.backend.name}' here but '${their.backend}' on ${round.peer}; not synced`,
        {
          collection: name,
        },
      )
      return
    }
    round.result.collectionsDiffering++
    if (!this.legacyPeers.has(round.peer)) {
      try {
        await this.syncCollection(round, target, ourRoot, theirRoot, true)
        return
      } catch (err) {
        if (!isUnsupportedRange(err)) throw err
        // A peer that does not serve range requests yet: the per-entity exchange works everywhere.
        this.legacyPeers.add(round.peer)
      }
    }
    await this.syncCollection(round, target, ourRoot, theirRoot, false)
  }

  /**
   * Peers that answered a range request with "unexpected type": they get the per-entity
   * exchange only, until they disconnect (an upgraded peer comes back speaking ranges).
   */
  private readonly legacyPeers = new Set<string>()

  /** A peer went away: what was learnt of its protocol is learnt again when it is back. */
  forget(peer: string): void {
    this.legacyPeers.delete(peer)
  }

  /**
   * One collection whose roots differ. Subtrees only one side has anything in are moved whole:
   * pulled with range requests (no versions or ids sent first) or pushed as full deltas.
   * Subtrees both sides hold are descended, and the entities of differing leaves exchanged.
   */
  private async syncCollection(round: Round, target: Target, ourRoot: Uint8Array, theirRoot: Uint8Array, useRanges: boolean): Promise<void> {
    const all: LeafRange = [0, LEAF_COUNT - 1]
    let plan: DescentPlan
    if (useRanges && bytesEqual(ourRoot, ZERO_ROOT)) plan = { leaves: [], pull: [all], push: [] }
    else if (useRanges && bytesEqual(theirRoot, ZERO_ROOT)) plan = { leaves: [], pull: [], push: [all] }
    else plan = await this.descend(round, target, useRanges)
    // Pulling and pushing go to different directions of the link: run them side by side.
    const outcomes = await Promise.allSettled([
      plan.pull.length > 0 ? this.pullRanges(round, target, plan.pull) : undefined,
      plan.push.length > 0 ? this.pushRanges(round, target, plan.push) : undefined,
      (async () => {
        if (plan.leaves.length === 0) return
        const differing = await this.differingIds(round, target, plan.leaves)
        round.result.entitiesDiffering += differing.size
        await this.exchange(round, target, [...differing.keys()], undefined, differing)
      })(),
    ])
    for (const o of outcomes) if (o.status === 'rejected') throw o.reason
  }

  /**
   * Walks down the tree level by level, following only children whose digests differ. With
   * useRanges, a child empty on one side is not descended: its leaf range is pulled or pushed.
   */
  private async descend(round: Round, target: Target, useRanges: boolean): Promise<DescentPlan> {
    const tree: DigestTree = target.col === undefined ? EMPTY_TREE : await this.ctx.entities.tree(target.col)
    const plan: DescentPlan = { leaves: [], pull: [], push: [] }
    let frontier = [0]
    for (let level = 0; level < DEPTH && frontier.length > 0; level++) {
      const next: number[] = []
      const span = FANOUT ** (DEPTH - level - 1) // leaves under one child
      for (let i = 0; i < frontier.length; i += MAX_NODES_PER_REQUEST) {
        const nodes = frontier.slice(i, i + MAX_NODES_PER_REQUEST)
        const body = await this.request(round, encodeNodesRequest({ collection: target.name, level, nodes, sparse: true }), MessageType.NodesResponse)
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
   * is requested while the previous one is being applied (unless it holds a ticket).
   */
  private async pullRanges(round: Round, target: Target, ranges: LeafRange[]): Promise<void> {
    const { signal } = round.budget
    let applying: Promise<void> = Promise.resolve()
    try {
      for (let i = 0; i < ranges.length; i += MAX_RANGES_PER_REQUEST) {
        let next: RangeCursor | undefined = { ranges: ranges.slice(i, i + MAX_RANGES_PER_REQUEST), skip: 0 }
        while (next !== undefined) {
          const asked: RangeCursor = next
          const request = encodeRangeRequest({ collection: target.name, backend: target.backend.name, ranges: asked.ranges, skip: asked.skip, parts: true })
          const response = decodeRangeResponse(await this.request(round, request, MessageType.RangeResponse))
          next = response.next
          // An honest responder only continues after a full chunk: never with an empty one.
          if (next !== undefined && (response.entries.length === 0 || !progressed(asked, next)))
            throw invalid(`peer ${round.peer} answered a range request without progress`)
          round.result.entitiesDiffering += response.entries.length
          await abortable(applying, signal)
          applying = this.applySlots(round, target, response.entries).then((applied) => {
            round.result.deltasReceived += applied.length
            round.result.deltasApplied += applied.filter((r) => r === 'applied').length
          })
          applying.catch(() => undefined) // awaited before the next chunk and at the end
          // A ticket is fetched before the next request: the responder's outbox holds one of ours at a time.
          if (next !== undefined && response.entries.some(([, slot]) => isTicket(slot))) await abortable(applying, signal)
        }
      }
    } finally {
      await abortable(applying, signal)
    }
  }

  /** Applies the deltas of a response: inline ones at once, ticketed ones fetched in parts first. */
  private async applySlots(round: Round, target: Target, slots: readonly [string, DeltaSlot | null][]): Promise<ApplyResult[]> {
    const inline: [string, Uint8Array][] = []
    const large: [string, Ticket][] = []
    for (const [id, slot] of slots) {
      if (slot === null) continue
      if (!isTicket(slot)) inline.push([id, slot])
      else if (slot.size <= this.ctx.limits.maxDeltaBytes) large.push([id, slot])
      // Never fetched: the rest of the answer is taken (a peer with a larger limit sends these honestly).
      else
        drop(this.ctx, round.peer, 'tooLarge', `'${target.name}/${id}' announced at ${slot.size} bytes, over maxDeltaBytes ${this.ctx.limits.maxDeltaBytes}`, {
          collection: target.name,
          entity: id,
        })
    }
    const results = await applyAll(this.ctx, round.peer, target.name, target.backend.name, inline)
    for (const [id, ticket] of large) {
      let bytes: Uint8Array
      try {
        bytes = await this.fetch(round, ticket)
      } catch (err) {
        // An expired ticket (the responder's outbox was full): a later round sends it again.
        if (!(err instanceof SyncRefusedError)) throw err
        this.ctx.logger.warn(`could not fetch '${target.name}/${id}' from ${round.peer} this round: ${err.message}`, {
          peer: round.peer,
          collection: target.name,
          entity: id,
          code: err.code,
          refusal: err.reply.code,
        })
        continue
      }
      results.push(await applyRemoteDelta(this.ctx, round.peer, target.name, target.backend.name, id, bytes))
    }
    return results
  }

  /** Fetches a delta the peer handed out as a ticket, part by part; checks its size and hash. */
  private async fetch(round: Round, ticket: Ticket): Promise<Uint8Array> {
    const out = new Uint8Array(ticket.size)
    let filled = 0
    while (filled < ticket.size) {
      const part = decodeFetchResponse(await this.request(round, encodeFetchRequest({ ticket: ticket.ticket, offset: filled }), MessageType.FetchResponse))
      if (part.byteLength === 0 || filled + part.byteLength > ticket.size) throw invalid(`peer ${round.peer} sent a part that does not fit its ticket`)
      out.set(part, filled)
      filled += part.byteLength
    }
    if (!bytesEqual(sha256(out), ticket.hash)) throw invalid(`peer ${round.peer} sent parts that do not match their hash`)
    return out
  }

  /** Sends a delta too large to go inline, in parts (to a peer that takes uploads). */
  async upload(round: Round, target: Target, id: string, delta: Uint8Array): Promise<void> {
    if (!round.parts || delta.byteLength > this.ctx.limits.maxDeltaBytes) {
      const over = delta.byteLength > this.ctx.limits.maxDeltaBytes
      if (over) this.ctx.entities.sizes?.tooLargeToSend(target.name, id, delta.byteLength)
      this.ctx.logger.warn(
        `not sending '${target.name}/${id}' to ${round.peer}: ${delta.byteLength} bytes ${over ? `are over maxDeltaBytes ${this.ctx.limits.maxDeltaBytes}` : 'do not fit a message, and the peer takes no uploads'}`,
        {
          peer: round.peer,
          collection: target.name,
          entity: id,
          reason: 'tooLarge',
        },
      )
      return
    }
    // One refusal a round: whatever the reason (its size limit, its rate bound, the policy; the
    // reply's code is counted and logged, not acted on), the other uploads wait for the next round
    // or for the peer's own, which fetches what it lacks by ticket.
    if (round.uploadRefused === true) return
    const hash = sha256(delta)
    const step = partBytes(this.ctx.limits)
    try {
      for (let offset = 0; offset < delta.byteLength; offset += step) {
        const part = delta.subarray(offset, Math.min(delta.byteLength, offset + step))
        const request = encodeUploadRequest({ collection: target.name, backend: target.backend.name, id, size: delta.byteLength, hash, offset, part })
        await this.request(round, request, MessageType.Ack)
      }
    } catch (err) {
      // The peer refused this one (its maxDeltaBytes is smaller, its upload room is full): the
      // rest of the collection still goes inline, this one in a later round or from another replica.
      if (!(err instanceof SyncRefusedError)) throw err
      round.uploadRefused = true
      this.ctx.logger.warn(
        `${round.peer} refused the upload of '${target.name}/${id}' (${delta.byteLength} bytes; no more uploads to it this round): ${err.reply.message}`,
        {
          peer: round.peer,
          collection: target.name,
          entity: id,
          refusal: err.reply.code,
        },
      )
      return
    }
    round.result.deltasSent++
  }

  /** Sends every entity of leaf ranges the peer holds nothing of, as full deltas. */
  private async pushRanges(round: Round, target: Target, ranges: LeafRange[]): Promise<void> {
    const col = target.col
    if (col === undefined) return
    const sender = new DeltaSender(this, round, target, this.ctx.heads?.readsHeadTables(round.peer) === true)
    try {
      for (const [fromLeaf, toLeaf] of ranges) {
        for await (const [id] of this.ctx.entities.heads(col, { fromLeaf, toLeaf })) {
          round.budget.check()
          const whole = await abortable(wholeStateOf(this.ctx.entities, col, id, this.ctx.limits.maxDeltaBytes), round.budget.signal)
          if (whole === null) continue
          const heads = await headsFor(this.ctx, col, id, whole, round.peer, 'whole')
          round.result.entitiesDiffering++
          await sender.add(id, whole, heads)
        }
      }
    } finally {
      await sender.finish()
    }
  }

  /**
   * Ids in the given leaves whose version hash differs, or that only one side has, each with the
   * peer's version hash (hex; null where only this side has it).
   */
  private async differingIds(round: Round, target: Target, leaves: number[]): Promise<Map<string, string | null>> {
    const ids = new Map<string, string | null>()
    const queue = [...leaves]
    while (queue.length > 0) {
      const chunk = queue.splice(0, MAX_LEAVES_PER_REQUEST)
      const response = decodeLeavesResponse(
        await this.request(round, encodeLeavesRequest({ collection: target.name, leaves: chunk }), MessageType.LeavesResponse),
      )
      const asked = new Set(chunk)
      const more = (response.more ?? []).filter((leaf) => asked.has(leaf))
      // A leaf named as "more" must not have been answered: it is compared once its turn comes.
      if (more.length >= chunk.length) throw invalid(`peer ${round.peer} answered a leaves request without progress`)
      queue.unshift(...more)
      const served = chunk.filter((leaf) => !more.includes(leaf))
      const theirs = new Map(response.entries.map(([id, vh]) => [id, toHex(vh)]))
      if (target.col !== undefined) {
        for (const leaf of served) {
          for await (const [id, head] of this.ctx.entities.heads(target.col, { fromLeaf: leaf, toLeaf: leaf })) {
            const their = theirs.get(id)
            if (their !== toHex(head.versionHash)) ids.set(id, their ?? null)
            theirs.delete(id)
          }
        }
      }
      for (const [id, their] of theirs) ids.set(id, their) // only they have it
    }
    return ids
  }

  /**
   * Entities whose head of another author was lost here (heads.ts, lostHead): asked of the peer
   * as if this replica held nothing of them, so that it sends them whole with their authors'
   * heads, which the apply stores (apply.ts) — else a peer that lacks them could not take those
   * changes from here (review-damaged-disk HOLE 8b).
   */
  private async refetchHeads(round: Round): Promise<void> {
    const heads = this.ctx.heads
    if (heads === undefined || !heads.readsHeads(round.peer)) return
    for (const col of [...this.ctx.entities.collections.values()]) {
      const ids = heads.headsWanted(col.name)
      if (ids.length === 0 || !this.ctx.access.mayRead(round.peer, col.name) || !this.ctx.access.mayRead(this.ctx.access.self, col.name)) continue
      try {
        await this.exchange(round, { name: col.name, backend: col.backend, col }, ids, new Set(ids))
      } catch (err) {
        if (endsRound(err) || round.budget.signal.aborted) throw err
        this.ctx.logger.warn(`could not ask ${round.peer} for the lost heads of '${col.name}' (asked again next round): ${(err as Error).message}`, {
          peer: round.peer,
          collection: col.name,
          ...codeOf(err),
        })
      }
    }
  }

  /**
   * Two-way exchange of the missing deltas of the given entities, in bounded chunks (`asIfAbsent`:
   * sent without our version; `theirHashes`: the peer's version hashes when the leaves were compared).
   */
  private async exchange(
    round: Round,
    target: Target,
    ids: string[],
    asIfAbsent?: ReadonlySet<string>,
    theirHashes?: ReadonlyMap<string, string | null>,
  ): Promise<void> {
    const { backend, col } = target
    const queue = [...ids]
    const sender = new DeltaSender(this, round, target, false)
    // Entities reported unrepairable by this exchange: once each, however often the answers name them.
    const reported = new Set<string>()
    try {
      while (queue.length > 0) {
        round.budget.check()
        const chunk = queue.splice(0, MAX_IDS_PER_EXCHANGE)
        const entries: [string, Uint8Array | null][] = []
        for (const id of chunk) entries.push([id, col === undefined || asIfAbsent?.has(id) === true ? null : await this.versionOf(col, id)])
        const request = encodeExchangeRequest({ collection: target.name, backend: backend.name, entries, parts: true })
        const response = decodeExchangeResponse(await this.request(round, request, MessageType.ExchangeResponse))
        const requested = new Set(chunk)
        for (const id of response.more) if (requested.has(id)) queue.push(id)

        // Apply what we lacked.
        const received = response.entries.filter(([id, delta]) => delta !== null && requested.has(id)).map(([id, delta]) => [id, delta] as [string, DeltaSlot])
        const applied = await this.applySlots(round, target, received)
        round.result.deltasReceived += applied.length
        round.result.deltasApplied += applied.filter((r) => r === 'applied').length

        // Send what they lack, given their versions.
        const here = col ?? this.ctx.entities.collections.get(target.name)
        if (here === undefined) continue
        // Equal versions on both sides now, although the version hashes differed (with our version
        // then). None for a backend whose version names its content: there they were only catching up.
        const equalVersions = new Map<string, Uint8Array>()
        const mayDiverge = backend.versionNamesContent !== true
        const answered = new Set<string>()
        for (const [id, theirDelta, theirVersion] of response.entries) {
          if (!requested.has(id) || answered.has(id)) continue // an id named twice is taken once
          answered.add(id)
          const ours = await this.deltaFor(round, here, id, theirVersion)
          if (ours instanceof Uint8Array) await sender.add(id, ours)
          else if (mayDiverge && ours === 'nothing' && theirDelta === null && theirVersion !== null) {
            const version = await this.versionOf(here, id)
            if (version !== null) equalVersions.set(id, version)
          }
        }
        let unrepairable = 0
        for (const id of await this.stillDiffering(round, target, here, equalVersions, theirHashes)) {
          if (reported.has(id)) continue
          reported.add(id)
          unrepairable++
        }
        if (unrepairable > 0) {
          round.result.entitiesUnrepairable += unrepairable
          this.ctx.logger.warn(
            `${unrepairable} entities of '${target.name}' differ from ${round.peer} though neither side lacks a change of the other: the same operations with different content (a forged or damaged write). Sync cannot repair them.`,
            { peer: round.peer, collection: target.name, entities: unrepairable },
          )
        }
      }
    } finally {
      await sender.finish()
    }
  }

  /**
   * Which of `ids` — entities whose versions are equal on both sides, although their version
   * hashes differed when the leaves were compared — still differ: the same operations with
   * different content (a forged or damaged write), which sync cannot repair. Most do not: one
   * side took a change (a push: in a hot cluster, often the replica's own write on its way to
   * the peer) between the leaves and the exchange. So their leaves are compared again, as they
   * are now. One whose version here moved since the exchange (`ids`: id → our version then) is
   * left out: a write of this replica's own taken meanwhile makes its hash differ again (a later
   * round reports it if it still differs). So is one whose hash at the peer moved since the leaves
   * were first compared (`theirHashes`): the peer's own write after its exchange answer (equal
   * versions then); a forged entity keeps its hash, and one the peer writes meanwhile is reported
   * in a later round.
   */
  private async stillDiffering(
    round: Round,
    target: Target,
    col: CollectionState,
    ids: ReadonlyMap<string, Uint8Array>,
    theirHashes?: ReadonlyMap<string, string | null>,
  ): Promise<string[]> {
    if (ids.size === 0) return []
    const differing = await this.differingIds(round, { ...target, col }, [...new Set([...ids.keys()].map(leafOf))])
    const still: string[] = []
    for (const [id, then] of ids) {
      if (!differing.has(id)) continue
      const first = theirHashes?.get(id)
      if (first !== undefined && first !== differing.get(id)) continue
      const now = await this.versionOf(col, id)
      if (now !== null && bytesEqual(then, now)) still.push(id)
    }
    return still
  }

  /** Our version of an entity, or null if we do not hold it. */
  private async versionOf(col: CollectionState, id: string): Promise<Uint8Array | null> {
    const entity = await this.ctx.entities.acquire(col, id)
    try {
      return entity.head === undefined ? null : col.backend.version(entity.doc)
    } finally {
      this.ctx.entities.release(entity)
    }
  }

  /**
   * What a peer at `theirVersion` lacks of one of our entities (durable state only): the
   * delta, 'nothing' when it lacks nothing, 'skipped' when we cannot tell now (busy with local
   * writes, not held, an unusable version).
   */
  private async deltaFor(round: Round, col: CollectionState, id: string, theirVersion: Uint8Array | null): Promise<Uint8Array | 'nothing' | 'skipped'> {
    const entity = await abortable(acquireDurable(this.ctx.entities, col, id), round.budget.signal)
    if (entity === undefined) return 'skipped'
    try {
      if (entity.head === undefined || !stillDurable(entity)) return 'skipped'
      const delta = col.backend.deltaSince(entity.doc, theirVersion ?? emptyVersionOf(col.backend).version)
      return delta === null ? 'nothing' : await headed(this.ctx, col, id, delta, round.peer, { doc: entity.doc, theirVersion })
    } catch (err) {
      this.ctx.logger.warn(`peer ${round.peer} sent an unusable version for '${id}': ${(err as Error).message}`, {
        peer: round.peer,
        collection: col.name,
        entity: id,
        reason: 'malformed',
      })
      return 'skipped'
    } finally {
      this.ctx.entities.release(entity)
    }
  }

  /** @internal A DeltasRequest to the peer (used by DeltaSender). */
  async sendDeltas(round: Round, target: Target, batch: [string, Uint8Array, OutgoingHead[]][]): Promise<void> {
    const { entries, table } = packHeads(batch)
    await this.request(round, encodeDeltasRequest({ collection: target.name, backend: target.backend.name, entries, table }), MessageType.Ack)
    round.result.deltasSent += batch.length
  }

  /** One request/response within the round's budget, with size bounds, stats and a typed error for Error replies. */
  private async request(round: Round, data: Uint8Array, expect: MessageTypeValue): Promise<unknown> {
    round.budget.request()
    const stats = this.ctx.stats.of(round.peer)
    stats.messagesOut++
    stats.bytesOut += data.byteLength
    round.result.messages++
    round.result.bytesSent += data.byteLength
    const response = await abortable(
      this.ctx.network.request(round.peer, data, { maxBytes: this.ctx.limits.maxMessageBytes, signal: round.budget.signal }),
      round.budget.signal,
    )
    stats.messagesIn++
    stats.bytesIn += response.byteLength
    round.result.bytesReceived += response.byteLength
    round.budget.received(response.byteLength)
    const msg = decodeMessage(response, this.ctx.limits.maxMessageBytes)
    if (msg.type === MessageType.Error) {
      const reply = decodeErrorReply(msg.body)
      stats.refusals[reply.code]++
      throw new SyncRefusedError(round.peer, reply)
    }
    if (msg.type !== expect) throw new InvalidMessageError(`expected type ${expect}, got ${msg.type}`)
    return msg.body
  }
}
