import type { ConnectionGater, PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { ConnectionManagerInit } from 'libp2p'
import { ConvergentError, systemClock, type Clock } from '@convergent/core'
import { parseClusterKey } from './cluster-key.js'
import { syncProtocol } from './sync-protocol.js'

export interface Libp2pNetworkOptions {
  /** Addresses to listen on (default ['/ip4/127.0.0.1/tcp/0']). */
  listen?: string[]
  /** Bootstrap peers: dialed on start and redialed whenever the connection goes away. */
  peers?: string[]
  /** The node's key. Without it (and without identityFile) every run gets a new peer id. */
  privateKey?: PrivateKey
  /** Where to keep the node's key: loaded if present, else created (Ed25519, mode 0600). */
  identityFile?: string
  /** Keeps clusters apart: the sync protocol becomes /convergent/<namespace>/sync/1.0.0. */
  namespace?: string
  /**
   * The cluster's pre-shared key: 32 bytes, as a Uint8Array or 64 hex characters. With it every
   * connection is wrapped in a libp2p private network (@libp2p/pnet, XSalsa20 under Noise): a
   * node without the same key cannot complete a connection with this one, in either direction.
   * It decides who can connect, nothing more: every holder of the key is a full peer. Without
   * it, any node that reaches the port can connect (the namespace only keeps honest clusters
   * apart). A malformed key is ERR_INVALID_ARGUMENT.
   */
  clusterKey?: Uint8Array | string
  /**
   * Largest request accepted or sent, and the default response limit (default 4 MiB). Gossip
   * payloads are capped lower, at MAX_GOSSIP_PAYLOAD_BYTES, whatever this says.
   */
  maxMessageBytes?: number
  /**
   * Largest gossip payload published, accepted or relayed (default 1 MiB + 64 KiB: a replica's
   * pushes stay under 1 MiB). The topic validator ignores larger ones, so gossipsub does not
   * relay them to the rest of the mesh either.
   */
  maxGossipBytes?: number
  /** A request must be answered within this (default 30 s). */
  requestTimeoutMs?: number
  /** Bootstrap redial backoff: first delay and cap (default 250 ms → 10 s). */
  redialMinMs?: number
  redialMaxMs?: number
  /** Passed to libp2p (tests use it to refuse dials). */
  connectionGater?: ConnectionGater
  /**
   * Passed to libp2p, over Convergent's defaults (DEFAULT_CONNECTION_MANAGER). libp2p's own
   * default refuses more than 5 inbound connections per second from one host
   * (inboundConnectionThreshold), which many nodes on one machine exceed at start; ours allows
   * 100 a second. Any field given here wins.
   */
  connectionManager?: ConnectionManagerInit
  /** Timers for timeouts and redials, and the jitter source (default systemClock()). */
  clock?: Clock
}

export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
export const DEFAULT_MAX_GOSSIP_BYTES = 1024 * 1024 + 64 * 1024

/** What Convergent passes to libp2p's connection manager unless told otherwise. */
export const DEFAULT_CONNECTION_MANAGER: Readonly<ConnectionManagerInit> = {
  // Many nodes on one host (tests, the simulator's live mode, a cluster starting on one machine)
  // connect to a bootstrap node within the same second.
  inboundConnectionThreshold: 100,
  maxIncomingPendingConnections: 50,
}
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000
const NAMESPACE_PATTERN = /^[A-Za-z0-9._-]{1,64}$/

/** The options, checked and with defaults filled in. */
export interface Settings {
  listen: string[]
  protocol: string
  maxMessageBytes: number
  maxGossipBytes: number
  requestTimeoutMs: number
  peers: string[]
  /** The 32-byte cluster key, when there is one. */
  clusterKey?: Uint8Array
  redialMinMs: number
  redialMaxMs: number
  clock: Clock
}

export function validate(options: Libp2pNetworkOptions): Settings {
  const invalid = (message: string): ConvergentError => new ConvergentError('ERR_INVALID_ARGUMENT', message)
  if (options.namespace !== undefined && !NAMESPACE_PATTERN.test(options.namespace)) {
    throw invalid(`namespace must be 1–64 letters, digits, '.', '_' or '-', got ${JSON.stringify(options.namespace)}`)
  }
  const positive = (name: string, value: number | undefined, fallback: number): number => {
    const v = value ?? fallback
    if (!Number.isSafeInteger(v) || v < 1) throw invalid(`${name} must be a positive integer, got ${value}`)
    return v
  }
  const peers = options.peers ?? []
  for (const address of peers) {
    try {
      multiaddr(address)
    } catch (err) {
      throw new ConvergentError('ERR_INVALID_ARGUMENT', `bootstrap peer ${JSON.stringify(address)} is not a multiaddr`, { cause: err })
    }
    // The multiaddr parser takes any base58 text after /p2p/; a peer id that does not parse
    // would only fail later, inside the redialer, where no caller can catch it.
    const parts = address.split('/')
    parts.forEach((part, i) => {
      if (part !== 'p2p' || i + 1 >= parts.length) return
      try {
        peerIdFromString(parts[i + 1]!)
      } catch (err) {
        throw new ConvergentError(
          'ERR_INVALID_ARGUMENT',
          `bootstrap peer ${JSON.stringify(address)} names ${JSON.stringify(parts[i + 1])} after /p2p/, which is not a peer id`,
          {
            cause: err,
          },
        )
      }
    })
  }
  if (options.privateKey !== undefined && options.identityFile !== undefined) {
    throw invalid('pass privateKey or identityFile, not both')
  }
  const clusterKey = options.clusterKey === undefined ? undefined : parseClusterKey(options.clusterKey)
  const redialMinMs = positive('redialMinMs', options.redialMinMs, 250)
  return {
    listen: options.listen ?? ['/ip4/127.0.0.1/tcp/0'],
    protocol: syncProtocol(options.namespace),
    maxMessageBytes: positive('maxMessageBytes', options.maxMessageBytes, DEFAULT_MAX_MESSAGE_BYTES),
    maxGossipBytes: positive('maxGossipBytes', options.maxGossipBytes, DEFAULT_MAX_GOSSIP_BYTES),
    requestTimeoutMs: positive('requestTimeoutMs', options.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS),
    peers,
    ...(clusterKey === undefined ? {} : { clusterKey }),
    redialMinMs,
    redialMaxMs: Math.max(redialMinMs, positive('redialMaxMs', options.redialMaxMs, 10_000)),
    clock: options.clock ?? systemClock(),
  }
}
