import { bytesEqual, concatBytes, fromHex, sha256 } from '../hash.js'

/**
 * Actors bound to a peer (issue #13): in a cluster, the Automerge actor a replica writes
 * under is `nonce (16 bytes) ‖ tag (8 bytes)`, where tag = the first 8 bytes of
 * SHA-256(context ‖ peer id ‖ nonce). Anyone can check from the actor alone which peer it
 * belongs to, so only that peer's signature (a signed head, signed-heads.ts) can vouch for
 * changes made under it: another writer would need a peer key whose id hashes to the same
 * 64-bit tag (~2^64 key generations) to claim it.
 *
 * Actors of any other length (16 random bytes: development mode, or a release before this one)
 * are not bound; their changes stay vouched for by the writer that relays them.
 */
const CONTEXT = new TextEncoder().encode('convergent actor v1\n')
export const NONCE_BYTES = 16
const TAG_BYTES = 8
export const BOUND_ACTOR_BYTES = NONCE_BYTES + TAG_BYTES

function tagOf(peerId: string, nonce: Uint8Array): Uint8Array {
  return sha256(concatBytes([CONTEXT, new TextEncoder().encode(peerId), new Uint8Array([0]), nonce])).subarray(0, TAG_BYTES)
}

/** The actor `peerId` writes under for a document loaded with this random nonce (16 bytes). */
export function boundActor(peerId: string, nonce: Uint8Array): Uint8Array {
  if (nonce.byteLength !== NONCE_BYTES) throw new RangeError(`an actor nonce is ${NONCE_BYTES} bytes, not ${nonce.byteLength}`)
  return concatBytes([nonce, tagOf(peerId, nonce)])
}

/** Whether an actor (hex, as Automerge spells it) has the bound form: only its owner's heads vouch for it. */
export function isBoundActor(actorHex: string): boolean {
  return actorHex.length === 2 * BOUND_ACTOR_BYTES
}

/**
 * Answers of actorOwnedBy, remembered: one process writes under one actor, so a push's or a
 * catch-up's every leaf asks the same question (a SHA-256 each, ~8 µs, else). A pure function
 * of its two strings, so nothing a peer sends can make a remembered answer wrong; bounded.
 */
const owners = new Map<string, boolean>()
const REMEMBERED_OWNERS = 4096

/** True if the bound actor (hex) belongs to `peerId`. */
export function actorOwnedBy(actorHex: string, peerId: string): boolean {
  if (!isBoundActor(actorHex) || !/^[0-9a-f]+$/.test(actorHex)) return false
  const key = `${actorHex} ${peerId}`
  const known = owners.get(key)
  if (known !== undefined) return known
  const actor = fromHex(actorHex)
  const owned = bytesEqual(actor.subarray(NONCE_BYTES), tagOf(peerId, actor.subarray(0, NONCE_BYTES)))
  if (owners.size >= REMEMBERED_OWNERS) owners.clear()
  owners.set(key, owned)
  return owned
}
