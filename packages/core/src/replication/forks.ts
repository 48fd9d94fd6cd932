import type { ChangeMeta } from '../backend.js'
import type { ForkedActorError } from '../errors.js'
import { actorOwnedBy } from '../trust/actor-binding.js'
import type { VerifiedHead } from '../trust/signed-heads.js'
import type { ReplicationContext } from './context.js'
import type { DropReason } from './peer-stats.js'

/**
 * A writer that forks its own actor — two different changes of one actor and seq — parts the
 * replicas that take each first (Automerge holds one; README). The receiver tells it apart from a
 * bad delta (ForkedActorError, drop reason 'forked'), and blames the actor's owner only where
 * the owner signed the refused side too (forkSigner).
 */

/**
 * The owner of a forked actor, where a verified head of it reaches the refused change (its actor
 * and seq) through the changes the delta carries: the owner signed that side too. Undefined
 * otherwise — a head of the side held here covers that seq as well, and anyone can send it with
 * a change forged under the actor, or none at all after a whole document (review-actor-fork HOLE 2).
 */
export function forkSigner(
  err: ForkedActorError,
  vouched: ReadonlyMap<string, VerifiedHead>,
  changes: readonly (ChangeMeta & { deps: string[] })[] | undefined,
): string | undefined {
  const head = vouched.get(err.actor)
  if (changes === undefined || head === undefined || !actorOwnedBy(err.actor, head.author)) return undefined
  const carried = new Map(changes.map((c) => [c.hash, c]))
  const seen = new Set<string>()
  const stack = [head.hash]
  while (stack.length > 0) {
    const c = carried.get(stack.pop()!)
    if (c === undefined || seen.has(c.hash)) continue
    seen.add(c.hash)
    if (c.actor === err.actor && c.seq === err.seq) return head.author
    stack.push(...c.deps)
  }
  return undefined
}

/**
 * The drop of a fork's other side: the sender's, and where `owner` signed it, counted against
 * the owner among the authors too and told once per actor and entity (ctx.forksTold), naming the
 * owner to revoke.
 */
export function forkRefusal(
  ctx: ReplicationContext,
  err: ForkedActorError,
  where: { collection: string; id: string; peer: string; author?: string },
  owner: string | undefined,
): { reason: DropReason; message: string } {
  if (owner === undefined) {
    return {
      reason: 'forked',
      message: `a change of actor ${err.actor} at seq ${err.seq}, where this replica holds another, and no head of its owner covers it (the owner forked it, or the sender forged it): ${err.message}`,
    }
  }
  const message = `${owner} forked its actor: ${err.message}`
  if (owner !== where.author) ctx.authorStats.drop(owner, 'forked', message)
  const key = `${where.collection}\0${where.id}\0${err.actor}`
  if (!ctx.forksTold.has(key)) {
    if (ctx.forksTold.size >= 1000) ctx.forksTold.clear()
    ctx.forksTold.add(key)
    ctx.logger.error(
      `${owner} signed two different changes of actor ${err.actor} at seq ${err.seq} of '${where.collection}/${where.id}': replicas that took the other one refuse this one for good, and the entity differs between them — revoke ${owner} (policy.set with revoked)`,
      { collection: where.collection, entity: where.id, actor: err.actor, seq: err.seq, owner, peer: where.peer },
    )
  }
  return { reason: 'forked', message }
}
