import './polyfill.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { TopicValidatorResult, type GossipsubMessage } from '@libp2p/gossipsub'
import type { Connection, IdentifyResult, Logger, PeerId, PrivateKey, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { ConvergentError, jittered, wrapError, type Network, type NetworkEvents } from '@convergent/core'
import { loadOrCreateIdentity } from './identity.js'
import { createNode, IDENTIFY_TIMEOUT_MS, MAX_GOSSIP_PAYLOAD_BYTES, type ConvergentLibp2p } from './node.js'
import { DEFAULT_CONNECTION_MANAGER, validate, type Libp2pNetworkOptions, type Settings } from './options.js'
import { Redialer } from './redial.js'
import { MembershipGate, signerOf } from './membership.js'
import { sendSyncRequest } from './sync-client.js'
import { serveSyncStream } from './sync-server.js'

/** Concurrent sync requests one peer may have open with us. */
const MAX_INBOUND_REQUESTS = 8

/** A Network over libp2p: gossipsub for topics, a stream protocol for requests. */
export async function createLibp2pNetwork(options: Libp2pNetworkOptions = {}): Promise<Libp2pNetwork> {
  // The cluster key goes to the node and is not kept here (util.inspect of the network would show it).
  const { clusterKey, ...settings } = validate(options)
  const privateKey =
    options.privateKey ?? (options.identityFile !== undefined ? await loadOrCreateIdentity(options.identityFile) : await generateKeyPair('Ed25519'))
  const gate = new MembershipGate()
  const libp2p = await createNode({
    privateKey,
    listen: settings.listen,
    ...(clusterKey === undefined ? {} : { clusterKey }),
    connectionGater: gate.gater(options.connectionGater),
    connectionManager: { ...DEFAULT_CONNECTION_MANAGER, ...options.connectionManager },
  })
  return new Libp2pNetwork(libp2p, settings, gate, privateKey)
}

type State = 'new' | 'started' | 'stopped'

/** Identify runs on every new connection: at most this many attempts (a failed one is retried). */
const IDENTIFY_ATTEMPTS = 3
/** Delay before the second attempt (doubled for the third), jittered. */
const IDENTIFY_RETRY_MS = 500

export class Libp2pNetwork implements Network {
  readonly peerId: string
  /** The sync protocol id this node serves and dials. */
  readonly protocol: string
  /** Largest gossip payload published or delivered. */
  readonly maxGossipBytes: number
  private state: State = 'new'
  private events: NetworkEvents | undefined
  private readonly topics = new Set<string>()
  /**
   * Connected peers that speak our sync protocol (so our namespace), as identify told us.
   * Only they are peers of ours: listed by peers(), told to onPeerConnected and
   * onPeerDisconnected. A connected peer of another namespace (or not a Convergent node at all)
   * is not: a replica would sync with it, ask it for counter rights, and fail.
   */
  private readonly members = new Set<string>()
  private readonly stopController = new AbortController()
  private readonly redialer: Redialer
  private readonly log: Logger

  constructor(
    readonly libp2p: ConvergentLibp2p,
    private readonly settings: Omit<Settings, 'clusterKey'>,
    private readonly gate: MembershipGate = new MembershipGate(),
    privateKey?: PrivateKey,
  ) {
    // Kept as a function, not a field: util.inspect of the network must not show the key.
    this.sign = privateKey === undefined ? undefined : signerOf(privateKey)
    this.peerId = libp2p.peerId.toString()
    this.protocol = settings.protocol
    this.maxGossipBytes = Math.min(settings.maxGossipBytes, settings.maxMessageBytes, MAX_GOSSIP_PAYLOAD_BYTES)
    this.log = libp2p.logger.forComponent('convergent:libp2p')
    this.redialer = new Redialer(settings.peers, {
      clock: settings.clock,
      minMs: settings.redialMinMs,
      maxMs: settings.redialMaxMs,
      dial: async (address) => {
        const connection = await this.libp2p.dial(multiaddr(address), { signal: this.stopController.signal })
        return connection.remotePeer.toString()
      },
      isConnected: (peer) => this.libp2p.getConnections(peerIdFromString(peer)).length > 0,
      log: this.log,
    })
  }

  /** Signs with this node's key (the one its peer id names); undefined for a node built without its key. */
  readonly sign: ((data: Uint8Array) => Promise<Uint8Array>) | undefined

  /**
   * The cluster's members (from the adopted policy): connections to anyone else are closed
   * now and refused from here on, both ways. undefined lets everyone in again.
   */
  restrict(members: ReadonlySet<string> | undefined): void {
    this.gate.set(members)
    if (this.state !== 'started') return
    for (const connection of this.libp2p.getConnections()) {
      if (this.gate.allows(connection.remotePeer)) continue
      this.log('closing the connection to %s: not a member of the cluster', connection.remotePeer)
      void this.libp2p.hangUp(connection.remotePeer).catch(() => undefined)
    }
  }

  /** The bootstrap peers' addresses (the `peers` option): dialed on start and redialed. */
  get bootstrapPeers(): readonly string[] {
    return this.settings.peers
  }

  /** Listening addresses, each ending in /p2p/<peerId>. */
  get multiaddrs(): string[] {
    return this.libp2p.getMultiaddrs().map((ma) => ma.toString())
  }

  async start(events: NetworkEvents): Promise<void> {
    if (this.state !== 'new') {
      throw new ConvergentError('ERR_CLOSED', 'a libp2p network starts once; create a new one (same identityFile keeps the peer id)')
    }
    this.state = 'started'
    this.events = events
    this.libp2p.addEventListener('connection:open', this.onConnectionOpen)
    this.libp2p.addEventListener('peer:identify', this.onPeerIdentify)
    this.libp2p.addEventListener('peer:disconnect', this.onPeerDisconnect)
    this.libp2p.services.pubsub.addEventListener('gossipsub:message', this.onGossip)
    try {
      // A peer holds at most this many requests open with us at once (a round needs ~3):
      // streams that stall with a large frame half-sent cost memory until their timeout.
      await this.libp2p.handle(this.protocol, this.onSyncStream, { maxInboundStreams: MAX_INBOUND_REQUESTS })
      await this.libp2p.start()
    } catch (err) {
      await this.stop()
      throw wrapError('ERR_NETWORK', `libp2p could not start listening on ${this.settings.listen.join(', ')}`, err)
    }
    for (const topic of this.topics) this.joinTopic(topic)
    this.redialer.start()
  }

  async stop(): Promise<void> {
    if (this.state === 'stopped') return
    this.state = 'stopped'
    // Detach first: nothing reaches the events once stop() has begun.
    this.events = undefined
    this.stopController.abort()
    this.redialer.stop()
    this.libp2p.removeEventListener('connection:open', this.onConnectionOpen)
    this.libp2p.removeEventListener('peer:identify', this.onPeerIdentify)
    this.libp2p.removeEventListener('peer:disconnect', this.onPeerDisconnect)
    this.libp2p.services.pubsub.removeEventListener('gossipsub:message', this.onGossip)
    this.members.clear()
    await this.libp2p.stop()
  }

  subscribe(topic: string): void {
    if (this.topics.has(topic)) return
    this.topics.add(topic)
    if (this.state === 'started') this.joinTopic(topic)
  }

  unsubscribe(topic: string): void {
    if (!this.topics.delete(topic)) return
    if (this.state !== 'started') return
    this.libp2p.services.pubsub.unsubscribe(topic)
    this.libp2p.services.pubsub.topicValidators.delete(topic)
  }

  async publish(topic: string, data: Uint8Array): Promise<void> {
    this.assertStarted()
    if (data.byteLength > this.maxGossipBytes) {
      throw new ConvergentError(
        'ERR_TOO_LARGE',
        `message of ${data.byteLength} bytes exceeds the gossip limit of ${this.maxGossipBytes}; send it over a request instead`,
      )
    }
    try {
      // A copy: gossipsub keeps the message to answer later IWANTs, the caller may reuse its buffer.
      await this.libp2p.services.pubsub.publish(topic, data.slice())
    } catch (err) {
      // allowPublishToZeroTopicPeers makes this rare, but it is never an error for us.
      if (err instanceof Error && err.message.includes('NoPeersSubscribedToTopic')) return
      throw wrapError('ERR_NETWORK', `publish on topic ${topic} failed`, err)
    }
  }

  /** Connected peers of our namespace: those whose identify lists our sync protocol. */
  peers(): string[] {
    if (this.state !== 'started') return []
    return [...this.members].filter((peer) => this.connected(peer))
  }

  async request(peer: string, data: Uint8Array, options: { signal?: AbortSignal; maxBytes?: number } = {}): Promise<Uint8Array> {
    if (options.signal?.aborted === true) throw new ConvergentError('ERR_ABORTED', `request to ${peer} aborted through its signal`)
    this.assertStarted()
    if (data.byteLength > this.settings.maxMessageBytes) {
      throw new ConvergentError('ERR_TOO_LARGE', `request of ${data.byteLength} bytes exceeds maxMessageBytes ${this.settings.maxMessageBytes}`)
    }
    let target: PeerId
    try {
      target = peerIdFromString(peer)
    } catch (err) {
      throw new ConvergentError('ERR_NETWORK', `${JSON.stringify(peer)} is not a libp2p peer id`, { cause: err })
    }
    return sendSyncRequest(this.libp2p, target, data, {
      protocol: this.protocol,
      maxBytes: options.maxBytes ?? this.settings.maxMessageBytes,
      timeoutMs: this.settings.requestTimeoutMs,
      clock: this.settings.clock,
      stopSignal: this.stopController.signal,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    })
  }

  private joinTopic(topic: string): void {
    const pubsub = this.libp2p.services.pubsub
    // Ignore (not Reject: no score penalty for a peer configured with a larger limit) and do
    // not forward payloads over our limit.
    pubsub.topicValidators.set(topic, (_peer, message) =>
      message.data.byteLength > this.maxGossipBytes ? TopicValidatorResult.Ignore : TopicValidatorResult.Accept,
    )
    pubsub.subscribe(topic)
  }

  private connected(peer: string): boolean {
    return this.libp2p.getConnections(peerIdFromString(peer)).some((c) => c.status === 'open')
  }

  /**
   * Identify on every new connection, run here rather than by libp2p itself
   * (runOnConnectionOpen is off in node.ts) so that a failed run is tried again: membership,
   * and gossipsub's view of the peer, hang on it. Its result arrives as 'peer:identify'.
   */
  private readonly onConnectionOpen = (event: CustomEvent<Connection>): void => {
    void this.identify(event.detail)
  }

  private async identify(connection: Connection): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const timeout = AbortSignal.timeout(IDENTIFY_TIMEOUT_MS)
      try {
        await this.libp2p.services.identify.identify(connection, { signal: AbortSignal.any([this.stopController.signal, timeout]) })
        return
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err)
        if (this.state !== 'started' || connection.status !== 'open' || attempt >= IDENTIFY_ATTEMPTS) {
          if (this.state === 'started' && connection.status === 'open')
            this.log('identify of %s failed %d times, not a peer of ours: %s', connection.remotePeer.toString(), attempt, message)
          return
        }
        this.log('identify of %s failed, retrying: %s', connection.remotePeer.toString(), message)
        const clock = this.settings.clock
        await new Promise<void>((resolve) => clock.setTimeout(resolve, jittered(clock, IDENTIFY_RETRY_MS * 2 ** (attempt - 1))))
      }
    }
  }

  private readonly onPeerIdentify = (event: CustomEvent<IdentifyResult>): void => {
    const peer = event.detail.peerId.toString()
    // Identify may finish after the peer's last connection closed: peer:disconnect came first.
    if (this.state !== 'started' || !this.connected(peer)) return
    if (event.detail.protocols.includes(this.protocol)) {
      if (this.members.has(peer)) return
      this.members.add(peer)
      this.events?.onPeerConnected(peer)
    } else if (this.members.delete(peer)) {
      // It no longer speaks our protocol (another identify, on a new connection, says so).
      this.events?.onPeerDisconnected(peer)
    } else {
      this.log('%s is connected but does not speak %s (another namespace?): not a peer of ours', peer, this.protocol)
    }
  }

  private readonly onPeerDisconnect = (event: CustomEvent<PeerId>): void => {
    const peer = event.detail.toString()
    if (this.members.delete(peer)) this.events?.onPeerDisconnected(peer)
    this.redialer.peerDisconnected(peer)
  }

  private readonly onGossip = (event: CustomEvent<GossipsubMessage>): void => {
    const { msg, propagationSource } = event.detail
    if (!this.topics.has(msg.topic) || msg.data.byteLength > this.maxGossipBytes) return
    // The author for signed messages (the default policy), else the peer that relayed it.
    const from = msg.type === 'signed' ? msg.from.toString() : propagationSource.toString()
    if (from === this.peerId) return
    const via = propagationSource.toString()
    this.events?.onMessage(msg.topic, msg.data.slice(), from, via === from ? undefined : via)
  }

  private readonly onSyncStream = (stream: Stream, connection: Connection): Promise<void> =>
    serveSyncStream(stream, connection.remotePeer.toString(), (from, data) => this.handleRequest(from, data), {
      maxRequestBytes: this.settings.maxMessageBytes,
      timeoutMs: this.settings.requestTimeoutMs,
      clock: this.settings.clock,
      log: this.log,
    })

  private handleRequest(from: string, data: Uint8Array): Promise<Uint8Array> {
    const events = this.events
    if (events === undefined) return Promise.reject(new Error('the network is stopping'))
    try {
      return events.onRequest(from, data)
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)))
    }
  }

  private assertStarted(): void {
    if (this.state !== 'started') {
      throw new ConvergentError('ERR_CLOSED', `the libp2p network is ${this.state === 'new' ? 'not started; call start() first' : 'stopped'}`)
    }
  }
}
