import type { ConvergentTuning } from './convergent.js'
import type { System } from './types.js'

export type { BenchNode, OpenOptions, System } from './types.js'
export { SYSTEM_IDS, describeSystem, type SystemId, type SystemInfo } from './catalog.js'
import { SYSTEM_IDS } from './catalog.js'

/**
 * Loads a system lazily: a run of Convergent never imports helia or OrbitDB, so a broken or
 * slow peer cannot affect our numbers (each run is also its own process). The tuning applies
 * to Convergent; of it the raw ceiling takes only the durability (fsync → `sync: true` batches).
 */
export async function loadSystem(id: string, tuning: ConvergentTuning = {}): Promise<System> {
  switch (id) {
    case 'convergent-yjs':
    case 'convergent-automerge':
      return (await import('./convergent.js')).convergentSystem(id === 'convergent-yjs' ? 'yjs' : 'automerge', tuning)
    case 'raw-yjs':
    case 'raw-automerge':
      return (await import('./raw.js')).rawSystem(id === 'raw-yjs' ? 'yjs' : 'automerge', { sync: tuning.durability === 'fsync' })
    case 'orbitdb':
      return (await import('./orbitdb.js')).orbitdbSystem
    case 'automerge-repo':
      return (await import('./automerge-repo.js')).automergeRepoSystem
    case 'y-leveldb':
      return (await import('./y-leveldb.js')).yLeveldbSystem
    default:
      throw new Error(`unknown system '${id}'; known: ${SYSTEM_IDS.join(', ')}`)
  }
}
