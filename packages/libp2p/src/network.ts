import './polyfill.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { TopicValidatorResult, type GossipsubMessage } from '@libp2p/gossipsub'
import type { Connection, Logger, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { ConvergentError, wrapError, type Network, type NetworkEvents } from '@convergent/core'
import { loadOrCreateIdentity } from './identity.js'
import { createNode, MAX_GOSSIP_PAYLOAD_BYTES, type ConvergentLibp2p } from './node.js'
import { DEFAULT_CONNECTION_MANAGER, validate, type Libp2pNetworkOptions, type Settings } from './options.js'
import { Redialer } from './redial.js'
import { sendSyncRequest } from './sync-client.js'
import { serveSyncStream } from './sync-server.js'

/** A Network over libp2p: gossipsub for topics, a stream protocol for requests. */
export async function createLibp2pNetwork(options: Libp2pNetworkOptions = {}): Promise<Libp2pNetwork> {
  const settings = validate(options)
  const privateKey = options.privateKey ?? (options.identityFile !== undefined ? await loadOrCreateIdentity(options.identityFile) : await generateKeyPair('Ed25519'))
  const libp2p = await createNode({
    privateKey,
    listen: settings.listen,
    ...(options.connectionGater === undefined ? {} : { connectionGater: options.connectionGater }),
    connectionManager: { ...DEFAULT_CONNECTION_MANAGER, ...options.connectionManager },
  })
  return new Libp2pNetwork(libp2p, settings)
}

type State = 'new' | 'started' | 'stopped'

export class Libp2pNetwork implements Network {
  readonly peerId: string
  /** The sync protocol id this node serves and dials. */
  readonly protocol: string
  /** Largest gossip payload published or delivered. */
  readonly maxGossipBytes: number
  private state: State = 'new'
  private events: NetworkEvents | undefined
  private readonly topics = new Set<string>()
  private readonly stopController = new AbortController()
  private readonly redialer: Redialer
  private readonly log: Logger

  constructor(
    readonly libp2p: ConvergentLibp2p,
    private readonly settings: Settings,
  ) {
    this.peerId = libp2p.peerId.toString()
    this.protocol = settings.protocol
    this.maxGossipBytes = Math.min(settings.maxMessageBytes, MAX_GOSSIP_PAYLOAD_BYTES)
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
    this.libp2p.addEventListener('peer:connect', this.onPeerConnect)
    this.libp2p.addEventListener('peer:disconnect', this.onPeerDisconnect)
    this.libp2p.services.pubsub.addEventListener('gossipsub:message', this.onGossip)
    try {
      await this.libp2p.handle(this.protocol, this.onSyncStream)
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
    this.libp2p.removeEventListener('peer:connect', this.onPeerConnect)
    this.libp2p.removeEventListener('peer:disconnect', this.onPeerDisconnect)
    this.libp2p.services.pubsub.removeEventListener('gossipsub:message', this.onGossip)
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
      throw new ConvergentError('ERR_TOO_LARGE', `message of ${data.byteLength} bytes exceeds the gossip limit of ${this.maxGossipBytes}; send it over a request instead`)
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

  peers(): string[] {
    if (this.state !== 'started') return []
    return this.libp2p.getPeers().map((p) => p.toString())
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

  private readonly onPeerConnect = (event: CustomEvent<PeerId>): void => {
    this.events?.onPeerConnected(event.detail.toString())
  }

  private readonly onPeerDisconnect = (event: CustomEvent<PeerId>): void => {
    const peer = event.detail.toString()
    this.events?.onPeerDisconnected(peer)
    this.redialer.peerDisconnected(peer)
  }

  private readonly onGossip = (event: CustomEvent<GossipsubMessage>): void => {
    const { msg, propagationSource } = event.detail
    if (!this.topics.has(msg.topic) || msg.data.byteLength > this.maxGossipBytes) return
    // The author for signed messages (the default policy), else the peer that relayed it.
    const from = msg.type === 'signed' ? msg.from.toString() : propagationSource.toString()
    if (from === this.peerId) return
    this.events?.onMessage(msg.topic, msg.data.slice(), from)
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
      return Promise.reject(err)
    }
  }

  private assertStarted(): void {
    if (this.state !== 'started') {
      throw new ConvergentError('ERR_CLOSED', `the libp2p network is ${this.state === 'new' ? 'not started; call start() first' : 'stopped'}`)
    }
  }
}
