import { ConvergentError } from '../errors.js'
import { applyRemoteDelta } from './apply.js'
import { acquireDurable } from './durable.js'
import type { ReplicationContext } from './context.js'
import { emptyVersionOf } from './empty-version.js'
import { asBytesOrNull, asInt, asRecord, asString, decodeMessage, encodeMessage, MessageType } from './wire.js'

/**
 * Bounded-counter rights over the request channel. The requester sends its version of the
 * counter; the granter transfers rights (a durable local write) and answers with the amount
 * and the delta the requester lacks — so the rights arrive with the answer, not later by gossip.
 */
export async function serveRightsRequest(ctx: ReplicationContext, from: string, body: unknown): Promise<Uint8Array> {
  const r = asRecord(body, 'rights request')
  const collection = asString(r.c, 'collection')
  const id = asString(r.i, 'id')
  const want = asInt(r.w, 'amount', 1)
  const version = asBytesOrNull(r.v, 'version')
  const granted = await ctx.grantRights(collection, id, from, want)
  let delta: Uint8Array | null = null
  const col = ctx.entities.collections.get(collection)
  if (granted > 0 && col !== undefined) {
    const entity = await acquireDurable(ctx.entities, col, id)
    if (entity !== undefined) {
      try {
        delta = col.backend.deltaSince(entity.doc, version ?? emptyVersionOf(col.backend).version)
      } finally {
        ctx.entities.release(entity)
      }
    }
  }
  return encodeMessage(MessageType.RightsResponse, { g: granted, d: delta, b: col?.backend.name ?? '' })
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
      const data = encodeMessage(MessageType.RightsRequest, { c: collection, i: id, w: want - total, v: version })
      const reply = decodeMessage(await ctx.network.request(peer, data, { maxBytes: ctx.limits.maxMessageBytes }), ctx.limits.maxMessageBytes)
      if (reply.type !== MessageType.RightsResponse) throw new ConvergentError('ERR_INVALID_MESSAGE', `unexpected reply type ${reply.type}`)
      const body = asRecord(reply.body, 'rights response')
      const granted = asInt(body.g, 'granted')
      const delta = asBytesOrNull(body.d, 'delta')
      if (delta !== null) await applyRemoteDelta(ctx, peer, collection, asString(body.b, 'backend'), id, delta)
      total += granted
    } catch (err) {
      ctx.logger.warn(`asking ${peer} for rights on '${collection}/${id}' failed: ${(err as Error).message}`)
    }
  }
  return total
}
