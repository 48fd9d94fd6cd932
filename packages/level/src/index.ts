/**
 * @packageDocumentation
 * A Convergent {@link @convergent/core!Store | Store} over LevelDB: `classicLevelStore(dir)` on disk
 * (classic-level), `memoryLevelStore()` in memory (memory-level). Group commit (one atomic batch
 * per tick, fsynced on request), a checksum on every record checked on every read, a format
 * version with in-place migration, quarantine of damaged records. Runs core's store compliance suite.
 */
export { LevelStore, type LevelStoreOptions, type QuarantinedRecord } from './level-store.js'
export { classicLevelStore, memoryLevelStore, type ClassicLevelStoreOptions, type StoreOptions } from './factories.js'
export type { GroupCommitStats } from './group-commit.js'
export type { AnyLevel, LevelDatabase } from './sublevels.js'
export { ENCRYPTION_FILE, checkEncryptedFolder, resolveKey as readEncryptionKey, type EncryptionOptions } from './encryption.js'
export { recryptStore, type RecryptResult } from './recrypt.js'
export { interruptedSwap, SWAP_MARK_FILE } from './swap.js'
