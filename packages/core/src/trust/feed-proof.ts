import { fromHex } from '../hash.js'
import { actorsOfProofId, claimedStatement, decodeHeadList, HeadVerifier, type VerifiedHead } from './signed-heads.js'
import { checkPushProof, type ProofCheck } from './signed-push.js'

/**
 * Re-verifies the proof a change-feed entry names, offline (`convergent audit`): a signed push's
 * (checkPushProof), or — for a change anti-entropy brought — the heads of its authors that
 * vouched for it (`h:<actor>[,<actor>…]`): per actor, the head stored for that entity and
 * actor, the newest of the actor, which covers every earlier change of it. Each must verify
 * under its author's key, name this namespace (when given), collection and entity, and the
 * actor must be the author's. One author: the entry's origin must be it; several: the origin
 * is the relaying peer, and `authors` names them.
 */
export async function checkProof(
  record: Uint8Array | undefined,
  proofId: string,
  entry: { namespace?: string; collection: string; id: string; author: string },
  verify: (peer: string, data: Uint8Array, signature: Uint8Array) => Promise<boolean>,
): Promise<ProofCheck & { authors?: string[] }> {
  const actors = actorsOfProofId(proofId)
  if (actors === undefined) return checkPushProof(record, proofId, entry, verify)
  if (record === undefined)
    return { ok: false, why: `the head${actors.length === 1 ? '' : 's'} of actor${actors.length === 1 ? '' : 's'} ${actors.join(', ')} missing` }
  let records: Uint8Array[]
  try {
    records = actors.length === 1 ? [record] : decodeHeadList(record)
  } catch (err) {
    return { ok: false, why: `not a list of heads: ${(err as Error).message}` }
  }
  if (records.length !== actors.length) return { ok: false, why: `${records.length} heads for ${actors.length} actors` }
  const heads: VerifiedHead[] = []
  for (let i = 0; i < actors.length; i++) {
    const actor = actors[i]!
    if (records[i]!.byteLength === 0) return { ok: false, why: `the head of actor ${actor} is missing` }
    const namespace = entry.namespace ?? namespaceOf(records[i]!)
    const head = await new HeadVerifier(namespace ?? '', verify).check(records[i]!, { collection: entry.collection, id: entry.id })
    if ('refused' in head) return { ok: false, why: head.refused }
    if (head.actor !== actor) return { ok: false, why: `the head is of actor ${head.actor}, the feed names ${actor}` }
    heads.push(head)
  }
  const authors = [...new Set(heads.map((h) => h.author))].sort()
  if (authors.length === 1 && authors[0] !== entry.author) return { ok: false, why: `signed by ${authors[0]}, the feed says ${entry.author}` }
  return { ok: true, author: authors.length === 1 ? authors[0]! : entry.author, deltaHash: fromHex(heads[0]!.hash), ...(authors.length > 1 ? { authors } : {}) }
}

/** The namespace a head's statement names (the audit of a folder does not know its own). */
function namespaceOf(record: Uint8Array): string | undefined {
  try {
    return claimedStatement(record).namespace
  } catch {
    return undefined
  }
}
