import { ClassicLevel, type DatabaseOptions } from 'classic-level'
import { MemoryLevel } from 'memory-level'
import { AtRestSealer, checkFolder, resolveKey, writeMarker } from './encryption.js'
import { InspectionSnapshot, refuseIfInspected, rememberService } from './inspect.js'
import { LevelStore, type LevelStoreOptions } from './level-store.js'

export type StoreOptions = Omit<LevelStoreOptions, 'kind' | 'location' | 'snapshot'>

export interface ClassicLevelStoreOptions extends StoreOptions {
  /** Passed to ClassicLevel: cacheSize, writeBufferSize, compression, … */
  level?: Omit<DatabaseOptions<string, Uint8Array>, 'keyEncoding' | 'valueEncoding'>
}

/**
 * A store in a LevelDB directory (created if missing). One process may hold a dir at a time.
 * With `encryption`, the key is read and checked against the folder here, before LevelDB opens
 * it: a wrong key (ERR_WRONG_KEY), no key for an encrypted folder (ERR_ENCRYPTED) or a key for
 * a plain one (ERR_NOT_ENCRYPTED) throws, and the folder is left as it was.
 *
 * With `inspect`, LevelDB opens a private snapshot of the folder (inspect.ts), never the folder:
 * nothing in it is created, rewritten or deleted. A folder with no store in it (missing, empty,
 * no CURRENT) throws ERR_STORE ("holds no Convergent store"); one in use in this process (or,
 * on Linux, in another) throws the ERR_STORE open() rejects with when LevelDB finds it locked.
 */
export function classicLevelStore(dir: string, options: ClassicLevelStoreOptions = {}): LevelStore {
  const { level, encryption, ...rest } = options
  const sealer = encryption === undefined ? undefined : encryption instanceof AtRestSealer ? encryption : new AtRestSealer(resolveKey(encryption))
  const inspect = rest.inspect === true
  const legacy = checkFolder(dir, sealer, inspect) === 'legacy-cipher'
  // A folder an earlier release encrypted: its marker is rewritten before this store writes its
  // first record, so that release then refuses the folder instead of reading the records this
  // one seals as damaged (and quarantining them). Opening and reading alone leave it as it was.
  const storeOptions = sealer === undefined ? rest : { ...rest, encryption: sealer, ...(legacy ? { beforeFirstWrite: () => writeMarker(dir, sealer) } : {}) }
  if (inspect) {
    const snapshot = InspectionSnapshot.take(dir)
    try {
      const db = new ClassicLevel<string, Uint8Array>(snapshot.dir, { ...level, createIfMissing: false, keyEncoding: 'utf8', valueEncoding: 'view' })
      return new LevelStore(db, { ...storeOptions, kind: 'classic-level', location: dir, snapshot })
    } catch (err) {
      snapshot.remove()
      throw err
    }
  }
  refuseIfInspected(dir)
  const db = new ClassicLevel<string, Uint8Array>(dir, { ...level, keyEncoding: 'utf8', valueEncoding: 'view' })
  rememberService(dir, db)
  return new LevelStore(db, { ...storeOptions, kind: 'classic-level', location: dir })
}

/** A store in memory: gone when the process ends. For tests and the in-memory replica. */
export function memoryLevelStore(options: StoreOptions = {}): LevelStore {
  const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' })
  return new LevelStore(db, { ...options, kind: 'memory-level' })
}
