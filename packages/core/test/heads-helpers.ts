/**
 * Shared set-up of the signed-heads tests (signed-heads, review-waiting): a loopback cluster
 * under a policy where ADMIN, ORDERS and SUPPORT (and d-late) may write 'notes', an Automerge
 * collection, and a change's head signed with a member's test key.
 */
import * as A from '@automerge/automerge'
import { LoopbackHub, type PolicyDocument, type Replica } from '../src/index.js'
import { applyRemoteDelta, type ApplyResult } from '../src/replication/apply.js'
import type { ReplicationContext } from '../src/replication/context.js'
import { signHeads } from '../src/trust/signed-heads.js'
import { waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustMember, type Keyring } from './trust-helpers.js'
import { savedDoc, type State } from './counter-helpers.js'

export const LATE = 'd-late'
export const NOTES_POLICY: PolicyDocument = {
  roles: { admin: [ADMIN], orders: [ORDERS], support: [SUPPORT, LATE] },
  collections: { notes: { read: ['*'], write: ['admin', 'orders', 'support'] } },
}

/** The members `ids` on a fresh hub, NOTES_POLICY set by ADMIN and adopted everywhere; `track` closes them after the test. */
export async function headsCluster(keys: Keyring, track: Replica[], ids: string[]): Promise<{ hub: LoopbackHub; r: Record<string, Replica> }> {
  const hub = new LoopbackHub()
  const r: Record<string, Replica> = {}
  for (const id of ids) r[id] = await trustMember(keys, track, hub, id)
  await r[ADMIN]!.policy.set(NOTES_POLICY)
  await waitFor(() => ids.every((id) => r[id]!.policy.get() !== undefined), 'adopted')
  return { hub, r }
}

export const notes = (r: Replica) => r.collection<State>('notes', { backend: 'automerge' })

/** The head of an Automerge change of 'notes'/`id` (its own actor and seq), signed by `signer`'s key. */
export async function headOf(keys: Keyring, change: Uint8Array, signer = ADMIN, id = 'n1'): Promise<Uint8Array> {
  const m = A.decodeChange(change)
  const { proofs } = await signHeads(
    { namespace: 'default', collection: 'notes', author: signer, time: 1 },
    [{ id, actor: m.actor, seq: m.seq, hash: m.hash }],
    (data) => keys.trust(signer, [ADMIN]).sign(data),
  )
  return proofs[0]!
}

/**
 * ADMIN writes n1 'one', which SUPPORT takes; then, cut off from the others, 'two' and 'three'.
 * The entity's changes as ADMIN holds them (oldest first: …, c0, c1, c2), and c0's document.
 */
export async function adminAheadByTwo(
  hub: LoopbackHub,
  r: Record<string, Replica>,
): Promise<{ all: Uint8Array[]; c1: Uint8Array; c2: Uint8Array; base: Uint8Array }> {
  await notes(r[ADMIN]!).put('n1', { text: 'one' })
  await waitFor(async () => (await notes(r[SUPPORT]!).get('n1')) !== undefined, 'n1 at SUPPORT')
  hub.partition(
    [ADMIN],
    Object.keys(r).filter((id) => id !== ADMIN),
  )
  const base = await savedDoc(r[SUPPORT]!, 'notes', 'n1')
  await notes(r[ADMIN]!).put('n1', { text: 'two' })
  await notes(r[ADMIN]!).put('n1', { text: 'three' })
  const all = A.getAllChanges(A.load<State>(await savedDoc(r[ADMIN]!, 'notes', 'n1')))
  return { all, c1: all.at(-2)!, c2: all.at(-1)!, base }
}

/**
 * ADMIN and SUPPORT (members of `policy`) on a fresh hub, cut apart once SUPPORT adopted it;
 * then ADMIN writes 'notes'/n1, which SUPPORT does not hold. ADMIN's change.
 */
export async function notesApart(
  keys: Keyring,
  track: Replica[],
  policy: PolicyDocument = NOTES_POLICY,
): Promise<{ r: Record<string, Replica>; c0: Uint8Array }> {
  const hub = new LoopbackHub()
  const r: Record<string, Replica> = {}
  for (const id of [ADMIN, SUPPORT]) r[id] = await trustMember(keys, track, hub, id)
  await r[ADMIN]!.policy.set(policy)
  await waitFor(() => r[SUPPORT]!.policy.get() !== undefined, 'adopted')
  hub.partition([ADMIN], [SUPPORT])
  await notes(r[ADMIN]!).put('n1', { text: 'one' })
  const [c0] = A.getAllChanges(A.load<State>(await savedDoc(r[ADMIN]!, 'notes', 'n1')))
  return { r, c0: c0! }
}

/** ADMIN's change relayed by ORDERS in a push that carried no head for it: refused as forbidden once judged (a headed sender sends every head its changes need). */
export function withoutItsHead(ctx: ReplicationContext, change: Uint8Array, id = 'n1'): Promise<ApplyResult> {
  return applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', id, change, undefined, undefined, new Map())
}
