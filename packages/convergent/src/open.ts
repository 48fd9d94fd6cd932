import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Replica, type Network, type ReplicaOptions, ConvergentError } from '@convergent/core'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { classicLevelStore, memoryLevelStore } from '@convergent/level'
import { createLibp2pNetwork, type Libp2pNetworkOptions } from '@convergent/libp2p'

export interface OpenOptions extends Omit<ReplicaOptions, 'store' | 'backends' | 'network'> {
  /** LevelDB folder (created if missing); omitted → everything in memory. */
  dir?: string
  /** Addresses to listen on. Default ['/ip4/127.0.0.1/tcp/0'] (loopback, a free port). */
  listen?: string[]
  /** Bootstrap peers (multiaddrs with /p2p/<id>); redialled with backoff when they go away. */
  peers?: string[]
  /** false → no network: a replica on its own. A Network → use that one. Default: libp2p. */
  network?: false | Network
  /** Backend of collections opened without one: 'yjs' (default) or 'automerge'. */
  defaultBackend?: 'yjs' | 'automerge'
  /**
   * More settings for the libp2p node open() builds: connectionGater, connectionManager,
   * redialMinMs / redialMaxMs, maxMessageBytes, requestTimeoutMs. listen, peers, namespace and
   * the identity file come from the options above.
   */
  libp2p?: Omit<Libp2pNetworkOptions, 'listen' | 'peers' | 'namespace' | 'identityFile' | 'privateKey'>
}

/**
 * Opens a replica with the defaults: a LevelDB store in `dir` (memory if omitted), the Yjs and
 * Automerge backends, and a libp2p node (TCP on 127.0.0.1, noise, yamux, gossipsub) whose
 * identity is kept in `dir`, so the peer id survives restarts.
 */
export async function open(options: OpenOptions = {}): Promise<Replica> {
  const { dir, listen, peers, network, defaultBackend, libp2p, ...rest } = options
  if (dir !== undefined && (typeof dir !== 'string' || dir.length === 0)) {
    throw new ConvergentError('ERR_INVALID_ARGUMENT', 'open({ dir }) needs a folder path (or omit dir to keep everything in memory).')
  }
  const backends = defaultBackend === 'automerge' ? [automergeBackend(), yjsBackend()] : [yjsBackend(), automergeBackend()]
  let store
  if (dir !== undefined) {
    await mkdir(dir, { recursive: true })
    store = classicLevelStore(join(dir, 'db'))
  } else {
    store = memoryLevelStore()
  }
  let net: Network | undefined
  if (network === false) net = undefined
  else if (network !== undefined) net = network
  else {
    net = await createLibp2pNetwork({
      ...libp2p,
      listen: listen ?? ['/ip4/127.0.0.1/tcp/0'],
      peers: peers ?? [],
      namespace: options.namespace ?? 'default',
      ...(dir !== undefined ? { identityFile: join(dir, 'peer-id.key') } : {}),
    })
  }
  try {
    return await Replica.open({ ...rest, store, backends, ...(net ? { network: net } : {}) })
  } catch (err) {
    // Replica.open closes what it was given when it fails; a network we built is ours to stop.
    if (network === undefined) await net?.stop().catch(() => undefined)
    throw err
  }
}
