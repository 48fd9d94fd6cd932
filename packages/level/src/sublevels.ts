import type { AbstractLevel, AbstractSublevel } from 'abstract-level'
import type { CollectionMeta } from '@convergent/core'
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

/** The store's keyspaces. Names are short-ish and readable: LevelDB prefix-compresses keys. */
export interface Sublevels {
  heads: Sublevel<Uint8Array>
  snapshots: Sublevel<Uint8Array>
  deltas: Sublevel<Uint8Array>
  feed: Sublevel<Uint8Array>
  leaves: Sublevel<Uint8Array>
  collections: Sublevel<CollectionMeta>
  meta: Sublevel<Uint8Array>
}

export function openSublevels(db: AnyLevel): Sublevels {
  const binary = (name: string): Sublevel<Uint8Array> =>
    db.sublevel<string, Uint8Array>(name, { keyEncoding: 'utf8', valueEncoding: 'view' })
  return {
    heads: binary('heads'),
    snapshots: binary('snapshots'),
    deltas: binary('deltas'),
    feed: binary('feed'),
    leaves: binary('leaves'),
    collections: db.sublevel<string, CollectionMeta>('collections', { keyEncoding: 'utf8', valueEncoding: 'json' }),
    meta: binary('meta'),
  }
}
