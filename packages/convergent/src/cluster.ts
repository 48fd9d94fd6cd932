import { randomBytes } from 'node:crypto'
import { ConvergentError, type Network } from '@convergent/core'
import { CLUSTER_KEY_BYTES, parseClusterKey } from '@convergent/libp2p'

/**
 * Membership of a cluster: `open({ cluster: { key } })`. Without it a replica runs in
 * development mode: unauthenticated, and open() logs a warning saying so.
 */
export interface ClusterOptions {
  /**
   * The cluster's pre-shared key: 32 bytes, as a Uint8Array or 64 hex characters (for example
   * from an environment variable; whitespace around it is ignored). Every replica of the
   * cluster gets the same key, and every connection is protected with it (a libp2p private
   * network, under Noise): a process without the key, or with another one, cannot complete a
   * connection. It decides who can connect, nothing more: whoever holds it is a full member,
   * reads everything and may write anything; removing one member means a new key for all the
   * others. Make one with {@link generateClusterKey} or `npx convergent cluster-key`.
   *
   * `undefined` is in the type so that `key: process.env.CONVERGENT_CLUSTER_KEY` compiles; it is
   * refused (ERR_INVALID_ARGUMENT) like any malformed key: an unset variable never means
   * development mode.
   */
  key: Uint8Array | string | undefined
}

/**
 * A new cluster key: 32 bytes from Node's cryptographic random source, as 64 lowercase hex
 * characters — the form that goes into an environment variable or a secrets store, and that
 * `open({ cluster: { key } })` takes as it is (`Buffer.from(key, 'hex')` gives the bytes).
 */
export function generateClusterKey(): string {
  return randomBytes(CLUSTER_KEY_BYTES).toString('hex')
}

/**
 * Checks open()'s `cluster` option and returns the key's 32 bytes. Runs before open() touches
 * the folder or the network, so a refused option leaves nothing behind.
 */
export function clusterKeyOf(cluster: unknown, network: false | Network | undefined): Uint8Array {
  const invalid = (message: string): ConvergentError => new ConvergentError('ERR_INVALID_ARGUMENT', message)
  if (typeof cluster !== 'object' || cluster === null || Array.isArray(cluster)) {
    throw invalid('open({ cluster }) is an object: { key } with the cluster key (32 bytes, or 64 hex characters).')
  }
  for (const field of Object.keys(cluster)) {
    if (field === 'admins') {
      // Accepted but unenforced, admins would suggest that the other members are restricted.
      throw invalid(
        'open({ cluster: { admins } }) is not supported yet: it comes with the access policy. Until then every holder of the cluster key is a full member (reads and writes everything); remove admins.',
      )
    }
    if (field !== 'key') throw invalid(`open({ cluster }) has no option ${JSON.stringify(field)}; it takes { key }.`)
  }
  const key = parseClusterKey((cluster as { key?: unknown }).key, 'open({ cluster: { key } })')
  if (network !== undefined && network !== false) {
    throw invalid(
      'open({ cluster }) protects the libp2p network open() builds, and a network was passed in: build it with createLibp2pNetwork({ clusterKey }) instead, and leave out cluster.',
    )
  }
  return key
}
