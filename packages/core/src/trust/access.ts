import { encode, decode } from 'cborg'
import { ConvergentError } from '../errors.js'
import type { Logger } from '../logger.js'
import { getMetaPastDamage } from '../meta-scan.js'
import type { Store } from '../store.js'
import { decodePolicyWire, encodePolicyWire, type PolicyWire } from '../replication/messages/policy.js'
import { bytesEqual, toHex } from '../hash.js'
import { PeerBudget } from '../peer-budget.js'
import { decodeSignedPolicy, encodePolicy, normalizePolicy, signingInput, supersedes, type Policy, type PolicyDocument, type SignedPolicy } from './policy.js'

/**
 * The trust root and this replica's keys, given at open (the convergent package derives them
 * from `cluster.admins` and the libp2p identity).
 */
export interface TrustOptions {
  /** Peer ids whose signatures may set the policy. Fixed at open: a policy cannot change them. */
  admins: readonly string[]
  /** Signs with this replica's own key (the one its peer id names). */
  sign(data: Uint8Array): Promise<Uint8Array>
  /** True if `signature` over `data` was made by the key `peerId` names. Never throws for bad input. */
  verify(peerId: string, data: Uint8Array, signature: Uint8Array): Promise<boolean>
  /**
   * Whether `id` is a peer id that names a key (optional): policy.set() then refuses members
   * that are not — a typo would lock that member out unsaid, as none of its signatures could verify.
   */
  isPeerId?(id: string): boolean
}

export function policyToWire(p: SignedPolicy): PolicyWire {
  return { bytes: p.bytes, signedBy: p.policy.signedBy, signature: p.signature }
}

/** Meta record holding the adopted policy (its wire form, re-verified on open). */
const POLICY_KEY = 'cluster-policy'

/** Meta record holding the evidence of revocations (verified policies the current one lacks revocations of). */
const EVIDENCE_KEY = 'cluster-policy-evidence'
/**
 * Meta record written in the same batch as every policy adopted ({ version }): a policy was
 * adopted here. A policy record lost while this (or the evidence) remains — no checksum catches
 * a record deleted or moved under another key — opens fail-closed, not as "no policy yet".
 */
const ADOPTED_KEY = 'cluster-policy-adopted'

/** Most evidence policies kept (each one an admin's concurrent revocation; the next set() folds them in). */
export const MAX_EVIDENCE = 64

/**
 * What an offered policy did: adopted; kept as evidence of revocations the current one lacks
 * (an older or concurrent version); nothing new; or refused.
 */
export type OfferResult = 'adopted' | 'evidence' | 'notNewer' | 'invalid'

/**
 * Who may do what in this cluster: the policy this replica adopted (none → development or
 * bootstrap mode: everything allowed) and the checks every read, write and peer goes through.
 * A policy is adopted only if an admin's signature verifies and it supersedes the current one
 * (higher version, or the same version and the greater hash), so every replica that has seen
 * the same policies holds the same one, whatever the order it saw them in.
 */
export class Access {
  private current: SignedPolicy | undefined
  /** Role names per peer id of the current policy. */
  private rolesOf = new Map<string, Set<string>>()
  private readonly admins: ReadonlySet<string>
  private readonly listeners = new Set<(policy: Policy) => void>()
  /** Adoptions run one at a time (a check-then-set over an await). */
  private queue: Promise<unknown> = Promise.resolve()
  /**
   * Set when the store holds a policy that does not verify (damaged, or the admins changed):
   * this replica then fails closed — only admins are members and nobody may read or write —
   * until a valid policy arrives. Opening up because a record went bad would hand out
   * everything the policy protected.
   */
  private lockedDown = false
  /**
   * The highest policy version this replica knows it adopted (ADOPTED_KEY, the stored policy
   * or evidence), kept when locked down: set() numbers the next version above it, so a version
   * an admin signs while locked down is not beaten by the one it lost.
   */
  private adoptedVersion = 0
  /**
   * Verified policies (by hash) with revocations the current one lacks — an older version
   * signed by an admin that had not seen the newer one. Their revocations hold anyway:
   * a revocation, once signed, is never undone by a version signed without it.
   */
  private readonly evidence = new Map<string, SignedPolicy>()
  /** Every revoked peer id: the current policy's and the evidence's (admins excepted). */
  private revoked = new Set<string>()
  /** Signature checks of offered policies: at most 10 per peer per minute. */
  private readonly policyVerifies = new PeerBudget(10)
  /**
   * Signed pushes whose signature failed, per sending peer: at most 10 per minute. An honest
   * replica never sends one (its signatures verify), so past that its signed pushes are
   * dropped unchecked for the rest of the minute.
   */
  private readonly failedPushVerifies = new PeerBudget(10)

  constructor(
    private readonly trust: TrustOptions | undefined,
    readonly self: string,
    private readonly namespace: string,
    private readonly store: Store,
    private readonly logger: Logger,
  ) {
    this.admins = new Set(trust?.admins ?? [])
  }

  /** Whether a policy is adopted (cheap: `policy` copies it). */
  get hasPolicy(): boolean {
    return this.current !== undefined
  }

  /** In a cluster (trust configured) this replica signs the pushes of its own writes. */
  get signsWrites(): boolean {
    return this.trust !== undefined
  }

  /**
   * Once a policy is in force, gossip must be signed by its author: an unsigned push is
   * dropped (anti-entropy still takes changes a writer vouches for).
   */
  get requiresSignedWrites(): boolean {
    return this.trust !== undefined && (this.current !== undefined || this.lockedDown)
  }

  /** Whether admins were configured (policies can be adopted at all). */
  get configured(): boolean {
    return this.trust !== undefined
  }

  /**
   * The adopted policy as it applies: revoked peers (of this version and of every other valid
   * one seen) left out of the roles and listed in `revoked`.
   */
  get policy(): Policy | undefined {
    if (this.current === undefined) return undefined
    const p = structuredClone(this.current.policy)
    for (const role of Object.keys(p.roles)) p.roles[role] = p.roles[role]!.filter((id) => !this.revoked.has(id))
    if (this.revoked.size > 0) p.revoked = [...this.revoked].sort()
    return p
  }

  /** Signed policies carrying revocations the current one lacks (sent with every offer). */
  evidenceWires(): PolicyWire[] {
    return [...this.evidence.values()].map(policyToWire)
  }

  get signed(): SignedPolicy | undefined {
    return this.current
  }

  /** Called with every policy adopted from now on. */
  onChange(listener: (policy: Policy) => void): () => void {
    this.listeners.add(listener)
    return () => void this.listeners.delete(listener)
  }

  /** Signs `data` with this replica's key; undefined without trust (no admins configured). */
  async signOwn(data: Uint8Array): Promise<Uint8Array | undefined> {
    return this.trust === undefined ? undefined : this.trust.sign(data)
  }

  /** True if `peer`'s key signed `data`; false without trust. Never throws. */
  async verifyBy(peer: string, data: Uint8Array, signature: Uint8Array): Promise<boolean> {
    if (this.trust === undefined) return false
    try {
      return await this.trust.verify(peer, data, signature)
    } catch {
      return false
    }
  }

  isAdmin(peer: string): boolean {
    return this.admins.has(peer)
  }

  /** A member: an admin or named in a role. Everyone while no policy is adopted. */
  isMember(peer: string): boolean {
    if (this.current === undefined) return !this.lockedDown || this.admins.has(peer)
    return this.admins.has(peer) || (this.rolesOf.has(peer) && !this.revoked.has(peer))
  }

  /** Every member's peer id (undefined while no policy: nobody is excluded). */
  members(): ReadonlySet<string> | undefined {
    if (this.current === undefined) return this.lockedDown ? new Set(this.admins) : undefined
    return new Set([...this.admins, ...this.rolesOf.keys()])
  }

  /** May `peer` read `collection`? Writers may read (a writer merges what others wrote). */
  mayRead(peer: string, collection: string): boolean {
    return this.allows(peer, collection, 'read') || this.allows(peer, collection, 'write')
  }

  mayWrite(peer: string, collection: string): boolean {
    return this.allows(peer, collection, 'write')
  }

  /** The policy declares the collection a counter's (CollectionRule.counter). */
  isCounter(collection: string): boolean {
    return this.current?.policy.collections[collection]?.counter === true
  }

  /** The backend the policy pins the collection to (CollectionRule.backend), if any. */
  backendOf(collection: string): string | undefined {
    const rules = this.current?.policy.collections
    return rules === undefined ? undefined : (rules[collection] ?? rules['*'])?.backend
  }

  /** Every member may read it (so gossip, which any subscriber receives, may carry it). */
  readableByAll(collection: string): boolean {
    const rule = this.ruleOf(collection)
    if (this.lockedDown && this.current === undefined) return false
    return this.current === undefined || (rule !== undefined && (rule.read.includes('*') || rule.write.includes('*')))
  }

  /** Throws ERR_FORBIDDEN unless this replica may do `what` on `collection`. */
  assert(collection: string, what: 'read' | 'write'): void {
    const ok = what === 'read' ? this.mayRead(this.self, collection) : this.mayWrite(this.self, collection)
    if (ok) return
    if (this.current === undefined) {
      throw new ConvergentError(
        'ERR_FORBIDDEN',
        `This replica is locked down (its stored cluster policy or revocation evidence was damaged, lost, or did not verify): it allows nothing until an admin's policy arrives (${what} '${collection}' refused).`,
      )
    }
    throw new ConvergentError(
      'ERR_FORBIDDEN',
      `The cluster policy (version ${this.current.policy.version}) does not let this replica (${this.self}) ${what} collection '${collection}'.`,
    )
  }

  private ruleOf(collection: string): { read: string[]; write: string[] } | undefined {
    const rules = this.current?.policy.collections
    return rules === undefined ? undefined : (rules[collection] ?? rules['*'])
  }

  private allows(peer: string, collection: string, what: 'read' | 'write'): boolean {
    if (this.current === undefined) return !this.lockedDown
    const rule = this.ruleOf(collection)
    if (rule === undefined) return false
    if (this.revoked.has(peer)) return false
    const roles = this.rolesOf.get(peer)
    return rule[what].some((r) => (r === '*' ? this.isMember(peer) : roles?.has(r) === true))
  }

  /**
   * Reads the stored policy and verifies it again, then the evidence. A policy that is damaged,
   * does not verify, or is missing though one was adopted here (ADOPTED_KEY or the evidence
   * remains), and a damaged evidence record (kept revocations may be lost), leave this replica
   * locked down until an admin's policy arrives; nothing of it is opened up.
   */
  async load(): Promise<void> {
    if (this.trust === undefined) return
    const adopted = await this.readMeta(ADOPTED_KEY, 'record of the adopted policy version')
    const policy = await this.readMeta(POLICY_KEY, 'cluster policy')
    const evidence = await this.readMeta(EVIDENCE_KEY, 'revocation evidence')
    if (adopted instanceof Uint8Array) this.adoptedVersion = versionOf(adopted)
    if (policy === 'damaged') {
      this.lockDown(`the stored cluster policy ('${POLICY_KEY}') is damaged`, 'ERR_STORE_CORRUPT')
    } else if (policy === undefined) {
      if (adopted !== undefined || evidence !== undefined) {
        const which = adopted !== undefined ? `'${ADOPTED_KEY}'` : `the revocation evidence ('${EVIDENCE_KEY}')`
        this.lockDown(`the stored cluster policy ('${POLICY_KEY}') is missing, though ${which} shows one was adopted here`, 'ERR_STORE_CORRUPT')
      }
    } else {
      let wire: PolicyWire | undefined
      try {
        wire = decodePolicyWire(decode(policy))
      } catch (err) {
        this.lockDown(`the stored cluster policy ('${POLICY_KEY}') is unreadable (${(err as Error).message})`, 'ERR_STORE_CORRUPT')
      }
      if (wire !== undefined && (await this.offer(wire, 'store')) === 'invalid') {
        this.lockDown(`the stored cluster policy ('${POLICY_KEY}') does not verify against the admins given at open`, 'ERR_FORBIDDEN')
      }
      // The record of the adopted version, written back when it is missing (a folder of the
      // previous release) or was damaged: the next loss of the policy record must not open up
      // (review2-damaged-disk HOLE 2).
      const version = this.current?.policy.version
      if (version !== undefined && !(adopted instanceof Uint8Array && versionOf(adopted) >= version) && this.store.readOnly !== true) {
        await this.store.write([{ type: 'meta', key: ADOPTED_KEY, bytes: encode({ version }) }])
      }
    }
    if (evidence === 'damaged') {
      // Revocations it kept may be lost: the stored policy (if it verified) is not enough.
      // Its own revocations still hold whatever policy arrives: kept as evidence (locked down,
      // an offered policy is adopted even if it is one of the evidence).
      const stored = this.current
      if (stored?.policy.revoked?.some((id) => !this.admins.has(id)) === true) this.evidence.set(toHex(stored.hash), stored)
      this.lockDown(`the stored revocation evidence ('${EVIDENCE_KEY}') is damaged: revocations it kept may be lost`, 'ERR_STORE_CORRUPT')
      this.recompute()
    } else if (evidence !== undefined) {
      await this.loadEvidence(evidence)
    }
  }

  /**
   * A meta record, or 'damaged' if it failed the store's check: it is then moved aside (unless
   * the store is read-only) and logged, so the replica still opens (locked down, see load()).
   */
  private readMeta(key: string, what: string): Promise<Uint8Array | 'damaged' | undefined> {
    return getMetaPastDamage(this.store, key, {
      what: `The stored ${what}`,
      moveAside: true,
      readsAs: 'damaged' as const,
      then: 'read as damaged',
      logger: this.logger,
    })
  }

  /** Fails closed: only admins are members, nobody may read or write, until an admin's policy arrives. */
  private lockDown(why: string, code: 'ERR_STORE_CORRUPT' | 'ERR_FORBIDDEN'): void {
    if (this.current !== undefined) this.adoptedVersion = Math.max(this.adoptedVersion, this.current.policy.version)
    this.current = undefined
    this.lockedDown = true
    this.logger.error(`${why}; this replica allows nothing until an admin's policy arrives`, { code })
  }

  /**
   * A policy from a peer (or the store): adopted and stored if an admin signed it, it names
   * this namespace and it supersedes the current one.
   */
  offer(wire: PolicyWire, from: string): Promise<OfferResult> {
    const run = this.queue.then(() => this.adopt(wire, from))
    this.queue = run.catch(() => undefined)
    return run
  }

  /**
   * The stored evidence, each verified again (one that does not verify is dropped). Locked
   * down, with no policy in force, each is kept as evidence (its revocations hold whatever
   * policy arrives), not adopted.
   */
  private async loadEvidence(bytes: Uint8Array): Promise<void> {
    let wires: PolicyWire[]
    try {
      const list = decode(bytes) as unknown
      wires = (Array.isArray(list) ? list : []).slice(0, MAX_EVIDENCE).map(decodePolicyWire)
    } catch (err) {
      this.logger.error(`the stored revocation evidence is unreadable and was ignored: ${(err as Error).message}`, { code: 'ERR_STORE_CORRUPT' })
      return
    }
    for (const wire of wires) {
      if (this.current !== undefined) await this.offer(wire, 'store')
      else await this.adopt(wire, 'store', true)
    }
  }

  /**
   * Adopts `wire` if it supersedes the current policy, else keeps it as evidence if it revokes
   * more. `evidenceOnly`: a stored evidence policy read while locked down — kept (verified) for
   * its revocations, never adopted.
   */
  private async adopt(wire: PolicyWire, from: string, evidenceOnly = false): Promise<OfferResult> {
    if (this.trust === undefined) return 'invalid'
    if (!this.admins.has(wire.signedBy)) return 'invalid'
    // The policy (or evidence) held already — what every round offers: nothing to decode.
    // (Locked down, a policy kept only as evidence may still be adopted.)
    if (this.holds(wire.signature, this.current === undefined)) return 'notNewer'
    let signed: SignedPolicy
    try {
      signed = decodeSignedPolicy(wire.bytes, wire.signature, wire.signedBy, this.namespace)
    } catch {
      return 'invalid'
    }
    // Locked down, a version older than one adopted here is a rollback (a peer that missed the
    // newer one, or a revoked peer offering the version that still named it): never adopted,
    // only its revocations kept.
    const older = evidenceOnly || (this.current === undefined && this.lockedDown && signed.policy.version < this.adoptedVersion)
    const newer = !older && supersedes(signed, this.current)
    if (!newer && !this.revokesMore(signed)) return 'notNewer'
    if (from !== 'store' && from !== 'local' && !this.mayVerify(from)) return 'invalid'
    if (!(await this.trust.verify(wire.signedBy, signingInput(wire.bytes), wire.signature))) return 'invalid'
    if (older || !supersedes(signed, this.current)) {
      // Older, but it revokes someone the current one does not: its revocations hold.
      if (!this.revokesMore(signed) || this.evidence.size >= MAX_EVIDENCE) return 'notNewer'
      this.evidence.set(toHex(signed.hash), signed)
      // A version an admin signed, seen here: locked down, none older is adopted.
      this.adoptedVersion = Math.max(this.adoptedVersion, signed.policy.version)
      this.pruneEvidence()
      this.recompute()
      await this.saveEvidence(from)
      return 'evidence'
    }
    if (from !== 'store') {
      await this.store.write([
        { type: 'meta', key: POLICY_KEY, bytes: encode(encodePolicyWire(wire)) },
        { type: 'meta', key: ADOPTED_KEY, bytes: encode({ version: signed.policy.version }) },
      ])
    }
    // From here to install() nothing awaits: the policy and the roles derived from it change together.
    const previous = this.current
    // The version it replaces may revoke someone this one does not name: kept as evidence.
    const nowRevoked = new Set(signed.policy.revoked ?? [])
    const lost = previous?.policy.revoked?.some((id) => !nowRevoked.has(id) && !this.admins.has(id)) === true
    if (previous !== undefined && lost && this.evidence.size < MAX_EVIDENCE) this.evidence.set(toHex(previous.hash), previous)
    this.current = signed
    this.pruneEvidence()
    this.install(signed)
    await this.saveEvidence(from)
    return 'adopted'
  }

  private holds(signature: Uint8Array, currentOnly = false): boolean {
    if (this.current !== undefined && bytesEqual(this.current.signature, signature)) return true
    if (currentOnly) return false
    for (const p of this.evidence.values()) if (bytesEqual(p.signature, signature)) return true
    return false
  }

  /** Whether `p` revokes a peer not revoked yet (admins never count). */
  private revokesMore(p: SignedPolicy): boolean {
    return (p.policy.revoked ?? []).some((id) => !this.revoked.has(id) && !this.admins.has(id))
  }

  /** Drops evidence the current policy covers. */
  private pruneEvidence(): void {
    const covered = new Set(this.current?.policy.revoked ?? [])
    for (const [hash, p] of this.evidence) if ((p.policy.revoked ?? []).every((id) => covered.has(id) || this.admins.has(id))) this.evidence.delete(hash)
  }

  /** Stores the evidence (not when it was just read from the store). */
  private async saveEvidence(from: string): Promise<void> {
    if (from === 'store') return
    await this.store.write([{ type: 'meta', key: EVIDENCE_KEY, bytes: encode(this.evidenceWires().map(encodePolicyWire)) }])
  }

  /** Revoked peers and the roles of everyone else, from the current policy and the evidence. */
  private recompute(): void {
    const revoked = new Set<string>()
    for (const p of [this.current, ...this.evidence.values()]) for (const id of p?.policy.revoked ?? []) if (!this.admins.has(id)) revoked.add(id)
    this.revoked = revoked
    const rolesOf = new Map<string, Set<string>>()
    for (const [role, ids] of Object.entries(this.current?.policy.roles ?? {})) {
      for (const id of ids) {
        if (revoked.has(id)) continue
        let set = rolesOf.get(id)
        if (set === undefined) rolesOf.set(id, (set = new Set()))
        set.add(role)
      }
    }
    this.rolesOf = rolesOf
    if (this.current === undefined) return
    for (const listener of this.listeners) {
      try {
        listener(this.policy!)
      } catch (err) {
        this.logger.error('a policy listener threw', { err })
      }
    }
  }

  /** At most 10 signature checks per peer per minute: a peer cannot make us verify without end. */
  private mayVerify(peer: string, now = Date.now()): boolean {
    return this.policyVerifies.take(peer, now)
  }

  /**
   * Whether a signed push from `peer` may still be checked: fewer than 10 of its checks failed
   * in the last minute. (The receiver checks one push per sender at a time, so this is exact.)
   */
  mayCheckPushFrom(peer: string, now: number): boolean {
    return this.failedPushVerifies.has(peer, now)
  }

  /** Counts a signed push from `peer` whose signature or hashes did not verify. */
  pushCheckFailed(peer: string, now: number): void {
    this.failedPushVerifies.take(peer, now)
  }

  private install(signed: SignedPolicy): void {
    this.lockedDown = false
    this.current = signed
    this.recompute()
  }

  /** A policy this admin is about to sign names only peer ids, and revokes no admin (ERR_INVALID_ARGUMENT otherwise). */
  private checkMembers(doc: PolicyDocument): void {
    const invalid = (message: string): ConvergentError => new ConvergentError('ERR_INVALID_ARGUMENT', `invalid policy: ${message}`)
    const isPeerId = this.trust?.isPeerId?.bind(this.trust)
    const named = (id: string): string => JSON.stringify(id).slice(0, 80)
    if (isPeerId !== undefined) {
      for (const [role, members] of Object.entries(doc.roles)) {
        const bad = members.find((id) => !isPeerId(id))
        if (bad !== undefined) throw invalid(`role '${role}' names ${named(bad)}, which is not a peer id with a public key (12D3KooW…)`)
      }
      // Only revocations new here: those already signed stay in every later version (sticky), whatever they name.
      const bad = doc.revoked?.find((id) => !isPeerId(id) && !this.revoked.has(id))
      if (bad !== undefined) throw invalid(`revoked names ${named(bad)}, which is not a peer id with a public key (12D3KooW…)`)
    }
    const admin = doc.revoked?.find((id) => this.admins.has(id))
    if (admin !== undefined)
      throw invalid(
        `${admin} is an admin, and admins cannot be revoked (they are the trust root given at open: remove it from cluster.admins on every replica)`,
      )
  }

  /** Signs and adopts the next version (admins only: ERR_FORBIDDEN otherwise). */
  set(doc: PolicyDocument): Promise<Policy> {
    const run = this.queue.then(async () => {
      if (this.trust === undefined) {
        throw new ConvergentError(
          'ERR_INVALID_ARGUMENT',
          'This replica has no cluster admins configured (open it with cluster: { key, admins }); there is no policy to set.',
        )
      }
      if (!this.admins.has(this.self)) {
        throw new ConvergentError('ERR_FORBIDDEN', `Only the cluster admins may change the policy; this replica (${this.self}) is not one of them.`)
      }
      const normalized = normalizePolicy(doc)
      this.checkMembers(normalized)
      // Revocations are sticky: every one this replica knows of goes into the next version.
      const revoked = [...new Set([...(normalized.revoked ?? []), ...this.revoked])].filter((id) => !this.admins.has(id)).sort()
      if (revoked.length > 0) normalized.revoked = revoked
      else delete normalized.revoked
      // Above every version adopted here (locked down, the one lost: one signed lower loses to it).
      const version = Math.max(this.current?.policy.version ?? 0, this.adoptedVersion) + 1
      const bytes = encodePolicy(normalized, version, this.namespace)
      const signature = await this.trust.sign(signingInput(bytes))
      const result = await this.adopt({ bytes, signature, signedBy: this.self }, 'local')
      if (result !== 'adopted')
        throw new ConvergentError('ERR_FORBIDDEN', `the policy this replica signed was not adopted (${result}): is its key the one its peer id names?`)
      return this.policy!
    })
    this.queue = run.catch(() => undefined)
    return run
  }
}

/** The version in an ADOPTED_KEY record (0 if unreadable: the record still shows a policy was adopted). */
function versionOf(bytes: Uint8Array): number {
  try {
    const v = (decode(bytes) as { version?: unknown }).version
    return typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : 0
  } catch {
    return 0
  }
}
