// @convergent/level: the Store over LevelDB (classic-level on disk, memory-level in memory).
export { LevelStore, type LevelStoreOptions } from './level-store.js'
export { classicLevelStore, memoryLevelStore, type ClassicLevelStoreOptions } from './factories.js'
export type { AnyLevel, LevelDatabase } from './sublevels.js'
