import type { Network, NetworkEvents } from '@convergent/core'
import type { Libp2pNetwork } from '@convergent/libp2p'
import type { Metrics } from '../report/metrics.js'
import { LinkModel } from '../net/link-model.js'
import { FRAME_OVERHEAD, REQUEST_STREAM_OVERHEAD } from '../net/sizes.js'
import type { RealClock } from './real-clock.js'

/**
 * Wraps a real libp2p Network with the scenario's link conditions, in real time: each
 * delivered gossip message is delayed by a one-way latency sample (and may be dropped,
 * duplicated or held back), each sync request and its response are delayed one way each
 * (a "lost" one costs a retransmission delay, as on TCP). Partitions are not done here but at
 * the connection layer (see LiveEnvironment). Gossipsub relays inside libp2p, so latency is
 * applied once per delivery, not per hop — unlike the simulator.
 */
export class FaultyNetwork implements Network {
  constructor(
    readonly inner: Libp2pNetwork,
    private readonly link: LinkModel,
    private readonly clock: RealClock,
    private readonly metrics: Metrics,
    private readonly retransmitMs: number,
  ) {}

  get peerId(): string {
    return this.inner.peerId
  }

  get multiaddrs(): string[] {
    return this.inner.multiaddrs
  }

  start(events: NetworkEvents): Promise<void> {
    return this.inner.start({
      onMessage: (topic, data, from, via) => this.incoming(events, topic, data, from, via),
      onRequest: (from, data) => events.onRequest(from, data),
      onPeerConnected: (peer) => events.onPeerConnected(peer),
      onPeerDisconnected: (peer) => events.onPeerDisconnected(peer),
    })
  }

  stop(): Promise<void> {
    return this.inner.stop()
  }

  subscribe(topic: string): void {
    this.inner.subscribe(topic)
  }

  unsubscribe(topic: string): void {
    this.inner.unsubscribe(topic)
  }

  publish(topic: string, data: Uint8Array): Promise<void> {
    return this.inner.publish(topic, data)
  }

  peers(): string[] {
    return this.inner.peers()
  }

  async request(peer: string, data: Uint8Array, options?: { signal?: AbortSignal; maxBytes?: number }): Promise<Uint8Array> {
    this.metrics.syncFrame(FRAME_OVERHEAD + REQUEST_STREAM_OVERHEAD + data.byteLength, true)
    await this.clock.sleep(this.oneWay(data.byteLength))
    const response = await this.inner.request(peer, data, options)
    this.metrics.syncFrame(FRAME_OVERHEAD + response.byteLength, false)
    await this.clock.sleep(this.oneWay(response.byteLength))
    return response
  }

  /** A reliable one-way trip: latency, plus retransmission delays for losses. */
  private oneWay(bytes: number): number {
    const at = this.link.plan(0, 0, bytes, true, this.retransmitMs, false)
    this.link.reset(0)
    return Math.max(0, at)
  }

  private incoming(events: NetworkEvents, topic: string, data: Uint8Array, from: string, via?: string): void {
    const at = this.link.plan(0, 1, data.byteLength, false, 0, false)
    const duplicateAt = this.link.duplicateAt
    this.link.reset(1)
    if (Number.isNaN(at)) {
      this.metrics.traffic.framesLost++
      return
    }
    this.clock.setTimeout(() => events.onMessage(topic, data, from, via), at)
    if (!Number.isNaN(duplicateAt)) this.clock.setTimeout(() => events.onMessage(topic, data.slice(), from, via), duplicateAt)
  }
}
