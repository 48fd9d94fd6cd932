import type { CollectionState } from '../entities.js'
import { ConvergentError, isConvergentError } from '../errors.js'
import type { AckOptions } from '../write-options.js'
import { abortable } from './budget.js'
import type { ReplicationContext } from './context.js'
import { acquireDurable, stillDurable } from './durable.js'
import { headed } from './heads.js'
import {
  decodeErrorReply,
  decodeHoldsResponse,
  decodeMessage,
  encodeDeltasRequest,
  encodeHoldsRequest,
  InvalidMessageError,
  MAX_HOLDS_VERSION_BYTES,
  MessageType,
} from './messages/index.js'
import { inlineLimit } from './parts.js'
import { drop } from './receiver.js'

/** First pause between two rounds of queries (ms), doubled each round up to MAX_POLL_MS. */
const FIRST_POLL_MS = 20
const MAX_POLL_MS = 500

/** The change a write waits on: the entity's version right after the write (it includes it). */
export interface AckTarget {
  col: CollectionState
  id: string
  version: Uint8Array
  /** For messages: "put of 'orders/o-1'". */
  what: string
}

/** Fewer peers than asked confirmed in time. The local write stands and keeps replicating. */
export class AckTimeoutError extends ConvergentError {
  constructor(
    what: string,
    readonly confirmed: readonly string[],
    readonly wanted: number,
    timeoutMs: number,
    connected: number,
    /** Of the connected peers, those the policy lets read the collection (only they are asked). */
    readers: number = connected,
  ) {
    const who = readers === connected ? `${connected} connected now` : `${connected} connected now, ${readers} of them allowed to read it by the cluster policy`
    super(
      'ERR_ACK_TIMEOUT',
      `${what}: ${confirmed.length} of ${wanted} peer(s) confirmed a durable copy within ${timeoutMs} ms (${who}). ` +
        'The local write is durable and keeps replicating: do not write it again; wait longer or check the peers.',
    )
  }
}

/**
 * Waits until `ack.peers` peers confirm they hold the target durably: asks every connected
 * peer not yet counted (HoldsRequest, answered from its durable state), again and again with
 * backoff, until enough confirmed or the timeout. Push and anti-entropy deliver the change
 * meanwhile; a peer that says twice it lacks it (the first answer may race the push) gets the
 * missing delta directly, or a sync round when it is too large for one message. Each peer
 * counts once; peers that connect while waiting are asked too.
 * Rejects with AckTimeoutError (ERR_ACK_TIMEOUT), or ERR_CLOSED once `closing` fires.
 */
export async function waitForAcks(
  ctx: ReplicationContext,
  target: AckTarget,
  ack: AckOptions,
  closing: AbortSignal,
  syncWith: (peer: string) => void,
): Promise<void> {
  if (target.version.byteLength > MAX_HOLDS_VERSION_BYTES) {
    throw new ConvergentError(
      'ERR_TOO_LARGE',
      `${target.what}: the entity's version is ${target.version.byteLength} bytes, more than a peer is asked about (${MAX_HOLDS_VERSION_BYTES}); the local write is durable and replicates, but cannot be acknowledged.`,
    )
  }
  const deadline = new AbortController()
  const timer = ctx.clock.setTimeout(() => deadline.abort(), ack.timeoutMs)
  const signal = AbortSignal.any([deadline.signal, closing])
  const wait = new AckWait(ctx, target, signal, syncWith)
  try {
    for (let pause = FIRST_POLL_MS; ; pause = Math.min(2 * pause, MAX_POLL_MS)) {
      await wait.askAll()
      if (wait.confirmed.size >= ack.peers) return
      if (signal.aborted) break
      await sleep(ctx, pause, signal)
    }
  } finally {
    ctx.clock.clearTimeout(timer)
  }
  const confirmed = [...wait.confirmed]
  if (closing.aborted) {
    throw new ConvergentError(
      'ERR_CLOSED',
      `${target.what}: the replica closed after ${confirmed.length} of ${ack.peers} peer(s) confirmed; the local write is durable and replicates when it opens again.`,
    )
  }
  const connected = ctx.network.peers()
  const readers = connected.filter((peer) => ctx.access.mayRead(peer, target.col.name)).length
  throw new AckTimeoutError(target.what, confirmed, ack.peers, ack.timeoutMs, connected.length, readers)
}

/** The state of one write's wait: who confirmed, who lacks it, who cannot answer. */
class AckWait {
  readonly confirmed = new Set<string>()
  /** "Not held" answers per peer. */
  private readonly lacks = new Map<string, number>()
  /** Peers that do not serve holds queries (older versions): they can never confirm. */
  private readonly unable = new Set<string>()
  /**
   * Peers already sent what they lacked (a delta or a round) in this wait: once each. A peer
   * that keeps saying "not held" must not get the entity again at every poll.
   */
  private readonly sent = new Set<string>()

  constructor(
    private readonly ctx: ReplicationContext,
    private readonly target: AckTarget,
    private readonly signal: AbortSignal,
    private readonly syncWith: (peer: string) => void,
  ) {}

  /** One query to every connected peer not counted yet, in parallel. */
  async askAll(): Promise<void> {
    // Only peers that may read the collection are asked (and sent it): read control.
    const peers = this.ctx.network.peers().filter((p) => !this.confirmed.has(p) && !this.unable.has(p) && this.ctx.access.mayRead(p, this.target.col.name))
    await Promise.all(peers.map((peer) => this.ask(peer)))
  }

  private async ask(peer: string): Promise<void> {
    const { col, id, version } = this.target
    try {
      const reply = await this.request(peer, encodeHoldsRequest({ collection: col.name, backend: col.backend.name, id, version }))
      if (reply.type === MessageType.Error) {
        if (decodeErrorReply(reply.body).unsupportedType === MessageType.HoldsRequest) this.unable.add(peer)
        return
      }
      if (reply.type !== MessageType.HoldsResponse) throw new InvalidMessageError(`expected a holds response, got type ${reply.type}`)
      const answer = decodeHoldsResponse(reply.body)
      if (answer.held) {
        this.confirmed.add(peer)
        return
      }
      const lacks = (this.lacks.get(peer) ?? 0) + 1
      this.lacks.set(peer, lacks)
      if (lacks >= 2 && answer.version !== undefined && !this.sent.has(peer)) {
        this.sent.add(peer)
        try {
          await this.sendMissing(peer, answer.version)
        } catch (err) {
          this.sent.delete(peer) // not delivered (unreachable, refused): sent again at a later poll
          throw err
        }
      }
    } catch (err) {
      if (isConvergentError(err, 'ERR_INVALID_MESSAGE')) drop(this.ctx, peer, 'malformed', `bad answer to a holds query: ${err.message}`)
      // Unreachable, aborted or refused now: asked again next time while time is left.
    }
  }

  /** What the peer lacks, from our durable state: inline when it fits one message, else a round. */
  private async sendMissing(peer: string, theirs: Uint8Array | null): Promise<void> {
    const { col, id } = this.target
    const entity = await acquireDurable(this.ctx.entities, col, id)
    if (entity === undefined) return
    let delta: Uint8Array | null
    try {
      if (!stillDurable(entity)) return // written since it was found durable: asked again later
      delta = col.backend.deltaSince(entity.doc, theirs ?? new Uint8Array(0))
      if (delta !== null) delta = await headed(this.ctx, col, id, delta, peer, { doc: entity.doc, theirVersion: theirs })
    } catch (err) {
      drop(this.ctx, peer, 'malformed', `bad version in a holds answer: ${(err as Error).message}`, { collection: col.name, entity: id })
      return
    } finally {
      this.ctx.entities.release(entity)
    }
    if (delta === null) return
    if (delta.byteLength > inlineLimit(this.ctx.limits)) return this.syncWith(peer)
    const reply = await this.request(peer, encodeDeltasRequest({ collection: col.name, backend: col.backend.name, entries: [[id, delta]] }))
    if (reply.type !== MessageType.Ack) throw new Error(`${peer} did not take the missing delta (answer type ${reply.type})`)
  }

  private async request(peer: string, data: Uint8Array): Promise<{ type: number; body: unknown }> {
    const { maxMessageBytes } = this.ctx.limits
    const stats = this.ctx.stats.of(peer)
    stats.messagesOut++
    stats.bytesOut += data.byteLength
    const response = await abortable(this.ctx.network.request(peer, data, { maxBytes: maxMessageBytes, signal: this.signal }), this.signal)
    stats.messagesIn++
    stats.bytesIn += response.byteLength
    return decodeMessage(response, maxMessageBytes)
  }
}

/** Resolves after `ms` on the replica's clock, or at once when the signal fires. */
function sleep(ctx: ReplicationContext, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const done = (): void => {
      ctx.clock.clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = ctx.clock.setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}
