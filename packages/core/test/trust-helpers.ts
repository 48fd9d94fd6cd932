export { Keyring } from '../src/testing/index.js'
import { waitFor } from '../src/testing/index.js'
import type { Counter, PolicyDocument } from '../src/index.js'
import type { Network, Replica } from '../src/index.js'

export const ADMIN = 'a-admin'
export const ORDERS = 'b-orders'
export const SUPPORT = 'c-support'

/** The network a replica was opened with (a test's raw requests go through it). */
export function netOf(r: Replica): Network {
  return (r as unknown as { options: { network: Network } }).options.network
}

/**
 * The admin sets `policy` (ORDERS may write 'stock'), ORDERS adopts it, and the admin's counter
 * 'stock' gets 100 on 's1', which ORDERS sees: the start of the rights-draining tests.
 */
export async function adminStockOf100(r: Record<string, Replica>, policy: PolicyDocument): Promise<Counter> {
  await r[ADMIN]!.policy.set(policy)
  await waitFor(() => r[ORDERS]!.policy.get() !== undefined, 'adopted')
  const stock = r[ADMIN]!.counter('stock')
  await stock.increment('s1', 100)
  await waitFor(async () => (await r[ORDERS]!.counter('stock').value('s1')) === 100, 'value arrives')
  return stock
}
