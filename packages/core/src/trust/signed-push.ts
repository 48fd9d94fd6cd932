import { encode } from 'cborg'
import { bytesEqual, concatBytes, sha256, toHex } from '../hash.js'
import { decodeBounded } from '../replication/messages/envelope.js'
import { asArray, asBytes, asHash, asInt, asRecord, asString, invalid } from '../replication/messages/fields.js'

/**
 * Signed writes: what a replica in a cluster signs when it pushes its own changes, and the
 * proof a receiver keeps of it.
 *
 * One signature per push (a push carries what a tick committed, one coalesced delta per
 * entity): the author signs a small payload — namespace, collection, backend, its peer id, the
 * commit time, and (entity id, SHA-256 of the delta) for every entry — not the deltas
 * themselves. So a receiver checks each delta against its hash, and keeps only the payload and
 * the signature as the proof (tens of bytes per entry, not a second copy of the deltas); the
 * change feed names it, and `convergent audit` re-verifies it offline.
 */

/** What the signature covers besides the payload: a fixed context, so no other signature (a policy's, a tombstone's) passes as one. */
const SIGNING_CONTEXT = new TextEncoder().encode('convergent signed push v1\n')

/** Largest payload (1,024 entries of ids up to 1 KiB and hashes fit) and signature accepted. */
export const MAX_PAYLOAD_BYTES = 1_200_000
export const MAX_SIGNATURE_BYTES = 256

/** CBOR items of a payload besides its entries: the map, 7 keys, 7 values (the entries' list among them). */
const PAYLOAD_FIELD_ITEMS = 15

/** What the author of a push signs. */
export interface PushPayload {
  namespace: string
  collection: string
  backend: string
  /** The author: the replica that made the changes (its peer id). */
  author: string
  /** The author's push counter (not unique across restarts: the signature identifies a push). */
  sequence: number
  /** When the oldest change in it was committed at the author (ms since the epoch, its clock). */
  time?: number
  /** One per entry, in the push's order: the entity id and the SHA-256 of its delta. */
  entries: [id: string, deltaHash: Uint8Array][]
}

export function encodePayload(p: PushPayload): Uint8Array {
  const body: Record<string, unknown> = { n: p.namespace, c: p.collection, b: p.backend, a: p.author, s: p.sequence, h: p.entries }
  if (p.time !== undefined) body.t = p.time
  return encode(body)
}

/**
 * Decodes and checks the shape of a payload (never the signature: the receiver checks it
 * after this). Bounded while it decodes — the fields and 3 CBOR items per entry — since
 * anyone can send one: a payload is bytes inside the message, out of the envelope's reach.
 */
export function decodePayload(bytes: Uint8Array, maxEntries: number): PushPayload {
  if (bytes.byteLength > MAX_PAYLOAD_BYTES) throw invalid(`a signed push payload of ${bytes.byteLength} bytes`)
  const body = decodeBounded(bytes, PAYLOAD_FIELD_ITEMS + 3 * maxEntries, 'signed push payload')
  const r = asRecord(body, 'signed push payload')
  const time = r.t === undefined ? undefined : asInt(r.t, 'signed push time')
  return {
    namespace: asString(r.n, 'signed push namespace'),
    collection: asString(r.c, 'signed push collection'),
    backend: asString(r.b, 'signed push backend'),
    author: asString(r.a, 'signed push author', 256),
    sequence: asInt(r.s, 'signed push sequence'),
    ...(time !== undefined ? { time } : {}),
    entries: asArray(r.h, 'signed push entries', maxEntries).map((e, i) => {
      const t = asArray(e, `signed push entry ${i}`, 2)
      return [asString(t[0], `signed push entry ${i} id`), asHash(t[1], `signed push entry ${i} hash`)] as [string, Uint8Array]
    }),
  }
}

/** The bytes an author's key signs for a payload. */
export function signingInput(payload: Uint8Array): Uint8Array {
  return concatBytes([SIGNING_CONTEXT, payload])
}

/** The payload of deltas about to be pushed (hashing each delta once). */
export function payloadOf(p: Omit<PushPayload, 'entries'>, entries: readonly (readonly [string, Uint8Array])[]): PushPayload {
  return { ...p, entries: entries.map(([id, delta]) => [id, sha256(delta)]) }
}

/** True if every delta matches the hash the payload signs for it, in order and with the same ids. */
export function deltasMatch(payload: PushPayload, entries: readonly (readonly [string, Uint8Array])[]): boolean {
  if (payload.entries.length !== entries.length) return false
  for (let i = 0; i < entries.length; i++) {
    const [id, hash] = payload.entries[i]!
    const [eid, delta] = entries[i]!
    if (id !== eid || !bytesEqual(hash, sha256(delta))) return false
  }
  return true
}

/**
 * A push's proof as a receiver stores it (a meta record): the signed payload and the signature.
 * Change-feed entries name it by `proofIdOf(signature)`.
 */
export interface PushProof {
  payload: Uint8Array
  signature: Uint8Array
}

/** A remote change's verified author and the proof a receiver stores for it (see Entities.commit). */
export interface SignedBy {
  author: string
  proof: { id: string; record: Uint8Array }
}

/** Meta records of proofs: `proof/<collection> NUL <id>` (per collection, so dropping one drops its proofs). */
export const PROOF_PREFIX = 'proof/'

/** The meta key of a proof of `collection` (collection names hold no NUL). */
export function proofKey(collection: string, proofId: string): string {
  return `${proofPrefixOf(collection)}${proofId}`
}

/** The prefix of every proof key of `collection`. */
export function proofPrefixOf(collection: string): string {
  return `${PROOF_PREFIX}${collection}\u0000`
}

/** A proof's id: the first 16 bytes of the SHA-256 of its signature, in hex (one push, one id). */
export function proofIdOf(signature: Uint8Array): string {
  return toHex(sha256(signature).subarray(0, 16))
}

export function encodeProof(p: PushProof): Uint8Array {
  return encode({ p: p.payload, g: p.signature })
}

/** Throws (an InvalidMessageError naming what is wrong) if the record is not a proof. */
export function decodeProof(bytes: Uint8Array): PushProof {
  const r = asRecord(decodeBounded(bytes, 5, 'push proof'), 'push proof')
  const payload = asBytes(r.p, 'push proof payload')
  const signature = asBytes(r.g, 'push proof signature')
  if (payload.byteLength > MAX_PAYLOAD_BYTES || signature.byteLength > MAX_SIGNATURE_BYTES) throw invalid('push proof over its bounds')
  return { payload, signature }
}

/** What re-verifying a stored proof against one change-feed entry found. */
export type ProofCheck = { ok: true; author: string; deltaHash: Uint8Array; time?: number } | { ok: false; why: string }

/**
 * Re-verifies a stored proof for one feed entry (collection, entity id, recorded author):
 * the record decodes, the signature verifies under the author's key, and the signed payload
 * names this namespace, collection, author and entity. `verify` is the peer-key check
 * (libp2p's, in the convergent package).
 */
export async function checkPushProof(
  record: Uint8Array | undefined,
  proofId: string,
  entry: { namespace?: string; collection: string; id: string; author: string },
  verify: (peer: string, data: Uint8Array, signature: Uint8Array) => Promise<boolean>,
): Promise<ProofCheck> {
  if (record === undefined) return { ok: false, why: `proof ${proofId} is missing` }
  let proof: PushProof
  let payload: PushPayload
  try {
    proof = decodeProof(record)
    payload = decodePayload(proof.payload, Number.MAX_SAFE_INTEGER)
  } catch (err) {
    return { ok: false, why: (err as Error).message }
  }
  if (proofIdOf(proof.signature) !== proofId) return { ok: false, why: `proof ${proofId} holds another push's signature` }
  if (payload.author !== entry.author) return { ok: false, why: `signed by ${payload.author}, the feed says ${entry.author}` }
  if (!(await verify(payload.author, signingInput(proof.payload), proof.signature)))
    return { ok: false, why: `the signature does not verify under ${payload.author}'s key` }
  if (entry.namespace !== undefined && payload.namespace !== entry.namespace) return { ok: false, why: `signed for namespace '${payload.namespace}'` }
  if (payload.collection !== entry.collection) return { ok: false, why: `signed for collection '${payload.collection}'` }
  const signed = payload.entries.find(([id]) => id === entry.id)
  if (signed === undefined) return { ok: false, why: `the signed push does not name entity '${entry.id}'` }
  return { ok: true, author: payload.author, deltaHash: signed[1], ...(payload.time !== undefined ? { time: payload.time } : {}) }
}
