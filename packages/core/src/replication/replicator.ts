import type { Backend } from '../backend.js'
import { jittered, type TimerHandle } from '../clock.js'
import { ConvergentError } from '../errors.js'
import { topicOf, type ReplicationContext } from './context.js'
import { Pusher } from './pusher.js'
import { PeerRateLimiter } from './rate-limit.js'
import { receivePush } from './receiver.js'
import { SyncClient, type RoundResult } from './sync-client.js'
import { SyncServer } from './sync-server.js'

export interface ReplicatorOptions {
  /** Mean interval between anti-entropy rounds with every peer (ms); 0 turns periodic rounds off. */
  syncIntervalMs: number
  /** Run a round with a peer as soon as it connects. */
  syncOnConnect: boolean
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
  private readonly rounds = new Map<string, Promise<RoundResult | undefined>>()
  private timer: TimerHandle | undefined
  private stopped = false
  private readonly inflight = new Set<Promise<unknown>>()

  constructor(
    private readonly ctx: ReplicationContext,
    private readonly options: ReplicatorOptions,
  ) {
    this.limiter = new PeerRateLimiter(ctx.clock, ctx.limits.inboundRatePerSecond, ctx.limits.inboundBurst)
    this.pusher = new Pusher(ctx)
    this.client = new SyncClient(ctx)
    this.server = new SyncServer(ctx, this.limiter)
  }

  async start(): Promise<void> {
    await this.ctx.network.start({
      onMessage: (topic, data, from) => this.track(receivePush(this.ctx, this.limiter, topic, data, from)),
      onRequest: (from, data) => this.server.handle(from, data),
      onPeerConnected: (peer) => {
        if (this.options.syncOnConnect) this.track(this.roundWith(peer).catch(() => undefined))
      },
      onPeerDisconnected: (peer) => this.limiter.forget(peer),
    })
    for (const name of this.ctx.entities.collections.keys()) this.subscribe(name)
    this.schedule()
  }

  /** Subscribes to a collection's gossip topic (idempotent). */
  subscribe(collection: string): void {
    if (this.subscribed.has(collection) || this.stopped) return
    this.subscribed.add(collection)
    this.ctx.network.subscribe(topicOf(this.ctx.namespace, collection))
  }

  /** A durable local delta: push it. */
  published(collection: string, backend: Backend, id: string, delta: Uint8Array): void {
    this.subscribe(collection)
    this.pusher.enqueue(collection, backend, id, delta)
  }

  /** One round with every connected peer; resolves when all are done. */
  async syncAll(signal?: AbortSignal): Promise<RoundResult[]> {
    const peers = this.ctx.network.peers()
    const results = await Promise.allSettled(peers.map((p) => this.roundWith(p, signal)))
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failures.length > 0 && failures.length === peers.length) {
      throw new ConvergentError('ERR_NETWORK', `sync failed with every peer: ${(failures[0]!.reason as Error).message}`, { cause: failures[0]!.reason })
    }
    return results.flatMap((r) => (r.status === 'fulfilled' && r.value ? [r.value] : []))
  }

  /** A round with one peer, after any round already running with it. */
  roundWith(peer: string, signal?: AbortSignal): Promise<RoundResult | undefined> {
    const previous = this.rounds.get(peer) ?? Promise.resolve(undefined)
    const next = previous
      .catch(() => undefined)
      .then(async () => {
        if (this.stopped) return undefined
        try {
          return await this.client.round(peer, signal)
        } catch (err) {
          this.ctx.stats.of(peer).syncFailures++
          if (!this.stopped) this.ctx.logger.warn(`anti-entropy round with ${peer} failed: ${(err as Error).message}`)
          throw err
        }
      })
    const settled = next.finally(() => {
      if (this.rounds.get(peer) === settled) this.rounds.delete(peer)
    })
    settled.catch(() => undefined)
    this.rounds.set(peer, settled)
    return next
  }

  private schedule(): void {
    if (this.options.syncIntervalMs <= 0 || this.stopped) return
    this.timer = this.ctx.clock.setTimeout(() => {
      this.track(this.syncAll().catch(() => undefined))
      this.schedule()
    }, jittered(this.ctx.clock, this.options.syncIntervalMs))
  }

  private track(p: Promise<unknown>): void {
    this.inflight.add(p)
    void p.finally(() => this.inflight.delete(p))
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer !== undefined) this.ctx.clock.clearTimeout(this.timer)
    this.pusher.flush()
    await this.pusher.drain()
    await this.ctx.network.stop()
    await Promise.allSettled([...this.inflight, ...this.rounds.values()])
  }
}
