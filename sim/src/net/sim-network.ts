import { ConvergentError, type Network, type NetworkEvents } from '@convergent/core'
import type { Prng } from '../engine/random.js'
import type { NodeClock } from '../engine/scheduler.js'
import type { Fabric } from './fabric.js'
import { GossipRouter, type GossipItem, type GossipMessage } from './gossip-router.js'
import type { Endpoint, ResponsePayload } from './types.js'

interface PendingRequest {
  readonly peer: string
  settle(outcome: { ok: Uint8Array } | { err: ConvergentError }): void
}

/** Largest gossip payload, as on the libp2p network (4 MiB frame minus a 256 KiB margin). */
const MAX_GOSSIP_BYTES = 4 * 1024 * 1024 - 256 * 1024

/**
 * core's Network for one incarnation of one simulated node: topics through the gossipsub
 * model, requests over the simulated connection. Events reach the replica synchronously from
 * virtual-time tasks; the replica's own async work is drained by the scheduler.
 */
export class SimNetwork implements Network, Endpoint {
  readonly multiaddrs: string[] = []
  private state: 'new' | 'started' | 'stopped' = 'new'
  private events: NetworkEvents | undefined
  private readonly connected = new Set<string>()
  private readonly pending = new Set<PendingRequest>()
  readonly router: GossipRouter

  constructor(
    private readonly fabric: Fabric,
    readonly index: number,
    private readonly clock: NodeClock,
    rng: Prng,
  ) {
    this.router = new GossipRouter(
      {
        self: this.peerId,
        send: (peer, items, published) => this.sendGossip(peer, items, published === true),
        deliver: (msg, via) => this.deliver(msg, via),
        nextMessageId: () => fabric.nextMessageId(),
        now: () => fabric.scheduler.now,
      },
      fabric.spec.gossip,
      clock,
      rng,
      fabric.metrics,
    )
  }

  get peerId(): string {
    return this.fabric.idOf(this.index)
  }

  get isStarted(): boolean {
    return this.state === 'started'
  }

  async start(events: NetworkEvents): Promise<void> {
    if (this.state !== 'new') throw new ConvergentError('ERR_CLOSED', `simulated network ${this.peerId} was already started; a restart uses a new one`)
    this.events = events
    this.state = 'started'
    this.router.start()
    this.fabric.attach(this)
  }

  async stop(): Promise<void> {
    if (this.state === 'stopped') return
    this.shutDown(true)
    for (const call of [...this.pending]) call.settle({ err: new ConvergentError('ERR_CLOSED', 'the network was stopped during the request') })
  }

  /** A crash: connections reset, nothing more is delivered, pending requests never settle. */
  kill(): void {
    if (this.state === 'stopped') return
    this.shutDown(false)
    this.pending.clear()
  }

  private shutDown(graceful: boolean): void {
    const wasStarted = this.state === 'started'
    this.state = 'stopped'
    this.events = undefined
    this.router.stop()
    if (wasStarted) this.fabric.detach(this, graceful)
    this.connected.clear()
  }

  subscribe(topic: string): void {
    this.router.subscribe(topic)
  }

  unsubscribe(topic: string): void {
    this.router.unsubscribe(topic)
  }

  async publish(topic: string, data: Uint8Array): Promise<void> {
    this.assertStarted()
    if (data.byteLength > MAX_GOSSIP_BYTES) {
      throw new ConvergentError('ERR_TOO_LARGE', `message of ${data.byteLength} bytes exceeds the gossip limit of ${MAX_GOSSIP_BYTES}`)
    }
    this.router.publish(topic, data.slice())
  }

  peers(): string[] {
    return this.state === 'started' ? [...this.connected] : []
  }

  request(peer: string, data: Uint8Array, options: { signal?: AbortSignal; maxBytes?: number } = {}): Promise<Uint8Array> {
    const { signal } = options
    const maxBytes = options.maxBytes ?? this.fabric.spec.maxMessageBytes
    return new Promise<Uint8Array>((resolve, reject) => {
      if (signal?.aborted === true) return reject(aborted())
      if (this.state !== 'started') return reject(new ConvergentError('ERR_CLOSED', `simulated network ${this.peerId} is not started`))
      if (data.byteLength > this.fabric.spec.maxMessageBytes) {
        return reject(new ConvergentError('ERR_TOO_LARGE', `request of ${data.byteLength} bytes exceeds maxMessageBytes ${this.fabric.spec.maxMessageBytes}`))
      }
      const target = this.fabric.index(peer)
      if (target === undefined || !this.connected.has(peer)) {
        return reject(new ConvergentError('ERR_NETWORK', `not connected to peer ${peer}`))
      }
      const timer = this.clock.setTimeout(
        () => call.settle({ err: new ConvergentError('ERR_NETWORK', `request to ${peer} timed out after ${this.fabric.spec.requestTimeoutMs} ms`) }),
        this.fabric.spec.requestTimeoutMs,
      )
      const onAbort = (): void => call.settle({ err: aborted() })
      const call: PendingRequest = {
        peer,
        settle: (outcome) => {
          if (!this.pending.delete(call)) return
          this.clock.clearTimeout(timer)
          signal?.removeEventListener('abort', onAbort)
          if ('ok' in outcome) resolve(outcome.ok)
          else reject(outcome.err)
        },
      }
      this.pending.add(call)
      signal?.addEventListener('abort', onAbort, { once: true })
      const sent = this.fabric.sendRequest(this, target, data.slice(), (payload: ResponsePayload) => {
        if ('error' in payload) return call.settle({ err: new ConvergentError('ERR_NETWORK', `peer ${peer} failed the request: ${payload.error}`) })
        if (payload.ok.byteLength > maxBytes) {
          return call.settle({
            err: new ConvergentError('ERR_TOO_LARGE', `response of ${payload.ok.byteLength} bytes from ${peer} exceeds maxBytes ${maxBytes}`),
          })
        }
        call.settle({ ok: payload.ok })
      })
      if (!sent) call.settle({ err: new ConvergentError('ERR_NETWORK', `not connected to peer ${peer}`) })
    })
  }

  // --- called by the fabric ---

  /** A connection is up; `outbound` if we dialed it. */
  peerUp(peer: string, outbound: boolean): void {
    if (this.state !== 'started' || this.connected.has(peer)) return
    this.connected.add(peer)
    this.router.peerConnected(peer, outbound)
    this.events?.onPeerConnected(peer)
  }

  peerDown(peer: string): void {
    if (!this.connected.delete(peer)) return
    this.router.peerDisconnected(peer)
    for (const call of [...this.pending]) {
      if (call.peer === peer) call.settle({ err: new ConvergentError('ERR_NETWORK', `disconnected from peer ${peer} during the request`) })
    }
    this.events?.onPeerDisconnected(peer)
  }

  gossipArrived(from: string, items: readonly GossipItem[]): void {
    if (this.state === 'started') this.router.receive(from, items)
  }

  requestArrived(from: string, data: Uint8Array, respond: (payload: ResponsePayload) => void): void {
    const events = this.events
    if (events === undefined) return
    let answer: Promise<Uint8Array>
    try {
      answer = events.onRequest(from, data)
    } catch (err) {
      answer = Promise.reject(err instanceof Error ? err : new Error(String(err)))
    }
    answer.then(
      (bytes) => respond({ ok: bytes.slice() }),
      (err: unknown) => respond({ error: err instanceof Error ? err.message : String(err) }),
    )
  }

  private sendGossip(peer: string, items: readonly GossipItem[], published: boolean): void {
    const to = this.fabric.index(peer)
    if (to !== undefined && this.state === 'started') this.fabric.sendGossip(this.index, to, items, published)
  }

  private deliver(msg: GossipMessage, via: string): void {
    this.events?.onMessage(msg.topic, msg.data.slice(), msg.origin, via === msg.origin ? undefined : via)
  }

  private assertStarted(): void {
    if (this.state !== 'started') {
      throw new ConvergentError('ERR_CLOSED', `simulated network ${this.peerId} is ${this.state === 'new' ? 'not started; call start() first' : 'stopped'}`)
    }
  }
}

function aborted(): ConvergentError {
  return new ConvergentError('ERR_ABORTED', 'the request was aborted through its signal')
}
