import type { CollectionState, Entities } from '../entities.js'
import { isDead, type LoadedEntity } from '../entity-cache.js'
import { emptyVersionOf } from '../empty-version.js'

/** How many back-to-back local writes we wait out before giving up on an entity for this round. */
const MAX_WAITS = 16

/**
 * Acquires an entity for sending it to a peer, once no local write of it is still in flight.
 *
 * Memory runs ahead of the disk: a commit updates the document at once and is durable a batch
 * later. A change sent to a peer in between and then lost in a crash is worse than lost: the
 * restarted replica reissues different operations under the same ids, and for a bounded
 * counter that spends the same rights twice (found by the simulator's stock-churn scenario).
 * Push already waits for durability; anti-entropy and rights answers go through here.
 *
 * Returns undefined when the entity kept being written, or a write of it failed (a later round
 * sends it). The caller
 * releases the entity it gets.
 */
export async function acquireDurable(entities: Entities, col: CollectionState, id: string): Promise<LoadedEntity | undefined> {
  const entity = await entities.acquire(col, id)
  for (let i = 0; i < MAX_WAITS; i++) {
    const pending = entity.lastWrite
    await pending // never rejects: it is the write's settled promise
    // A failed write left this document ahead of the disk: nothing of it may be sent.
    if (isDead(entity)) break
    if (entity.lastWrite === pending) {
      durableAt.set(entity, pending)
      return entity
    }
  }
  entities.release(entity)
  return undefined
}

/** The write each entity was last found durable at by acquireDurable (settled true by then). */
const durableAt = new WeakMap<LoadedEntity, Promise<boolean>>()

/**
 * True while nothing was committed to an entity since acquireDurable found it durable. Its caller
 * resumes a microtask after that check, and a local commit may land in between (a write whose own
 * acquire resumed first): the document is then ahead of the disk again. So a caller checks this
 * synchronously right before it reads the document for a peer, and treats false as busy.
 */
export function stillDurable(entity: LoadedEntity): boolean {
  return !isDead(entity) && durableAt.get(entity) === entity.lastWrite
}

/**
 * The entity's whole durable state as one delta (for a peer that holds nothing of it), or null
 * when there is nothing to send: never stored, or busy with local writes (a later round).
 * Stored bytes over `maxBytes` (maxDeltaBytes: they would not be sent) are not the last word:
 * the document is loaded and saved whole, which can be far smaller (Automerge's stored changes
 * are uncompressed, its saved document compressed; Yjs drops values written over).
 */
export async function wholeStateOf(entities: Entities, col: CollectionState, id: string, maxBytes = Infinity): Promise<Uint8Array | null> {
  if (!entities.isLoaded(col, id)) {
    // Not in memory means no write of it in flight (a write keeps its entity loaded until
    // durable), so the store holds all of it: serve the stored bytes without loading a
    // document — a late joiner would otherwise sweep the whole collection through the LRU,
    // evicting the hot entities (and, for Automerge, load and free every document).
    const stored = await entities.readStored(col, id)
    if (stored === undefined) return null
    // Measured here too: after a restart a late joiner's range may be all that reads a cold entity.
    entities.sizes?.met(col.name, id, (stored.snapshot?.byteLength ?? 0) + stored.deltas.reduce((n, d) => n + d.byteLength, 0))
    const parts = stored.snapshot === undefined ? stored.deltas : [stored.snapshot, ...stored.deltas]
    if (parts.length === 0) return null
    const merged = col.backend.mergeDeltas(parts)
    if (merged.byteLength <= maxBytes) return merged
  }
  const entity = await acquireDurable(entities, col, id)
  if (entity === undefined) return null
  try {
    return entity.head === undefined || !stillDurable(entity) ? null : col.backend.deltaSince(entity.doc, emptyVersionOf(col.backend).version)
  } finally {
    entities.release(entity)
  }
}
