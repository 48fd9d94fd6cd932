import { policyToWire } from '../trust/access.js'
import type { ReplicationContext } from './context.js'
import { decodeMessage, decodePolicyBody, encodePolicyOffer, encodePolicyResponse, MessageType, type PolicyBody, type PolicyWire } from './messages/index.js'
import { drop } from './receiver.js'

/**
 * Spreading the cluster policy: each anti-entropy round starts with an offer of the
 * initiator's policy, answered with the responder's when that one is newer, and a policy an
 * admin sets is offered to every connected peer at once. Whatever the order, every replica
 * ends with the policy that supersedes all the others it has seen (Access.offer) — and with the
 * revocations of every one of them: each message also carries the signed policies whose
 * revocations the sender's current one lacks (evidence).
 */

/** Serves a peer's PolicyOffer: adopts its policy if newer; answers with ours if ours is newer. */
export async function servePolicyOffer(ctx: ReplicationContext, from: string, body: unknown): Promise<Uint8Array> {
  const offered = decodePolicyBody(body)
  await considerAll(ctx, from, offered)
  const ours = ctx.access.signed
  // Ours is newer unless theirs was just adopted (then ours is theirs) or is not older.
  const reply = ours === undefined || (offered.policy !== null && ours.signature === offered.policy.signature) ? null : policyToWire(ours)
  return encodePolicyResponse(reply, ctx.access.evidenceWires())
}

/** Our PolicyOffer (the first request of a round). */
export function policyOffer(ctx: ReplicationContext): Uint8Array {
  const ours = ctx.access.signed
  return encodePolicyOffer(ours === undefined ? null : policyToWire(ours), ctx.access.evidenceWires())
}

/** The body of a peer's PolicyResponse: adopts the policy it carries if valid and newer. */
export async function takePolicyResponse(ctx: ReplicationContext, peer: string, body: unknown): Promise<void> {
  await considerAll(ctx, peer, decodePolicyBody(body))
}

async function considerAll(ctx: ReplicationContext, from: string, body: PolicyBody): Promise<void> {
  if (body.policy !== null) await consider(ctx, from, body.policy)
  for (const wire of body.evidence) await consider(ctx, from, wire)
}

/** Offers our policy to a peer outside a round and adopts its answer. Peers that do not know the message are skipped quietly. */
export async function offerPolicy(ctx: ReplicationContext, peer: string): Promise<void> {
  const reply = decodeMessage(await ctx.network.request(peer, policyOffer(ctx), { maxBytes: ctx.limits.maxMessageBytes }), ctx.limits.maxMessageBytes)
  if (reply.type === MessageType.Error) return // an older peer (or one that refused)
  if (reply.type !== MessageType.PolicyResponse) {
    drop(ctx, peer, 'malformed', `expected a policy response, got type ${reply.type}`)
    return
  }
  await takePolicyResponse(ctx, peer, reply.body)
}

/** A policy from a peer: adopted if valid and newer; an invalid one is counted against the peer. */
async function consider(ctx: ReplicationContext, from: string, wire: PolicyWire): Promise<void> {
  const result = await ctx.access.offer(wire, from)
  if (result === 'invalid')
    drop(ctx, from, 'forbidden', `a cluster policy signed by ${wire.signedBy.slice(0, 80)} that does not verify against this replica's admins`)
  else if (result === 'adopted')
    ctx.logger.warn(`adopted cluster policy version ${ctx.access.policy!.version} (signed by ${wire.signedBy}) from ${from}`, { peer: from })
  else if (result === 'evidence')
    ctx.logger.warn(`kept the revocations of an older cluster policy (signed by ${wire.signedBy}) from ${from}: they hold under the current version too`, {
      peer: from,
    })
}
