import type { StateView } from '../shared/protocol.js'
import type { ServiceHandle } from './cluster.js'
import type { HttpClient } from './http-client.js'
import { sleep } from './workload.js'

export interface ConvergenceResult {
  converged: boolean
  /** From the call until every service showed the same state (or the timeout). */
  ms: number
  states: StateView[]
}

/**
 * Converged means: every service holds the same orders, the same payments and the same stock
 * values; every order is paid; and at least `minOrders` orders are there (all acknowledged
 * so far). Polls /state until that holds or the timeout passes.
 */
export async function waitForConvergence(
  client: HttpClient,
  services: ServiceHandle[],
  options: { minOrders: number; timeoutMs: number; signal: AbortSignal; pollMs?: number },
): Promise<ConvergenceResult> {
  const began = performance.now()
  let states: StateView[] = []
  while (!options.signal.aborted) {
    try {
      states = await Promise.all(services.map((s) => client.getOk<StateView>(`${s.url}/state`, options.signal)))
      if (isConverged(states, options.minOrders)) return { converged: true, ms: performance.now() - began, states }
    } catch {
      // A slow or restarting service: try again.
    }
    if (performance.now() - began > options.timeoutMs) break
    await sleep(options.pollMs ?? 25, options.signal)
  }
  return { converged: false, ms: performance.now() - began, states }
}

export function isConverged(states: StateView[], minOrders: number): boolean {
  const first = states[0]
  if (first === undefined) return false
  const key = (s: StateView): string => JSON.stringify([s.orders, s.payments, s.stock])
  return states.every((s) => key(s) === key(first) && s.unpaid === 0) && first.orders.count >= minOrders
}
