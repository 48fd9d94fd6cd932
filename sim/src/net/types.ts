import type { GossipItem } from './gossip-router.js'

/** A sync request's answer (or failure) on its way back to the requester. */
export type ResponsePayload = { ok: Uint8Array } | { error: string }

/**
 * One started node incarnation as the Fabric sees it (SimNetwork implements it): a type of its
 * own, so the Fabric and SimNetwork do not import each other.
 */
export interface Endpoint {
  readonly index: number
  readonly peerId: string
  readonly router: {
    /** True if the node has already seen every message among `items` (copies dropped on arrival). */
    hasSeenAll(items: readonly GossipItem[]): boolean
  }
  /** A connection to `peer` came up (`outbound`: this node dialled). */
  peerUp(peer: string, outbound: boolean): void
  peerDown(peer: string): void
  gossipArrived(from: string, items: readonly GossipItem[]): void
  requestArrived(from: string, data: Uint8Array, respond: (payload: ResponsePayload) => void): void
}
