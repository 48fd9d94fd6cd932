import { ConvergentError } from '@convergent/core'

/** Length of a cluster key: the pre-shared key of a libp2p private network (@libp2p/pnet). */
export const CLUSTER_KEY_BYTES = 32

const HEX_KEY = /^[0-9a-fA-F]{64}$/
const HOW_TO_MAKE_ONE = 'Make one with `npx convergent cluster-key` (or generateClusterKey()) and give every replica of the cluster the same key.'

/**
 * Reads a cluster key: 32 bytes, given as a Uint8Array or as 64 hex characters (either case;
 * whitespace around them, such as a key file's final newline, is ignored). Anything else is
 * ERR_INVALID_ARGUMENT, with a message that names `option` and never repeats the key.
 * Returns a copy of the 32 bytes.
 */
export function parseClusterKey(key: unknown, option = 'clusterKey'): Uint8Array {
  const invalid = (what: string): ConvergentError =>
    new ConvergentError(
      'ERR_INVALID_ARGUMENT',
      `${option} must be 32 bytes: a Uint8Array of 32 bytes or a string of 64 hex characters; ${what}. ${HOW_TO_MAKE_ONE}`,
    )
  let bytes: Uint8Array
  if (key instanceof Uint8Array) {
    bytes = Uint8Array.from(key) // the length is checked on the copy: a subclass cannot misreport it
    if (bytes.length !== CLUSTER_KEY_BYTES) throw invalid(`got a Uint8Array of ${bytes.length} bytes`)
  } else if (typeof key === 'string') {
    const hex = key.trim()
    if (hex.length !== 2 * CLUSTER_KEY_BYTES) throw invalid(`got a string of ${hex.length} characters`)
    if (!HEX_KEY.test(hex)) throw invalid('got 64 characters, not all of them hex digits')
    bytes = Uint8Array.from(Buffer.from(hex, 'hex'))
  } else {
    if (key === undefined) throw invalid('got undefined (if it is read from an environment variable, that variable is not set)')
    throw invalid(`got ${key === null ? 'null' : typeof key}`)
  }
  if (bytes.every((b) => b === 0)) throw invalid('got a key of zeros (not a secret)')
  return bytes
}

/**
 * The key in the format @libp2p/pnet reads (the go-ipfs swarm.key format, version 1):
 * `/key/swarm/psk/1.0.0/`, `/base16/`, then the key as lowercase hex, one per line.
 */
export function pnetKeyFile(key: Uint8Array): Uint8Array {
  return new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${Buffer.from(key).toString('hex')}`)
}
