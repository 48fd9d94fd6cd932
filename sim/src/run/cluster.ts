import type { PolicyDocument, ReplicaStats } from '@convergent/core'
import { checkProof } from '@convergent/core/internal'
import type { CheckResult } from '../checks/checkers.js'
import { Keyring } from '@convergent/core/testing/keyring' // test keys only: no test framework
import type { HostNode, SimContext } from './context.js'

/** The namespace every simulated replica runs in (Replica.open's default). */
const NAMESPACE = 'default'
/** Stored proofs re-verified per node at the end (the first ones of its feeds, in feed order). */
const PROOFS_CHECKED_PER_NODE = 200

/** The policy node 0 sets at its first start: every node a member, every collection read and written by every member. */
export function clusterPolicy(ids: readonly string[]): PolicyDocument {
  return { roles: { all: [...ids] }, collections: { '*': { read: ['*'], write: ['*'] } } }
}

/**
 * A run with `replica.cluster` on: the keys every incarnation signs and verifies with, and
 * what the run saw of the policy and of signed pushes (summed over every incarnation).
 */
export class ClusterRun {
  readonly keyring: Keyring
  /** When node 0's policy.set() resolved, and the version it adopted. */
  policySet: { at: number; version: number; members: number } | undefined
  /** Per node index: the first sampling step (or the end) at which its replica held the policy. */
  readonly adoptedAt: (number | undefined)[] = []
  /** Per node index: deltas of signed pushes its replicas applied, over every incarnation. */
  readonly signedApplied: number[] = []
  signedDuplicate = 0
  /** Every author whose signed pushes some replica applied. */
  readonly authors = new Set<string>()

  constructor(seed: number) {
    this.keyring = new Keyring(seed)
  }

  /** Adds one incarnation's signed-push counters (ReplicaStats.authors), before it goes away. */
  addStats(node: number, s: ReplicaStats): void {
    for (const [author, a] of Object.entries(s.authors)) {
      this.signedApplied[node] = (this.signedApplied[node] ?? 0) + a.deltasApplied
      this.signedDuplicate += a.deltasDuplicate
      if (a.deltasApplied > 0) this.authors.add(author)
    }
  }

  /** Records which up nodes hold the policy now (called at every sampling step). */
  sample(ctx: SimContext, now: number): void {
    for (const node of ctx.nodes) {
      if (!node.isUp || this.adoptedAt[node.index] !== undefined) continue
      if (node.replica?.policy.get() === undefined) continue
      this.adoptedAt[node.index] = now
      ctx.trace.log(`${node.id} holds the cluster policy`)
    }
  }
}

/** What the report says about a cluster run (null without one). */
export interface ClusterReport {
  admin: string
  /** The policy node 0 set (null if it never did). */
  policy: { version: number; setAtMs: number; members: number } | null
  /** Per node: when it was first seen holding the policy (to the sampling step), null if never. */
  adoptedAtMs: Record<string, number | null>
  signatures: { made: number; verified: number; failed: number }
  /** Deltas of signed pushes applied and duplicates, over every replica and incarnation. */
  signedDeltas: { applied: number; duplicate: number; appliedByNode: Record<string, number> }
  /** Distinct authors whose signed pushes were applied somewhere. */
  authors: number
  /** Feed entries of the live replicas at the end: signed (with a stored proof), brought by anti-entropy, local. */
  feed: { signed: number; antiEntropy: number; local: number }
  /** Stored proofs re-verified offline (checkProof), and those that failed. */
  proofs: { checked: number; failed: number }
  dropped: { badSignature: number; forbidden: number }
}

/**
 * cluster-signed-writes: node 0 set the policy and every live replica holds it (naming every
 * node); every live replica applied signed pushes and keeps proofs of them in its change feed
 * that verify offline; no push was dropped as badSignature or forbidden and no signature
 * check failed. Reads the live replicas' feeds: call it before they are disposed.
 */
export async function clusterCheck(ctx: SimContext, cluster: ClusterRun, live: HostNode[]): Promise<{ check: CheckResult; report: ClusterReport }> {
  const problems: string[] = []
  const admin = ctx.nodes[0]!.peerId ?? 'n0'
  const ids = ctx.nodes.map((n) => n.peerId).filter((id): id is string => id !== undefined)
  const set = cluster.policySet
  if (set === undefined) problems.push(`${ctx.nodes[0]!.id} never set the cluster policy`)
  for (const node of live) {
    const p = node.replica?.policy.get()
    if (cluster.adoptedAt[node.index] === undefined && p !== undefined) cluster.adoptedAt[node.index] = ctx.scheduler.now
    if (p === undefined) problems.push(`${node.id} holds no cluster policy`)
    else if (p.signedBy !== admin || (set !== undefined && p.version !== set.version)) {
      problems.push(`${node.id} holds policy version ${p.version} signed by ${p.signedBy}, not ${admin}'s version ${set?.version ?? '?'}`)
    } else {
      const named = new Set(p.roles.all ?? [])
      const left = ids.filter((id) => !named.has(id))
      if (left.length > 0) problems.push(`${node.id}'s policy leaves out ${left.join(', ')}`)
    }
  }

  // The change feeds: signed entries name a stored proof, and every proof checked must verify offline.
  const verify = async (peer: string, data: Uint8Array, signature: Uint8Array): Promise<boolean> => cluster.keyring.check(peer, data, signature)
  const feed = { signed: 0, antiEntropy: 0, local: 0 }
  const proofs = { checked: 0, failed: 0 }
  for (const node of live) {
    const replica = node.replica
    if (replica === undefined) continue
    let signedHere = 0
    for (const plan of ctx.collections) {
      const col = node.collection(plan.name)
      if (col === undefined) continue
      for await (const entry of col.changes()) {
        if (entry.origin === 'local') feed.local++
        else if (entry.proof === undefined) feed.antiEntropy++
        else {
          feed.signed++
          signedHere++
          if (signedHere > PROOFS_CHECKED_PER_NODE) continue
          proofs.checked++
          const record = await replica.proofOf(plan.name, entry.proof, entry.id)
          const result = await checkProof(record, entry.proof, { namespace: NAMESPACE, collection: plan.name, id: entry.id, author: entry.author }, verify)
          if (!result.ok) {
            proofs.failed++
            if (proofs.failed <= 5)
              problems.push(`${node.id}: the proof of ${plan.name}/${entry.id} (seq ${entry.seq}, by ${entry.author}) fails: ${result.why}`)
          }
        }
      }
    }
    if (signedHere === 0) problems.push(`${node.id}'s change feeds hold no signed change (no entry names a proof)`)
    if ((cluster.signedApplied[node.index] ?? 0) === 0) problems.push(`${node.id} never applied a signed push (stats().authors is empty)`)
  }
  const dropped = { badSignature: ctx.totals.dropped.badSignature ?? 0, forbidden: ctx.totals.dropped.forbidden ?? 0 }
  if (dropped.badSignature > 0) problems.push(`replicas dropped ${dropped.badSignature} push(es) or delta(s) as badSignature`)
  if (dropped.forbidden > 0) problems.push(`replicas dropped ${dropped.forbidden} message(s) or delta(s) as forbidden`)
  const k = cluster.keyring
  if (k.failedVerifies > 0) problems.push(`${k.failedVerifies} of ${k.verifies} signature checks failed`)

  const signedApplied = cluster.signedApplied.reduce((a, b) => a + (b ?? 0), 0)
  const report: ClusterReport = {
    admin,
    policy: set === undefined ? null : { version: set.version, setAtMs: set.at, members: set.members },
    adoptedAtMs: Object.fromEntries(ctx.nodes.map((n) => [n.id, cluster.adoptedAt[n.index] ?? null])),
    signatures: { made: k.signs, verified: k.verifies, failed: k.failedVerifies },
    signedDeltas: {
      applied: signedApplied,
      duplicate: cluster.signedDuplicate,
      appliedByNode: Object.fromEntries(ctx.nodes.map((n) => [n.id, cluster.signedApplied[n.index] ?? 0])),
    },
    authors: cluster.authors.size,
    feed,
    proofs,
    dropped,
  }
  const check: CheckResult =
    problems.length === 0
      ? {
          name: 'cluster-signed-writes',
          ok: true,
          summary: `every live replica holds ${admin}'s policy v${set!.version} (${set!.members} members) and applied signed pushes (${signedApplied} signed deltas from ${cluster.authors.size} authors); ${feed.signed} signed feed entries, ${proofs.checked} proofs re-verified; nothing dropped as badSignature or forbidden`,
        }
      : { name: 'cluster-signed-writes', ok: false, summary: `${problems.length} problem(s) with the trust boundary`, details: problems.slice(0, 20) }
  return { check, report }
}
