import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { ConvergentError, type Backend, type JsonObject, type JsonValue } from '@convergent/core'
import { isSealed, openSealed, sealedKeyId, storedSubjectKeys, type HeldKey } from '@convergent/core/internal'
import { checkEncryptedFolder, classicLevelStore, readEncryptionKey, type EncryptionOptions } from '@convergent/level'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'

/** One stored record of an entity, as the dump prints it. */
export interface DumpedRecord {
  id: string
  /** 'snapshot', or 'delta n' (the value right after that delta, applied over the snapshot and the deltas before it). */
  record: string
  /**
   * The value then. A sealed personal field is opened when the folder holds its subject key;
   * otherwise it reads `"<sealed, not openable: key … not in this folder>"`.
   */
  value: JsonObject | undefined
}

/**
 * Walks every stored snapshot and delta of a collection in a data folder (opened read-only
 * in spirit: nothing is written) and yields the value each one leaves, with personal fields
 * opened by the subject keys the folder itself holds — what anyone with a copy of the folder
 * (and its at-rest key) could read. For tests and operators: `npx convergent dump`.
 */
export async function* dumpCollection(dir: string, collection: string, options: { encryption?: EncryptionOptions } = {}): AsyncGenerator<DumpedRecord> {
  const db = join(dir, 'db')
  const key = options.encryption === undefined ? undefined : readEncryptionKey(options.encryption)
  checkEncryptedFolder(db, key, true)
  // Looked at, never changed (see LevelStoreOptions.inspect).
  const store = classicLevelStore(db, { inspect: true, ...(key === undefined ? {} : { encryption: { key } }) })
  await store.open()
  try {
    const meta = (await store.collections()).get(collection)
    if (meta === undefined) throw new ConvergentError('ERR_NOT_FOUND', `no collection '${collection}' in ${dir}`)
    const backends: Backend[] = [yjsBackend(), automergeBackend()]
    const backend = backends.find((b) => b.name === meta.backend)
    if (backend === undefined) throw new ConvergentError('ERR_UNKNOWN_BACKEND', `collection '${collection}' uses backend '${meta.backend}'`)
    const keys = await storedSubjectKeys(store)
    const actor = randomBytes(16)
    const ids: string[] = []
    for await (const [id] of store.heads(collection)) ids.push(id)
    for (const id of ids) {
      const stored = await store.readEntity(collection, id)
      if (stored === undefined) continue
      let doc = backend.load(stored.snapshot, [], actor)
      if (stored.snapshot !== undefined) yield { id, record: 'snapshot', value: opened(keys, collection, id, backend.read(doc)) }
      for (let i = 0; i < stored.deltas.length; i++) {
        doc = backend.applyDelta(doc, stored.deltas[i]!)
        yield { id, record: `delta ${i}`, value: opened(keys, collection, id, backend.read(doc)) }
      }
      backend.dispose?.(doc)
    }
  } finally {
    await store.close()
  }
}

function opened(keys: Map<string, HeldKey>, collection: string, id: string, value: JsonObject | undefined): JsonObject | undefined {
  if (value === undefined) return undefined
  const out: JsonObject = {}
  for (const [field, v] of Object.entries(value)) {
    if (!isSealed(v)) {
      out[field] = v
      continue
    }
    const key = keys.get(sealedKeyId(v))
    const plain: JsonValue | undefined = key === undefined ? undefined : openSealed(key, collection, id, field, v)
    out[field] = plain !== undefined ? plain : `<sealed, not openable: key ${sealedKeyId(v)} not in this folder>`
  }
  return out
}
