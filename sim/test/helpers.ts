import { resolveScenario, type Scenario } from '../src/index.js'

/** A small, fast variant of a scenario for tests (fields given override the defaults). */
export function smallScenario(name: string, overrides: Record<string, unknown> = {}): Scenario {
  return resolveScenario(
    {
      nodes: 6,
      durationMs: 12_000,
      settleMs: 30_000,
      workload: { ratePerSec: 10, entities: 12, startMs: 1_000 },
      ...overrides,
    },
    name,
  )
}
