import type { Libp2pNetwork, Libp2pNetworkOptions } from '@convergent/libp2p'
import type { LinkModel } from '../net/link-model.js'

export type ConnectionGater = NonNullable<Libp2pNetworkOptions['connectionGater']>

/**
 * What a LiveNode needs from the environment it runs in (LiveEnvironment implements it): a
 * type of its own, so the node and the environment do not import each other.
 */
export interface LiveHost {
  /** The folder for the nodes' identity files. */
  readonly dir: string
  /** The scenario's link conditions, applied by each node's FaultyNetwork. */
  readonly link: LinkModel
  /** The connection gater of node `index`: no connection with a node it is cut off from. */
  gaterFor(index: number): ConnectionGater
  /** Node `index`'s libp2p network is up. */
  started(index: number, net: Libp2pNetwork): void
  /** Node `index`'s libp2p network is going away (crash or graceful close). */
  stopped(index: number): void
}
