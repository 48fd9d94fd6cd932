import { codeOf } from '../logger.js'
import { ConvergentError } from '../errors.js'
import { applyRemoteDelta } from './apply.js'
import { headed } from './heads.js'
import { acquireDurable, stillDurable } from './durable.js'
import type { ReplicationContext } from './context.js'
import { emptyVersionOf } from '../empty-version.js'
import { inlineLimit } from './parts.js'
import { decodeMessage, decodeRightsRequest, decodeRightsResponse, encodeRightsRequest, encodeRightsResponse, MessageType } from './messages/index.js'

/**
 * Bounded-counter rights over the request channel. The requester sends its version of the
 * counter; the granter transfers rights (a durable local write) and answers with the amount
 * and the delta the requester lacks — so the rights arrive with the answer, not later by gossip.
 */
export async function serveRightsRequest(ctx: ReplicationContext, from: string, body: unknown): Promise<Uint8Array> {
  const { collection, id, want, version } = decodeRightsRequest(body)
  // Rights move only between replicas that may write the counter.
  if (!ctx.access.mayWrite(from, collection) || !ctx.access.mayWrite(ctx.access.self, collection)) {
    throw new ConvergentError('ERR_FORBIDDEN', `the cluster policy does not let ${from} hold rights on '${collection}'`)
  }
  const granted = await ctx.grantRights(collection, id, from, want)
  let delta: Uint8Array | null = null
  const col = ctx.entities.collections.get(collection)
  if (granted > 0 && col !== undefined) {
    const entity = await acquireDurable(ctx.entities, col, id)
    if (entity !== undefined) {
      try {
        // Written since it was found durable: the rights arrive with the next sync round instead.
        if (stillDurable(entity)) delta = col.backend.deltaSince(entity.doc, version ?? emptyVersionOf(col.backend).version)
        if (delta !== null) delta = await headed(ctx, col, id, delta, from, { doc: entity.doc, theirVersion: version })
        // Too large for one message: the rights arrive with the next sync round instead.
        if (delta !== null && delta.byteLength > inlineLimit(ctx.limits)) delta = null
      } finally {
        ctx.entities.release(entity)
      }
    }
  }
  return encodeRightsResponse({ granted, delta, backend: col?.backend.name ?? '' })
}

/** Asks the peers in order until `want` rights were granted; applies the deltas that carry them. */
export async function requestRights(ctx: ReplicationContext, collection: string, id: string, want: number, peers: string[]): Promise<number> {
  const col = ctx.entities.collections.get(collection)
  if (col === undefined) return 0
  let total = 0
  for (const peer of peers) {
    if (total >= want) break
    const entity = await ctx.entities.acquire(col, id)
    let version: Uint8Array | null
    try {
      version = entity.head === undefined ? null : col.backend.version(entity.doc)
    } finally {
      ctx.entities.release(entity)
    }
    try {
      const data = encodeRightsRequest({ collection, id, want: want - total, version })
      const reply = decodeMessage(await ctx.network.request(peer, data, { maxBytes: ctx.limits.maxMessageBytes }), ctx.limits.maxMessageBytes)
      if (reply.type !== MessageType.RightsResponse) throw new ConvergentError('ERR_INVALID_MESSAGE', `unexpected reply type ${reply.type}`)
      const response = decodeRightsResponse(reply.body)
      if (response.delta !== null) await applyRemoteDelta(ctx, peer, collection, response.backend, id, response.delta)
      total += response.granted
    } catch (err) {
      ctx.logger.warn(`asking ${peer} for rights on '${collection}/${id}' failed: ${(err as Error).message}`, { peer, collection, entity: id, ...codeOf(err) })
    }
  }
  return total
}
