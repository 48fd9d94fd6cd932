/**
 * A Network moves bytes between replicas: topic broadcast (push) and request/response
 * (anti-entropy). It knows nothing of entities. Implementations: the in-process loopback
 * (core), libp2p (@convergent/libp2p), the simulator's network (@convergent/sim). Every
 * Network runs the shared compliance suite in @convergent/core/testing (networkComplianceSuite).
 */
export interface NetworkEvents {
  /**
   * A broadcast on a subscribed topic from another peer (`from`: its author). Never called for
   * our own messages. `via`: the peer that delivered it, where that is not the author (a relay:
   * gossip passed on by a peer in between); rounds a message asks for go to a peer connected here.
   */
  onMessage(topic: string, data: Uint8Array, from: string, via?: string): void
  /**
   * A request from a peer; the returned bytes are the response. A rejection closes the
   * exchange with an error on the requester's side.
   */
  onRequest(from: string, data: Uint8Array): Promise<Uint8Array>
  /** A peer of this cluster (it can answer our requests: same namespace) is connected. */
  onPeerConnected(peer: string): void
  /** A peer onPeerConnected announced went away (never called for others). */
  onPeerDisconnected(peer: string): void
}

export interface Network {
  /** This node's id (a libp2p peer id string on libp2p). */
  readonly peerId: string
  /** Addresses others can dial (empty for networks without addresses). */
  readonly multiaddrs: string[]
  /**
   * Optional: the peers this node was told to dial (its bootstrap list). Readiness uses it: a
   * replica with none configured (others dial it) is ready without a round; one with some
   * waits for a round that finds nothing missing. Omitted → none.
   */
  readonly bootstrapPeers?: readonly string[]

  /** Starts the network and delivers events to `events` until stop(). */
  start(events: NetworkEvents): Promise<void>
  stop(): Promise<void>

  subscribe(topic: string): void
  unsubscribe(topic: string): void
  /**
   * Broadcasts to the topic's subscribers. Resolves once handed to the transport; having no
   * subscribed peer yet is not an error (anti-entropy repairs whatever push misses).
   */
  publish(topic: string, data: Uint8Array): Promise<void>

  /**
   * Connected peers of this cluster: those that can answer our requests (on libp2p, peers
   * whose identify shows our namespace's sync protocol), not every open connection.
   */
  peers(): string[]

  /**
   * Sends a request to a connected peer and resolves with its response. Rejects with
   * ERR_NETWORK if the peer is unreachable or the exchange fails, ERR_TOO_LARGE if the
   * response exceeds maxBytes, ERR_ABORTED if the signal fires.
   */
  request(peer: string, data: Uint8Array, options?: { signal?: AbortSignal; maxBytes?: number }): Promise<Uint8Array>

  /**
   * Optional: the cluster's members (undefined = everyone). A network that implements it
   * closes its connections to other peers and refuses new ones; the replica drops their
   * messages whether or not it does.
   */
  restrict?(members: ReadonlySet<string> | undefined): void
}
