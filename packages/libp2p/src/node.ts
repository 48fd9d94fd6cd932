import './polyfill.js'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { identify, type Identify } from '@libp2p/identify'
import { preSharedKey } from '@libp2p/pnet'
import type { ConnectionGater, Libp2p, PrivateKey } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type ConnectionManagerInit } from 'libp2p'
import { pnetKeyFile } from './cluster-key.js'

// A type alias, not an interface: libp2p's ServiceMap constraint needs an index signature.
export type Libp2pServices = {
  identify: Identify
  pubsub: GossipSub
}

export type ConvergentLibp2p = Libp2p<Libp2pServices>

/**
 * gossipsub frames a whole RPC (our payload plus envelope, signature and piggybacked
 * control messages) in at most 4 MiB: the sender's length-prefix encoder refuses more, and
 * a receiver that gets a longer frame drops the peer's gossip stream. So payloads must stay
 * a margin below it.
 */
export const GOSSIP_FRAME_BYTES = 4 * 1024 * 1024
export const MAX_GOSSIP_PAYLOAD_BYTES = GOSSIP_FRAME_BYTES - 256 * 1024

/** How long one identify exchange may take (libp2p's default). */
export const IDENTIFY_TIMEOUT_MS = 5_000

export interface NodeConfig {
  privateKey: PrivateKey
  listen: string[]
  /** The 32-byte cluster key: every connection is protected by a libp2p private network. */
  clusterKey?: Uint8Array
  connectionGater?: ConnectionGater
  connectionManager?: ConnectionManagerInit
}

/**
 * A libp2p node, not started: TCP, Noise, Yamux, identify (gossipsub needs it), gossipsub; with
 * a cluster key, a private network (pnet) under Noise on every connection.
 */
export function createNode(config: NodeConfig): Promise<ConvergentLibp2p> {
  return createLibp2p({
    start: false,
    privateKey: config.privateKey,
    addresses: { listen: config.listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // pnet XORs every byte with XSalsa20 keyed by the cluster key and a nonce each side sends
    // first; a peer with another key (or none) reads garbage, so its Noise handshake fails.
    ...(config.clusterKey === undefined ? {} : { connectionProtector: preSharedKey({ psk: pnetKeyFile(config.clusterKey) }) }),
    ...(config.connectionGater === undefined ? {} : { connectionGater: config.connectionGater }),
    ...(config.connectionManager === undefined ? {} : { connectionManager: config.connectionManager }),
    services: {
      // The network runs identify itself on each new connection, retrying a failed run
      // (network.ts): which peers count as ours depends on it.
      identify: identify({ runOnConnectionOpen: false, timeout: IDENTIFY_TIMEOUT_MS }),
      pubsub: gossipsub({
        // Publishing before anyone subscribed is normal for us: anti-entropy repairs it.
        allowPublishToZeroTopicPeers: true,
        ignoreDuplicatePublishError: true,
        emitSelf: false,
        maxInboundDataLength: GOSSIP_FRAME_BYTES,
      }),
    },
  })
}
