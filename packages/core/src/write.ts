import type { ChangeEvents, DurableChange } from './changes.js'
import type { CollectionState, CommitKind, Entities } from './entities.js'
import type { LoadedEntity } from './entity-cache.js'
import type { JsonObject } from './json.js'
import type { FeedEntry } from './store.js'
import type { SignedBy } from './trust/signed-push.js'

/** What a change function made of an entity (see writeTo). */
export type Made =
  | {
      kind: CommitKind
      doc: unknown
      delta: Uint8Array
      deleted: boolean
      /** The value after the change, if the maker read it already (else it is read when wanted). */
      value?: { value: JsonObject | undefined }
      /** Signed heads that vouched for it, stored with it (meta records, by key; a record undefined: that key deleted, a held head gone stale). */
      heads?: readonly { key: string; record: Uint8Array | undefined }[]
      /** Heads covered all of it: the feed names them as the proof, and their author as origin when there is one (authorOf). */
      vouchedBy?: { author?: string; proof: string }
      /** Store the document whole (a snapshot) instead of the delta (Backend.rebuilt). */
      fold?: true
    }
  /** Nothing changed. */
  | 'unchanged'

/** A change committed, not yet durable: await `committed`, then call `finish` with its entry. */
export interface PendingWrite {
  committed: Promise<FeedEntry>
  /** Tells listeners of the durable change (one DurableChange event), with its lag or span if any. */
  finish(entry: FeedEntry, extra?: Pick<DurableChange, 'lagMs' | 'span'>): void
}

/**
 * One change to one entity — the same sequence for a local write and a remote delta:
 *
 *   const entity = await entities.acquire(col, id)
 *   const pending = writeTo(entities, events, col, entity, peer, make)   // make → commit → release
 *   if (pending !== 'unchanged') pending.finish(await pending.committed)   // durable → event
 *
 * `make` runs synchronously right after the acquire, so the read-modify-write is atomic; it
 * may throw (nothing is then committed, and the error reaches the caller). The entity is
 * released either way. The two halves are synchronous so that a caller's awaits are the only
 * turns a write takes (the simulator's reports depend on the order of those turns).
 */
export function writeTo(
  entities: Entities,
  events: ChangeEvents,
  col: CollectionState,
  entity: LoadedEntity,
  peer: string | undefined,
  make: (entity: LoadedEntity) => Made,
  /** A remote change's author and proof, when it came signed (the feed records the author instead of the peer). */
  signed?: SignedBy,
): PendingWrite | 'unchanged' {
  try {
    const made = make(entity)
    if (made === 'unchanged') return 'unchanged'
    const created = !col.persisted
    // Read now, for subscribers: the value right after this change (a Yjs document changes in place).
    const value = made.value ?? (events.wantsValue(col.name) ? { value: made.deleted ? undefined : col.backend.read(made.doc) } : undefined)
    const committed = entities.commit({
      col,
      entity,
      doc: made.doc,
      delta: made.delta,
      kind: made.kind,
      origin: signed?.author ?? made.vouchedBy?.author ?? peer ?? 'local',
      deleted: made.deleted,
      ...(signed !== undefined ? { proof: signed.proof } : {}),
      ...(made.heads !== undefined && made.heads.length > 0 ? { heads: made.heads } : {}),
      ...(made.vouchedBy !== undefined ? { proofId: made.vouchedBy.proof } : {}),
      ...(made.fold === true ? { fold: true } : {}),
    })
    return {
      committed,
      finish: (entry, extra) =>
        events.emit({
          ...extra,
          collection: col.name,
          id: entity.id,
          entry,
          ...(value !== undefined ? { value } : {}),
          delta: made.delta,
          backend: col.backend,
          peer,
          created,
        }),
    }
  } finally {
    entities.release(entity)
  }
}
