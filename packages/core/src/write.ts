import type { ChangeEvents } from './changes.js'
import type { CollectionState, CommitKind, Entities } from './entities.js'
import type { LoadedEntity } from './entity-cache.js'
import type { JsonObject } from './json.js'
import type { FeedEntry } from './store.js'

/** What a change function made of an entity (see writeEntity). */
export type Made =
  | {
      kind: CommitKind
      doc: unknown
      delta: Uint8Array
      deleted: boolean
      /** The value after the change, if the maker read it already (else it is read when wanted). */
      value?: { value: JsonObject | undefined }
    }
  /** Nothing changed. */
  | 'unchanged'

export type WriteOutcome =
  | { entry: FeedEntry }
  /** Nothing changed; settles true once the entity's latest write is durable, false if it failed. */
  | { unchanged: Promise<boolean> }

/**
 * One change to one entity — the same sequence for a local write and a remote delta:
 * acquire → make (synchronous, so the read-modify-write is atomic) → commit → release →
 * durable → one DurableChange event (subscribers, push). `make` may throw: nothing is then
 * committed and the error reaches the caller. The commit's promise rejects with ERR_STORE
 * if the store refused the batch.
 */
export async function writeEntity(
  entities: Entities,
  events: ChangeEvents,
  col: CollectionState,
  id: string,
  peer: string | undefined,
  make: (entity: LoadedEntity) => Made,
): Promise<WriteOutcome> {
  const entity = await entities.acquire(col, id)
  let committed: Promise<FeedEntry>
  let made: Exclude<Made, 'unchanged'>
  let value: { value: JsonObject | undefined } | undefined
  let created: boolean
  try {
    const result = make(entity)
    if (result === 'unchanged') return { unchanged: entity.lastWrite }
    made = result
    created = !col.persisted
    // Read now, for subscribers: the value right after this change (a Yjs document changes in place).
    value = made.value ?? (events.wantsValue(col.name) ? { value: made.deleted ? undefined : col.backend.read(made.doc) } : undefined)
    committed = entities.commit({ col, entity, doc: made.doc, delta: made.delta, kind: made.kind, origin: peer ?? 'local', deleted: made.deleted })
  } finally {
    entities.release(entity)
  }
  const entry = await committed
  events.emit({ collection: col.name, id, entry, ...(value !== undefined ? { value } : {}), delta: made.delta, backend: col.backend, peer, created })
  return { entry }
}
