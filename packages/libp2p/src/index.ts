// The polyfill comes first: ESM evaluates imports in order, so it runs before any libp2p code.
import './polyfill.js'

export { createLibp2pNetwork, Libp2pNetwork } from './network.js'
export { DEFAULT_CONNECTION_MANAGER, DEFAULT_MAX_MESSAGE_BYTES, type Libp2pNetworkOptions } from './options.js'
export { MAX_GOSSIP_PAYLOAD_BYTES, type ConvergentLibp2p, type Libp2pServices } from './node.js'
export { loadOrCreateIdentity } from './identity.js'
export { syncProtocol } from './sync-protocol.js'
