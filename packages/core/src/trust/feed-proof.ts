import { fromHex } from '../hash.js'
import { actorOfProofId, claimedStatement, HeadVerifier } from './signed-heads.js'
import { checkPushProof, type ProofCheck } from './signed-push.js'

/**
 * Re-verifies the proof a change-feed entry names, offline (`convergent audit`): a signed push's
 * (checkPushProof), or — for a change anti-entropy brought — the head of its author that
 * vouched for it (`h:<actor>`): the head stored for that entity and actor, the newest of the
 * actor, which covers every earlier change of it. It must verify under the author's key, name
 * this namespace (when given), collection and entity, and the actor must be the author's.
 */
export async function checkProof(
  record: Uint8Array | undefined,
  proofId: string,
  entry: { namespace?: string; collection: string; id: string; author: string },
  verify: (peer: string, data: Uint8Array, signature: Uint8Array) => Promise<boolean>,
): Promise<ProofCheck> {
  const actor = actorOfProofId(proofId)
  if (actor === undefined) return checkPushProof(record, proofId, entry, verify)
  if (record === undefined) return { ok: false, why: `the head of actor ${actor} is missing` }
  const namespace = entry.namespace ?? namespaceOf(record)
  const head = await new HeadVerifier(namespace ?? '', verify).check(record, { collection: entry.collection, id: entry.id })
  if ('refused' in head) return { ok: false, why: head.refused }
  if (head.actor !== actor) return { ok: false, why: `the head is of actor ${head.actor}, the feed names ${actor}` }
  if (head.author !== entry.author) return { ok: false, why: `signed by ${head.author}, the feed says ${entry.author}` }
  return { ok: true, author: head.author, deltaHash: fromHex(head.hash) }
}

/** The namespace a head's statement names (the audit of a folder does not know its own). */
function namespaceOf(record: Uint8Array): string | undefined {
  try {
    return claimedStatement(record).namespace
  } catch {
    return undefined
  }
}
