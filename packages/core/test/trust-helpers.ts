export { Keyring } from '../src/testing/index.js'
import type { Network, Replica } from '../src/index.js'

export const ADMIN = 'a-admin'
export const ORDERS = 'b-orders'
export const SUPPORT = 'c-support'

/** The network a replica was opened with (a test's raw requests go through it). */
export function netOf(r: Replica): Network {
  return (r as unknown as { options: { network: Network } }).options.network
}
