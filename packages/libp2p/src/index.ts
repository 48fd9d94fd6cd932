/**
 * @packageDocumentation
 * A Convergent {@link @convergent/core!Network | Network} over libp2p 3: TCP, Noise, Yamux,
 * identify, gossipsub for push, and a length-prefixed request/response stream protocol for
 * anti-entropy. Peers count as peers of the cluster once identify shows they speak its
 * namespace's protocol. With a cluster key (`clusterKey`), a libp2p private network keeps every
 * node without the key from connecting at all. Runs core's network compliance suite.
 */
// The polyfill comes first: ESM evaluates imports in order, so it runs before any libp2p code.
import './polyfill.js'

export { createLibp2pNetwork, Libp2pNetwork } from './network.js'
export { DEFAULT_CONNECTION_MANAGER, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_GOSSIP_BYTES, type Libp2pNetworkOptions, type Settings } from './options.js'
export { MAX_GOSSIP_PAYLOAD_BYTES, type ConvergentLibp2p, type Libp2pServices } from './node.js'
export { DanglingIdentityLinkError, loadOrCreateIdentity, identityPeerId } from './identity.js'
export { CLUSTER_KEY_BYTES, parseClusterKey } from './cluster-key.js'
export { syncProtocol } from './sync-protocol.js'
export { MembershipGate, verifyPeerSignature, signerOf, isVerifiablePeerId } from './membership.js'
