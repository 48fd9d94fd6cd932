import { randomBytes } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { ConvergentError, type Network } from '@convergent/core'
import { CLUSTER_KEY_BYTES, identityPeerId, isVerifiablePeerId, parseClusterKey } from '@convergent/libp2p'

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
  /**
   * Peer ids (12D3KooW…) whose signatures may set the cluster policy (replica.policy.set): the
   * trust root, the same list on every replica. With admins, the policy decides who is a
   * member and who may read and write each collection; until the admins set a first policy,
   * every key holder may do everything. Omitted → no policy: every key holder is a full member.
   */
  admins?: string[]
}

/**
 * `open({ network, cluster: { admins } })`: the admins of a cluster whose libp2p network the
 * application built itself — with createLibp2pNetwork({ clusterKey }), so the key is the
 * network's and not repeated here (and with its own identity, connection gater and so on).
 */
export interface NetworkClusterOptions {
  admins: string[]
}

/** Most admins a cluster may name. */
const MAX_ADMINS = 64

/**
 * A new cluster key: 32 bytes from Node's cryptographic random source, as 64 lowercase hex
 * characters — the form that goes into an environment variable or a secrets store, and that
 * `open({ cluster: { key } })` takes as it is (`Buffer.from(key, 'hex')` gives the bytes).
 */
export function generateClusterKey(): string {
  return randomBytes(CLUSTER_KEY_BYTES).toString('hex')
}

/**
 * The peer id (12D3KooW…) a data folder's libp2p identity gives: the one `open({ dir })` will
 * run as. Creates the identity (`<dir>/peer-id.key`) if the folder has none yet, exactly as
 * open() would — so admins and policy members can be named before any replica runs.
 */
export async function folderPeerId(dir: string): Promise<string> {
  if (typeof dir !== 'string' || dir.length === 0)
    throw new ConvergentError('ERR_INVALID_ARGUMENT', 'folderPeerId(dir) needs the folder given to open({ dir }).')
  await mkdir(dir, { recursive: true })
  return (await identityPeerId(join(dir, 'peer-id.key')))!
}

/**
 * Checks open()'s `cluster` option and returns the key's 32 bytes (none when a network was
 * passed in with `cluster: { admins }` alone: that network holds the key). Runs before open() touches
 * the folder or the network, so a refused option leaves nothing behind.
 */
export function clusterOf(cluster: unknown, network: false | Network | undefined): { key?: Uint8Array; admins?: string[] } {
  const invalid = (message: string): ConvergentError => new ConvergentError('ERR_INVALID_ARGUMENT', message)
  if (typeof cluster !== 'object' || cluster === null || Array.isArray(cluster)) {
    throw invalid('open({ cluster }) is an object: { key } with the cluster key (32 bytes, or 64 hex characters).')
  }
  for (const field of Object.keys(cluster)) {
    if (field !== 'key' && field !== 'admins') throw invalid(`open({ cluster }) has no option ${JSON.stringify(field)}; it takes { key, admins }.`)
  }
  const passedIn = network !== undefined && network !== false
  if (passedIn && !('key' in cluster)) {
    // The network was built (and keyed) by the application: cluster names the admins only.
    const admins = adminsOf((cluster as { admins?: unknown }).admins)
    if (admins === undefined) throw invalid('open({ network, cluster }) without a key takes { admins }: the network passed in holds the cluster key.')
    return { admins }
  }
  const key = parseClusterKey((cluster as { key?: unknown }).key, 'open({ cluster: { key } })')
  const admins = adminsOf((cluster as { admins?: unknown }).admins)
  if (network !== undefined && network !== false) {
    throw invalid(
      'open({ cluster }) protects the libp2p network open() builds, and a network was passed in: build it with createLibp2pNetwork({ clusterKey }) instead, and pass only cluster: { admins } (or no cluster).',
    )
  }
  return admins === undefined ? { key } : { key, admins }
}

/** The admins: peer ids that name a public key (so their signatures can be verified). */
function adminsOf(admins: unknown): string[] | undefined {
  if (admins === undefined) return undefined
  if (!Array.isArray(admins) || admins.length === 0 || admins.length > MAX_ADMINS) {
    throw new ConvergentError('ERR_INVALID_ARGUMENT', `open({ cluster: { admins } }) is a list of 1 to ${MAX_ADMINS} peer ids.`)
  }
  for (const id of admins) {
    if (!isVerifiablePeerId(id))
      throw new ConvergentError(
        'ERR_INVALID_ARGUMENT',
        `open({ cluster: { admins } }): ${JSON.stringify(id).slice(0, 80)} is not a peer id with a public key (12D3KooW…).`,
      )
  }
  return [...new Set(admins as string[])]
}
