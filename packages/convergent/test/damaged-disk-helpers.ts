// Shared by the damaged-disk reviews (review-damaged-disk, review2-damaged-disk): a cluster
// replica opened on a real classic-level folder, and raw edits of that folder's records.
import { ClassicLevel } from 'classic-level'
import { Replica, type LoopbackHub, type Logger } from '@convergent/core'
import { recordingLogger, type Keyring } from '@convergent/core/testing'
import { classicLevelStore } from '@convergent/level'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'

export type Raw = ClassicLevel<string, Uint8Array>

/** Member `id` of a cluster whose admin is `admin`, on a classic-level folder, without rounds of its own. */
export function openClusterReplica(
  keys: Keyring,
  admin: string,
  db: string,
  hub: LoopbackHub,
  id: string,
  logger: Logger = recordingLogger(),
): Promise<Replica> {
  return Replica.open({
    store: classicLevelStore(db),
    backends: [automergeBackend(), yjsBackend()],
    network: hub.createNetwork(id),
    trust: keys.trust(id, [admin]),
    logger,
    syncIntervalMs: 0,
  })
}

/** `edit` done on the folder's raw LevelDB (closed again after). */
export async function editRaw<T>(db: string, edit: (raw: Raw) => Promise<T>): Promise<T> {
  const raw: Raw = new ClassicLevel<string, Uint8Array>(db, { keyEncoding: 'utf8', valueEncoding: 'view' })
  await raw.open()
  try {
    return await edit(raw)
  } finally {
    await raw.close()
  }
}
