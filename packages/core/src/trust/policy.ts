import { ConvergentError } from '../errors.js'
import { sha256, toHex } from '../hash.js'
import { asArray, asInt, asRecord, asString, decodeMessage, encodeMessage, invalid, MessageType } from '../replication/messages/index.js'

/**
 * The cluster policy: who is a member, and per collection which roles may read and write.
 * Roles name peer ids; a rule lists roles, and '*' in a rule means every member. The entry
 * '*' under `collections` is the rule of every collection not listed; a collection with no
 * rule at all is closed to everyone (deny by default). Admins (the trust root given at open)
 * sign it; they are members but hold no data rights unless a role names them.
 */
export interface PolicyDocument {
  roles: Record<string, string[]>
  collections: Record<string, CollectionRule>
  /**
   * Peer ids revoked for good: never members again, whatever a role says — in this version or
   * any later one, and also when two admins change the policy concurrently (every replica
   * keeps the revocations of every valid policy it has seen; see Access). Admins cannot be
   * revoked (they are fixed at open).
   */
  revoked?: string[]
}

export interface CollectionRule {
  read: string[]
  write: string[]
  /**
   * The collection holds bounded counters (replica.counter(name)): every replica guards their
   * signed rows, also one that never opens the counter but relays it (see Counter). Without
   * it, only replicas that open the counter guard it.
   */
  counter?: boolean
  /**
   * The backend every replica holds the collection with ('yjs', 'automerge'). A collection takes
   * the backend of its first delta a replica takes, so without this two replicas can take a new
   * collection under different backends and never sync it (two services opening it differently,
   * or a writer sending each a different one). Pinned, a delta of another backend for a
   * collection a replica does not hold yet is refused everywhere, and the application's
   * collection(name) opens it with this one. A collection already held stays as it is. A rule
   * '*' with a backend pins every collection not listed.
   */
  backend?: string
}

/** A policy as adopted: the document, its version and the admin that signed it. */
export interface Policy extends PolicyDocument {
  version: number
  signedBy: string
}

/** A policy with its signature, as stored and sent: `bytes` are exactly what was signed. */
export interface SignedPolicy {
  policy: Policy
  /** The PolicyDocument message (envelope + CBOR) the signature covers. */
  bytes: Uint8Array
  signature: Uint8Array
  /** SHA-256 of bytes: breaks ties between two different policies of one version. */
  hash: Uint8Array
}

/** Bounds of a policy: it is small, and every replica decodes what any admin-key holder signs. */
export const POLICY_LIMITS = { maxBytes: 256 * 1024, maxRoles: 256, maxMembers: 4096, maxRules: 4096, maxNameBytes: 256 } as const

/** What a signature over a policy covers besides the document: a fixed context, so a signature made for anything else never passes as one. */
const SIGNING_CONTEXT = new TextEncoder().encode('convergent policy v1\n')

export function signingInput(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(SIGNING_CONTEXT.byteLength + bytes.byteLength)
  out.set(SIGNING_CONTEXT)
  out.set(bytes, SIGNING_CONTEXT.byteLength)
  return out
}

/** Checks and normalises a document given by an application (ERR_INVALID_ARGUMENT). */
export function normalizePolicy(doc: unknown): PolicyDocument {
  let out: PolicyDocument
  try {
    out = normalized(doc)
  } catch (err) {
    throw new ConvergentError('ERR_INVALID_ARGUMENT', `invalid policy: ${(err as Error).message.replace(/^invalid message: /, '')}`)
  }
  // Counters live in Automerge collections (replica.counter): pinned to another backend, one
  // could be opened nowhere it is not held yet (review-policy-backend HOLE 3). Checked where a
  // policy is signed only: a signed one is decoded as it is, so every replica takes the same.
  for (const [name, rule] of Object.entries(out.collections)) {
    if (rule.counter === true && rule.backend !== undefined && rule.backend !== 'automerge') {
      throw new ConvergentError(
        'ERR_INVALID_ARGUMENT',
        `invalid policy: '${name}' is a counter's collection (counter: true), which is held with the 'automerge' backend, not '${rule.backend}'`,
      )
    }
  }
  return out
}

/** Shape, bounds and names; members and roles sorted and deduplicated (so equal policies encode equally). */
function normalized(doc: unknown): PolicyDocument {
  const d = asRecord(doc, 'policy')
  const rolesIn = asRecord(d.roles ?? {}, 'roles')
  const roleNames = Object.keys(rolesIn).sort()
  if (roleNames.length > POLICY_LIMITS.maxRoles) throw invalid(`more than ${POLICY_LIMITS.maxRoles} roles`)
  const roles: Record<string, string[]> = {}
  let members = 0
  for (const role of roleNames) {
    if (role === '*') throw invalid("'*' is not a role name (in a rule it means every member)")
    asString(role, 'role name', POLICY_LIMITS.maxNameBytes)
    const ids = asArray(rolesIn[role], `members of role '${role}'`, POLICY_LIMITS.maxMembers).map((p) =>
      asString(p, `a member of role '${role}'`, POLICY_LIMITS.maxNameBytes),
    )
    members += ids.length
    if (members > POLICY_LIMITS.maxMembers) throw invalid(`more than ${POLICY_LIMITS.maxMembers} role memberships`)
    roles[role] = [...new Set(ids)].sort()
  }
  const rulesIn = asRecord(d.collections ?? {}, 'collections')
  const names = Object.keys(rulesIn).sort()
  if (names.length > POLICY_LIMITS.maxRules) throw invalid(`more than ${POLICY_LIMITS.maxRules} collection rules`)
  const collections: Record<string, CollectionRule> = {}
  for (const name of names) {
    asString(name, 'collection name', POLICY_LIMITS.maxNameBytes)
    const rule = asRecord(rulesIn[name], `rule of '${name}'`)
    const list = (field: 'read' | 'write'): string[] => {
      const refs = asArray(rule[field] ?? [], `${field} roles of '${name}'`, POLICY_LIMITS.maxRoles + 1).map((r) =>
        asString(r, `a ${field} role of '${name}'`, POLICY_LIMITS.maxNameBytes),
      )
      for (const r of refs)
        if (r !== '*' && roles[r] === undefined) throw invalid(`the ${field} rule of '${name}' names role '${r}', which the policy does not define`)
      return [...new Set(refs)].sort()
    }
    if (rule.counter !== undefined && typeof rule.counter !== 'boolean') throw invalid(`the counter flag of '${name}' is not a boolean`)
    const backend = rule.backend === undefined ? undefined : asString(rule.backend, `the backend of '${name}'`, POLICY_LIMITS.maxNameBytes)
    collections[name] = {
      read: list('read'),
      write: list('write'),
      ...(rule.counter === true ? { counter: true } : {}),
      ...(backend !== undefined ? { backend } : {}),
    }
  }
  const revokedIn = asArray(d.revoked ?? [], 'revoked', POLICY_LIMITS.maxMembers).map((p) => asString(p, 'a revoked peer id', POLICY_LIMITS.maxNameBytes))
  const revoked = [...new Set(revokedIn)].sort()
  return revoked.length === 0 ? { roles, collections } : { roles, collections, revoked }
}

/** The bytes an admin signs: the document, its version and the namespace (a policy of one cluster never passes in another). */
export function encodePolicy(doc: PolicyDocument, version: number, namespace: string): Uint8Array {
  return encodeMessage(MessageType.PolicyDocument, {
    v: version,
    n: namespace,
    r: doc.roles,
    c: doc.collections,
    ...(doc.revoked?.length ? { x: doc.revoked } : {}),
  })
}

/**
 * Decodes a signed policy from a peer and checks everything but the signature (the caller
 * verifies that, see Access.verify): bounded decode, shape, namespace. InvalidMessageError
 * on anything else.
 */
export function decodeSignedPolicy(bytes: Uint8Array, signature: Uint8Array, signedBy: string, namespace: string): SignedPolicy {
  const msg = decodeMessage(bytes, POLICY_LIMITS.maxBytes)
  if (msg.type !== MessageType.PolicyDocument) throw invalid(`a policy document of type ${msg.type}`)
  const body = asRecord(msg.body, 'policy document')
  const version = asInt(body.v, 'policy version', 1)
  if (asString(body.n, 'policy namespace') !== namespace) throw invalid(`a policy of namespace '${String(body.n)}', not '${namespace}'`)
  const doc = normalized({ roles: body.r, collections: body.c, revoked: body.x })
  return { policy: { ...doc, version, signedBy }, bytes, signature, hash: sha256(bytes) }
}

/** True if `a` replaces `b`: a higher version, or the same version with the greater hash (every replica picks the same one). */
export function supersedes(a: SignedPolicy, b: SignedPolicy | undefined): boolean {
  if (b === undefined) return true
  if (a.policy.version !== b.policy.version) return a.policy.version > b.policy.version
  return toHex(a.hash) > toHex(b.hash)
}
