/** What the report needs to know about each system, without loading any of them. */
export interface SystemInfo {
  readonly id: string
  /** For tables: 'Convergent (Yjs)', 'OrbitDB 4 keyvalue', … */
  readonly label: string
  /** ours = Convergent; raw = the ceiling without Convergent code; peer = another product. */
  readonly role: 'ours' | 'raw' | 'peer'
  readonly backend?: 'yjs' | 'automerge'
}

export const CATALOG = {
  'convergent-yjs': { id: 'convergent-yjs', label: 'Convergent (Yjs)', role: 'ours', backend: 'yjs' },
  'convergent-automerge': { id: 'convergent-automerge', label: 'Convergent (Automerge)', role: 'ours', backend: 'automerge' },
  'raw-yjs': { id: 'raw-yjs', label: 'raw ceiling: Yjs + classic-level', role: 'raw', backend: 'yjs' },
  'raw-automerge': { id: 'raw-automerge', label: 'raw ceiling: Automerge + classic-level', role: 'raw', backend: 'automerge' },
  orbitdb: { id: 'orbitdb', label: 'OrbitDB 4 keyvalue (helia 6)', role: 'peer' },
  'automerge-repo': { id: 'automerge-repo', label: 'automerge-repo 2 (nodefs, websocket)', role: 'peer', backend: 'automerge' },
  'y-leveldb': { id: 'y-leveldb', label: 'Yjs + y-leveldb', role: 'peer', backend: 'yjs' },
} as const satisfies Record<string, SystemInfo>

export type SystemId = keyof typeof CATALOG

export const SYSTEM_IDS = Object.keys(CATALOG) as SystemId[]

export function describeSystem(id: string): SystemInfo {
  const info = (CATALOG as Record<string, SystemInfo>)[id]
  if (info === undefined) throw new Error(`unknown system '${id}'; known: ${SYSTEM_IDS.join(', ')}`)
  return info
}
