/**
 * @packageDocumentation
 * Internals of @convergent/core for the simulator, the benchmarks and tests: the wire
 * protocol, digest trees, the entity cache, counters' row codec. Not a public API: it
 * changes with core.
 */
export * from './replication/messages/index.js'
export { topicOf } from './replication/context.js'
export { announceTopic } from './replication/announce.js'
export { DigestTree, DEPTH, FANOUT, DIGEST_BYTES, LEAF_BITS, entityHash, ancestorAt } from './digest.js'
export { EntityCache, type LoadedEntity } from './entity-cache.js'
export { encodeRowBody, rowKey, rowSigningInput, rowValue } from './counter-rows.js'
export { checkId, toEntityValue, jsonEqual, cloneJson, jsonWithin, numberBytes } from './json.js'
export { randomBytes, nextTurn } from './clock.js'
export { xorInto } from './hash.js'
export { emptyVersionOf } from './empty-version.js'
export { SubjectKeys, isSealed, sealedKeyId, keyIdOf, openSealed, storedSubjectKeys, type HeldKey, type SealedField } from './personal/subject-keys.js'
export { proofKey, type ProofCheck } from './trust/signed-push.js'
export { checkProof } from './trust/feed-proof.js'
export { actorOwnedBy, boundActor } from './trust/actor-binding.js'
export { headPrefixOf, unsignedKey, signHeads } from './trust/signed-heads.js'
export { encodeHeaded, decodeHeaded } from './replication/heads.js'
