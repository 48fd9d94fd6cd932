import { codeOf } from '../logger.js'
import type { DurableChange } from '../changes.js'
import { jittered, monotonicNow, type TimerHandle } from '../clock.js'
import { ConvergentError } from '../errors.js'
import { topicOf, type ReplicationContext } from './context.js'
import { Pusher } from './pusher.js'
import { PeerRateLimiter } from './rate-limit.js'
import { drop, receivePush } from './receiver.js'
import { offerPolicy } from './policy-exchange.js'
import { SyncClient, type RoundResult } from './sync-client.js'
import { SyncServer } from './sync-server.js'
import { abortable } from './budget.js'
import { Announcer } from './announce.js'
import { GapRounds } from './gap-rounds.js'
import { refusalOf } from './messages/reply.js'

/** How long the other side waits for the peer's on-connect round before starting one (ms, jittered). */
const CONNECT_FALLBACK_MS = 2_000
/** How soon a round follows the discovery of a damaged record (coalescing several). */
const REPAIR_DELAY_MS = 100
/** Least time between rounds with one peer that its announcements or waiting pushes start. */
const ANNOUNCE_ROUND_GAP_MS = 1_000
/** How soon a key exchange follows a new subject key, a tombstone or a missing key (coalescing several) … */
const KEYS_DELAY_MS = 20
/** … and the least time between two of them. */
const KEYS_GAP_MS = 500

/**
 * An anti-entropy round that ended: one this replica started (with its result, or the error
 * that ended it), or one a peer started that found both sides equal at once (its roots
 * summary matched ours) — the only outcome the answering side can tell.
 */
export interface RoundEvent {
  peer: string
  startedBy: 'us' | 'peer'
  /** When it began (clock ms). */
  at: number
  /** How long it took (ms, from the clock's monotonic time); 0 for a peer's round. */
  ms: number
  result?: RoundResult
  error?: Error
}

export interface ReplicatorOptions {
  /** Mean interval between anti-entropy rounds with every peer (ms); 0 turns periodic rounds off. */
  syncIntervalMs: number
  /**
   * Sync with a peer as soon as it connects. One side starts the round (the one whose peer id
   * sorts first; a round is two-way), the other starts its own only if none has begun after
   * CONNECT_FALLBACK_MS — so a late joiner receives everything once, not once per direction.
   */
  syncOnConnect: boolean
  /** Push batching window (ms): local deltas gathered this long go out together. 0 = within one tick. */
  pushDelayMs?: number
}

/**
 * Wires replication to the network: push (gossip) out and in, anti-entropy rounds on connect,
 * on a jittered interval and on demand (replica.sync()), and the sync protocol's server side.
 */
export class Replicator {
  readonly pusher: Pusher
  private readonly client: SyncClient
  private readonly server: SyncServer
  private readonly limiter: PeerRateLimiter
  private readonly subscribed = new Set<string>()
  /** The round in flight (or queued) per peer; rounds with one peer never overlap. */
  private readonly rounds = new Map<string, Promise<unknown>>()
  private timer: TimerHandle | undefined
  /** When the last round with each peer began, whichever side started it (clock ms). */
  private readonly lastRoundAt = new Map<string, number>()
  /** Fallback timers of peers expected to start the on-connect round. */
  private readonly fallbacks = new Map<string, TimerHandle>()
  private stopped = false
  private readonly inflight = new Set<Promise<unknown>>()
  /** The last round with each connected peer (see RoundEvent); forgotten when it disconnects. */
  readonly lastRounds = new Map<string, RoundEvent>()
  /** Told of every RoundEvent (replica.observe). */
  onRound: ((event: RoundEvent) => void) | undefined = undefined

  constructor(
    private readonly ctx: ReplicationContext,
    private readonly options: ReplicatorOptions,
  ) {
    const delay = options.pushDelayMs ?? 0
    if (!Number.isFinite(delay) || delay < 0) throw new ConvergentError('ERR_INVALID_ARGUMENT', `pushDelayMs must be a number ≥ 0, got ${delay}`)
    this.limiter = new PeerRateLimiter(ctx.clock, ctx.limits)
    this.pusher = new Pusher(ctx, options.pushDelayMs ?? 0)
    this.client = new SyncClient(ctx)
    this.server = new SyncServer(
      ctx,
      this.limiter,
      (peer) => this.lastRoundAt.set(peer, ctx.clock.now()),
      (peer) => this.roundEnded({ peer, startedBy: 'peer', at: ctx.clock.now(), ms: 0 }),
    )
    this.announcer = new Announcer(ctx, this.limiter, (peer) => this.roundSoonWith(peer))
  }

  private readonly announcer: Announcer
  private readonly gaps = new GapRounds({
    roundRunning: (peer) => this.rounds.get(peer),
    roundSoon: (peer) => this.roundSoonWith(peer),
    holdsWaiting: (collection, id) => this.ctx.entities.holdsWaiting(collection, id),
  })

  /**
   * A round with a peer soon: it told us of a collection we do not have (the round pulls the
   * collection, which subscribes us to it), or a push of it waits here for what it did not bring
   * (in a cluster, one that overtook the push before it: head-judge.ts waitsServably; or one taken
   * with changes left waiting, a push before it lost), which the round brings instead of the next
   * scheduled one. At most one a second per peer: one asked for sooner is put off until then, not
   * dropped (nothing may ask again: the push waits here already). And at most one waiting to
   * begin per peer, however many are asked for: a peer whose rounds stall (or run long) while its
   * pushes keep waiting must not queue one a second behind them.
   */
  private roundSoonWith(peer: string): void {
    if (this.stopped || !this.ctx.network.peers().includes(peer) || this.soon.has(peer)) return
    const now = this.ctx.clock.now()
    const last = this.lastAnnounceRound.get(peer)
    if (last !== undefined && now - last < ANNOUNCE_ROUND_GAP_MS) {
      const put: { timer?: TimerHandle } = {}
      put.timer = this.ctx.clock.setTimeout(
        () => {
          if (this.soon.get(peer) !== put) return
          this.soon.delete(peer)
          this.roundSoonWith(peer)
        },
        last + ANNOUNCE_ROUND_GAP_MS - now,
      )
      this.soon.set(peer, put)
      return
    }
    this.lastAnnounceRound.set(peer, now)
    const queued: { timer?: TimerHandle } = {}
    this.soon.set(peer, queued)
    // After any round already running with it (which may have begun before the collection existed).
    this.track(
      this.roundWith(peer, undefined, () => {
        if (this.soon.get(peer) === queued) this.soon.delete(peer)
      }).catch(() => undefined),
    )
  }

  /** When each peer's announcements or waiting pushes last started a round (at most one a second per peer). */
  private readonly lastAnnounceRound = new Map<string, number>()
  /** Per peer, the round roundSoonWith put off (with its timer), or queued and not begun yet (without). */
  private readonly soon = new Map<string, { timer?: TimerHandle }>()

  /** Forgets a round put off or queued for a peer (it went away, or the replicator stops). */
  private forgetSoon(peer: string): void {
    const soon = this.soon.get(peer)
    if (soon === undefined) return
    this.soon.delete(peer)
    if (soon.timer !== undefined) this.ctx.clock.clearTimeout(soon.timer)
  }

  async start(): Promise<void> {
    await this.ctx.network.start({
      onMessage: (topic, data, from, via) => {
        if (!this.ctx.access.isMember(from)) drop(this.ctx, from, 'forbidden', 'gossip from a peer the cluster policy does not name')
        else if (this.announcer.owns(topic)) this.announcer.receive(data, from)
        else
          this.track(
            receivePush(this.ctx, this.limiter, topic, data, from).then((outcome) => {
              if (outcome === 'done') return
              // The round goes to the author, or where it is no neighbour, to the relay that passed its push on.
              const peer = via === undefined || this.ctx.network.peers().includes(from) ? from : via
              if (outcome === 'waits') this.roundSoonWith(peer)
              else this.gaps.found(peer, outcome.collection, outcome.gaps)
            }),
          )
      },
      onRequest: (from, data) => this.server.handle(from, data),
      onPeerConnected: (peer) => this.peerConnected(peer),
      onPeerDisconnected: (peer) => {
        this.lastAnnounceRound.delete(peer)
        this.forgetSoon(peer)
        this.gaps.forget(peer)
        this.ctx.dropLog.forget(peer)
        this.limiter.forget(peer)
        this.server.forget(peer)
        this.client.forget(peer)
        this.cancelFallback(peer)
        this.lastRoundAt.delete(peer)
        this.lastRounds.delete(peer)
      },
    })
    this.announcer.start()
    this.unlisten = this.ctx.events.onEvery((change) => this.pushLocal(change))
    for (const name of this.ctx.entities.collections.keys()) this.subscribe(name)
    this.schedule()
  }

  /** Whether we start the on-connect round with this peer (the lower peer id does). */
  private initiatesWith(peer: string): boolean {
    return this.ctx.network.peerId < peer
  }

  private peerConnected(peer: string): void {
    if (!this.options.syncOnConnect || this.stopped) return
    if (this.initiatesWith(peer)) {
      this.track(this.roundWith(peer).catch(() => undefined))
      return
    }
    // The peer starts the round; if it has not within the fallback delay, we do. (A round of
    // either side since the connection shows in lastRoundAt, which a disconnect clears; its
    // roots request may even arrive before our own connect event.)
    this.cancelFallback(peer)
    const timer = this.ctx.clock.setTimeout(
      () => {
        this.fallbacks.delete(peer)
        if (this.stopped || !this.ctx.network.peers().includes(peer)) return
        if (this.lastRoundAt.has(peer) || this.rounds.has(peer)) return
        this.track(this.roundWith(peer).catch(() => undefined))
      },
      jittered(this.ctx.clock, CONNECT_FALLBACK_MS),
    )
    this.fallbacks.set(peer, timer)
  }

  private cancelFallback(peer: string): void {
    const timer = this.fallbacks.get(peer)
    if (timer === undefined) return
    this.ctx.clock.clearTimeout(timer)
    this.fallbacks.delete(peer)
  }

  /** Subscribes to a collection's gossip topic (idempotent). */
  subscribe(collection: string): void {
    if (this.subscribed.has(collection) || this.stopped) return
    this.subscribed.add(collection)
    this.ctx.network.subscribe(topicOf(this.ctx.namespace, collection))
  }

  /** Leaves a collection's gossip topic (it was dropped). */
  unsubscribe(collection: string): void {
    if (!this.subscribed.delete(collection)) return
    this.ctx.network.unsubscribe(topicOf(this.ctx.namespace, collection))
  }

  /** A durable local change: push it (and tell peers of the collection if this write created it). */
  private pushLocal(change: DurableChange): void {
    if (change.peer !== undefined || this.stopped) return
    this.subscribe(change.collection)
    if (!this.ctx.access.readableByAll(change.collection)) {
      // Gossip reaches every subscriber of the topic, whatever its rights: a collection not
      // every member may read travels only in anti-entropy, which answers readers alone. Its
      // heads are signed all the same (the pusher does, without publishing).
      if (this.ctx.heads !== undefined && change.backend.history !== undefined) {
        this.pusher.enqueue(change.collection, change.backend, change.id, change.delta, change.entry.time, change.entry.seq, change.span, false)
      }
      this.repairSoon()
      return
    }
    this.pusher.enqueue(change.collection, change.backend, change.id, change.delta, change.entry.time, change.entry.seq, change.span)
    if (change.created) this.announcer.announce(change.collection, change.backend)
  }

  /**
   * A key exchange with every connected peer soon (coalesced): this replica made a subject key
   * or a tombstone, or a value names a key it lacks. At most one every KEYS_GAP_MS.
   */
  keysSoon(): void {
    if (this.stopped || this.keysTimer !== undefined) return
    const wait = Math.max(KEYS_DELAY_MS, this.lastKeysAt + KEYS_GAP_MS - this.ctx.clock.now())
    this.keysTimer = this.ctx.clock.setTimeout(() => {
      this.keysTimer = undefined
      if (this.stopped) return
      this.lastKeysAt = this.ctx.clock.now()
      for (const peer of this.ctx.network.peers()) {
        this.track(
          this.client.keysOnly(peer).catch((err: unknown) => {
            if (!this.stopped) this.ctx.logger.warn(`key exchange with ${peer} failed (the next round repeats it): ${(err as Error).message}`, { peer })
          }),
        )
      }
    }, wait)
  }

  private keysTimer: TimerHandle | undefined
  private lastKeysAt = -Infinity

  /** Offers our policy to every connected peer now (an admin just set it). */
  async offerPolicyToAll(): Promise<void> {
    await Promise.allSettled(
      this.ctx.network
        .peers()
        .map((peer) =>
          offerPolicy(this.ctx, peer).catch((err: unknown) =>
            this.ctx.logger.warn(`could not offer the cluster policy to ${peer} (the next round will): ${(err as Error).message}`),
          ),
        ),
    )
  }

  /**
   * One round with every connected peer; resolves when all are done. A periodic round
   * (`periodic`) skips a peer that has a round in flight with us, or had one (started by
   * either side) within the last half interval: a round is two-way, one is enough.
   */
  async syncAll(signal?: AbortSignal, periodic = false): Promise<RoundResult[]> {
    let peers = this.ctx.network.peers()
    if (periodic) {
      const recent = this.ctx.clock.now() - this.options.syncIntervalMs / 2
      peers = peers.filter((p) => !this.rounds.has(p) && (this.lastRoundAt.get(p) ?? -Infinity) < recent)
    }
    const results = await Promise.allSettled(peers.map((p) => this.roundWith(p, signal)))
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    // Aborted through the caller's signal: that, not a network failure.
    if (signal?.aborted === true && failures.length > 0) throw failures[0]!.reason
    if (failures.length > 0 && failures.length === peers.length) {
      throw new ConvergentError('ERR_NETWORK', `sync failed with every peer: ${(failures[0]!.reason as Error).message}`, { cause: failures[0]!.reason })
    }
    return results.flatMap((r) => (r.status === 'fulfilled' && r.value ? [r.value] : []))
  }

  /** A round with one peer, after any round already running with it; `begins` is called as it begins (or would, once stopped). */
  roundWith(peer: string, signal?: AbortSignal, begins?: () => void): Promise<RoundResult | undefined> {
    const previous = this.rounds.get(peer) ?? Promise.resolve(undefined)
    const next = abortable(
      previous.catch(() => undefined),
      signal,
    ).then(async () => {
      begins?.()
      if (this.stopped) return undefined
      const at = this.ctx.clock.now()
      this.lastRoundAt.set(peer, at)
      const t0 = monotonicNow(this.ctx.clock)
      try {
        const result = await this.client.round(peer, signal)
        this.roundEnded({ peer, startedBy: 'us', at, ms: Math.max(0, monotonicNow(this.ctx.clock) - t0), result })
        return result
      } catch (err) {
        this.lastRoundAt.delete(peer) // the next periodic round must not skip this peer
        this.ctx.stats.of(peer).syncFailures++
        if (!this.stopped)
          this.ctx.logger.warn(`anti-entropy round with ${peer} failed: ${(err as Error).message}`, { peer, ...codeOf(err), ...refusalOf(err) })
        this.roundEnded({ peer, startedBy: 'us', at, ms: Math.max(0, monotonicNow(this.ctx.clock) - t0), error: err as Error })
        throw err
      }
    })
    // The entry waits for this round AND the one before it: a round whose caller gave up
    // waiting (its signal) must not let the next one start while the previous still runs.
    const entry: Promise<unknown> = Promise.allSettled([previous, next]).finally(() => {
      if (this.rounds.get(peer) === entry) this.rounds.delete(peer)
    })
    this.rounds.set(peer, entry)
    return next
  }

  /** Remembers the round for the peer (while it is connected) and tells the observer. */
  private roundEnded(event: RoundEvent): void {
    if (this.ctx.network.peers().includes(event.peer)) this.lastRounds.set(event.peer, event)
    this.onRound?.(event)
  }

  /**
   * Something local was damaged and dropped (a corrupt record): a round with every peer soon,
   * so it comes back. Coalesced: one pending repair at a time.
   */
  repairSoon(): void {
    if (this.stopped || this.repairTimer !== undefined) return
    this.repairTimer = this.ctx.clock.setTimeout(() => {
      this.repairTimer = undefined
      this.track(this.syncAll().catch(() => undefined))
    }, REPAIR_DELAY_MS)
  }

  private repairTimer: TimerHandle | undefined

  private schedule(): void {
    if (this.options.syncIntervalMs <= 0 || this.stopped) return
    this.timer = this.ctx.clock.setTimeout(
      () => {
        this.track(this.syncAll(undefined, true).catch(() => undefined))
        this.schedule()
      },
      jittered(this.ctx.clock, this.options.syncIntervalMs),
    )
  }

  private track(p: Promise<unknown>): void {
    this.inflight.add(p)
    // Receive paths never reject (they drop and count); should one ever, it is logged, not an unhandled rejection.
    p.catch((err: unknown) => this.ctx.logger.error(`a receive path failed: ${(err as Error)?.message ?? String(err)}`)).finally(() => this.inflight.delete(p))
  }

  private unlisten: (() => void) | undefined

  async stop(): Promise<void> {
    this.stopped = true
    this.unlisten?.()
    if (this.timer !== undefined) this.ctx.clock.clearTimeout(this.timer)
    if (this.repairTimer !== undefined) this.ctx.clock.clearTimeout(this.repairTimer)
    if (this.keysTimer !== undefined) this.ctx.clock.clearTimeout(this.keysTimer)
    for (const peer of [...this.fallbacks.keys()]) this.cancelFallback(peer)
    for (const peer of [...this.soon.keys()]) this.forgetSoon(peer)
    this.pusher.flush()
    await this.pusher.drain()
    await this.ctx.network.stop()
    await Promise.allSettled([...this.inflight, ...this.rounds.values()])
  }
}
