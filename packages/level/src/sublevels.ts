import type { AbstractLevel, AbstractSublevel } from 'abstract-level'
import type { ClassicLevel } from 'classic-level'
import type { MemoryLevel } from 'memory-level'

/** Any abstract-level database (classic-level, memory-level, …), used through the AbstractLevel API. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyLevel = AbstractLevel<any, any, any>

/**
 * What LevelStore accepts. abstract-level's typings make `hooks` invariant in the database's
 * own type, so TypeScript does not see a ClassicLevel as an AbstractLevel<any, any, any>;
 * the union names the common ones.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type LevelDatabase = AnyLevel | ClassicLevel<any, any> | MemoryLevel<any, any>

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Sublevel<V> = AbstractSublevel<AnyLevel, any, string, V>

/**
 * The store's keyspaces. Names are short-ish and readable: LevelDB prefix-compresses keys.
 * Every value in every one is a checksummed record (record.ts); the first seven hold the
 * Store's data, `quarantine` what quarantine() moved aside, `store` the store's own records
 * (format version, migration progress, drop markers).
 */
export interface Sublevels {
  heads: Sublevel<Uint8Array>
  snapshots: Sublevel<Uint8Array>
  deltas: Sublevel<Uint8Array>
  feed: Sublevel<Uint8Array>
  leaves: Sublevel<Uint8Array>
  collections: Sublevel<Uint8Array>
  meta: Sublevel<Uint8Array>
  quarantine: Sublevel<Uint8Array>
  store: Sublevel<Uint8Array>
}

export type Keyspace = keyof Sublevels

/** The keyspaces of Store data (what a CorruptRecord can name), in key order on disk. */
export const DATA_KEYSPACES = ['collections', 'deltas', 'feed', 'heads', 'leaves', 'meta', 'snapshots'] as const satisfies readonly Keyspace[]
export type DataKeyspace = (typeof DATA_KEYSPACES)[number]

/** The keyspaces keyed `collection NUL …` (all of a collection's records but its meta). */
export const COLLECTION_KEYSPACES = ['heads', 'snapshots', 'deltas', 'feed', 'leaves'] as const satisfies readonly Keyspace[]

export function isDataKeyspace(name: string): name is DataKeyspace {
  return (DATA_KEYSPACES as readonly string[]).includes(name)
}

export function openSublevels(db: AnyLevel): Sublevels {
  const binary = (name: string): Sublevel<Uint8Array> => db.sublevel<string, Uint8Array>(name, { keyEncoding: 'utf8', valueEncoding: 'view' })
  return {
    heads: binary('heads'),
    snapshots: binary('snapshots'),
    deltas: binary('deltas'),
    feed: binary('feed'),
    leaves: binary('leaves'),
    collections: binary('collections'),
    meta: binary('meta'),
    quarantine: binary('quarantine'),
    store: binary('store'),
  }
}
