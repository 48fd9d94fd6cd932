// Shared by the damaged-disk reviews (review-damaged-disk, review2-, review3-damaged-disk): a
// cluster replica opened on a real classic-level folder, and raw edits of that folder's records.
import { ClassicLevel } from 'classic-level'
import { Replica, type LoopbackHub, type Logger } from '@convergent/core'
import { Keyring, recordingLogger, tempDir } from '@convergent/core/testing'
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

/**
 * A test file's set-up: a keyring, temp folders and replicas closed after each test (last made,
 * first closed), replicas of a cluster whose admin is `admin`, and a folder's raw keys.
 */
export function damagedDiskSuite(admin: string, prefix: string) {
  const keys = new Keyring()
  const cleanups: (() => Promise<unknown>)[] = []
  afterEach(async function () {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined)
  })
  return {
    keys,
    cleanups,
    async folder(): Promise<string> {
      const { dir, cleanup } = await tempDir(prefix)
      cleanups.push(cleanup)
      return dir
    },
    async openReplica(db: string, hub: LoopbackHub, id: string, logger: Logger = recordingLogger()): Promise<Replica> {
      const r = await openClusterReplica(keys, admin, db, hub, id, logger)
      cleanups.push(() => r.close())
      return r
    },
    rawKeys(db: string, prefix: string): Promise<string[]> {
      return editRaw(db, async (raw) => raw.keys({ gte: prefix, lt: prefix + '\uffff' }).all())
    },
  }
}
