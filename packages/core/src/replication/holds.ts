import { ConvergentError, isConvergentError } from '../errors.js'
import { checkId } from '../json.js'
import { acquireDurable, stillDurable } from './durable.js'
import type { ReplicationContext } from './context.js'
import { decodeHoldsRequest, encodeHoldsResponse, invalid, MAX_HOLDS_VERSION_BYTES, type HoldsRequest } from './messages/index.js'
import type { CollectionState } from '../entities.js'
import { drop } from './receiver.js'

const NOT_HELD = encodeHoldsResponse({ held: false })

/**
 * Answers a writer's acknowledgement query (HoldsRequest) from this replica's DURABLE state:
 * acquireDurable waits out local writes in flight, so "held" never covers what a crash could
 * take back. Anything unknown (collection, backend, entity) is "not held", and a query never
 * creates a collection. A version the backend cannot read is a malformed message: counted
 * against the peer and answered "not held".
 */
export async function serveHoldsRequest(ctx: ReplicationContext, from: string, body: unknown): Promise<Uint8Array> {
  const req = decodeHoldsRequest(body)
  try {
    checkId(req.collection, 'collection name', ctx.limits)
    checkId(req.id, 'id', ctx.limits)
  } catch (err) {
    throw invalid((err as Error).message)
  }
  // Read control: whether we hold an entity tells its existence; only readers may ask.
  if (!ctx.access.mayRead(from, req.collection)) throw new ConvergentError('ERR_FORBIDDEN', `the cluster policy does not let ${from} read '${req.collection}'`)
  const col = ctx.entities.collections.get(req.collection)
  if (col === undefined || col.dropped === true || col.backend.name !== req.backend) return NOT_HELD
  // Not in memory: answer from the store without caching a document (queries for ids nobody
  // stored, or for cold ones, must not evict the hot entities from the cache).
  if (!ctx.entities.isLoaded(col, req.id)) return answerFromStore(ctx, from, col, req)
  const entity = await acquireDurable(ctx.entities, col, req.id)
  if (entity === undefined) return NOT_HELD // busy with local writes: the writer asks again
  try {
    if (!stillDurable(entity)) return NOT_HELD // written since it was found durable: busy too
    return answer(ctx, from, col, req, entity.doc, entity.head !== undefined)
  } finally {
    ctx.entities.release(entity)
  }
}

/** The answer for an entity not in memory: from its stored records, loaded into a document that is freed at once. */
async function answerFromStore(ctx: ReplicationContext, from: string, col: CollectionState, req: HoldsRequest): Promise<Uint8Array> {
  const stored = await ctx.entities.readStored(col, req.id)
  if (stored === undefined) return encodeHoldsResponse({ held: false, version: null })
  const doc = col.backend.load(stored.snapshot, stored.deltas, TEMP_ACTOR)
  try {
    return answer(ctx, from, col, req, doc, true)
  } finally {
    col.backend.dispose?.(doc)
  }
}

/** Held or not; when not, our version (null: we hold nothing of it) lets the writer send just what we lack. */
function answer(ctx: ReplicationContext, from: string, col: CollectionState, req: HoldsRequest, doc: unknown, stored: boolean): Uint8Array {
  let held: boolean
  try {
    held = col.backend.includes(doc, req.version)
  } catch (err) {
    if (!isConvergentError(err, 'ERR_INVALID_VERSION')) throw err
    drop(ctx, from, 'malformed', `bad version in a holds query for '${req.id}': ${err.message}`, { collection: req.collection, entity: req.id })
    return NOT_HELD
  }
  if (held) return encodeHoldsResponse({ held })
  const ours = stored ? col.backend.version(doc) : null
  return encodeHoldsResponse(ours !== null && ours.byteLength > MAX_HOLDS_VERSION_BYTES ? { held } : { held, version: ours })
}

/** The actor of a document only read, never written. */
const TEMP_ACTOR = new Uint8Array(16)
