import { bytesEqual } from '../hash.js'
import { checkId, type JsonObject } from '../json.js'
import { ConvergentError } from '../errors.js'
import type { ReplicationContext } from './context.js'
import type { DropReason } from './peer-stats.js'

export type ApplyResult = 'applied' | 'duplicate' | DropReason

/**
 * The receive path for one delta from a peer: validate → apply (idempotent, commutative) →
 * persist → emit. Bad input is dropped, counted against the peer and logged; it never throws
 * and never reaches the store.
 */
export async function applyRemoteDelta(
  ctx: ReplicationContext,
  peer: string,
  collection: string,
  backendName: string,
  id: string,
  delta: Uint8Array,
): Promise<ApplyResult> {
  const stats = ctx.stats.of(peer)
  const drop = (reason: DropReason, message: string): ApplyResult => {
    stats.dropped[reason]++
    stats.lastDrop = { reason, message }
    ctx.logger.warn(`dropped a delta from ${peer}: ${message}`, { peer, reason, collection, id })
    return reason
  }
  try {
    checkId(collection, 'collection name', ctx.limits)
    checkId(id, 'id', ctx.limits)
  } catch (err) {
    return drop('invalidId', (err as Error).message)
  }
  const backend = ctx.backends.get(backendName)
  if (backend === undefined) return drop('unknownBackend', `unknown backend '${backendName}'`)
  if (delta.byteLength > ctx.limits.maxDeltaBytes) {
    return drop('tooLarge', `delta of ${delta.byteLength} bytes exceeds maxDeltaBytes ${ctx.limits.maxDeltaBytes}`)
  }
  const col = ctx.collectionFor(collection, backend)
  if (col.backend.name !== backendName) {
    return drop('backendMismatch', `collection '${collection}' uses '${col.backend.name}', the delta is for '${backendName}'`)
  }
  if (!ctx.isOpen()) return 'duplicate'
  let entity
  try {
    entity = await ctx.entities.acquire(col, id)
  } catch (err) {
    ctx.logger.error(`could not load '${id}' of '${collection}' to apply a delta from ${peer}`, { err })
    return drop('storeFailed', (err as Error).message)
  }
  let committed
  let read: { value: JsonObject | undefined }
  try {
    // Before applying: a Yjs document changes in place.
    const before = ctx.entities.versionHashOf(entity)
    let next: unknown
    try {
      next = backend.applyDelta(entity.doc, delta)
    } catch (err) {
      return drop('invalidDelta', err instanceof ConvergentError ? err.message : `backend rejected the delta: ${String(err)}`)
    }
    const versionHash = backend.versionHash(next)
    const moved = !bytesEqual(versionHash, before)
    if (!moved && !backend.hasPending(next)) {
      entity.doc = next
      stats.deltasDuplicate++
      return 'duplicate'
    }
    // Read once: for the delete flag, and as the value subscribers are told about.
    read = { value: backend.read(next) }
    try {
      committed = ctx.entities.commit(col, entity, next, delta, 'remote', peer, read.value === undefined, versionHash)
    } catch (err) {
      return drop('storeFailed', (err as Error).message) // an earlier write of it failed meanwhile
    }
  } finally {
    ctx.entities.release(entity)
  }
  try {
    const entry = await committed
    stats.deltasApplied++
    // The value right after this change (see Collection.emit): events go out in commit order.
    ctx.emitRemote(collection, entry, read.value, peer)
    return 'applied'
  } catch (err) {
    return drop('storeFailed', (err as Error).message)
  }
}
