/**
 * Shared set-up of the signed-heads tests (signed-heads, review-waiting): a loopback cluster
 * under a policy where ADMIN, ORDERS and SUPPORT (and d-late) may write 'notes', an Automerge
 * collection, and a change's head signed with a member's test key.
 */
import * as A from '@automerge/automerge'
import { LoopbackHub, type Backend, type Network, type NetworkEvents, type PolicyDocument, type Replica, type Store } from '../src/index.js'
import { applyRemoteDelta, type ApplyResult } from '../src/replication/apply.js'
import type { ReplicationContext } from '../src/replication/context.js'
import { encodeHeaded, headed, headsFor, SignedHeads, withHeads } from '../src/replication/heads.js'
import { signHeads } from '../src/trust/signed-heads.js'
import { boundActor } from '../src/trust/actor-binding.js'
import { toHex } from '../src/hash.js'
import { memoryReplica, waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustMember, type Keyring } from './trust-helpers.js'
import { ctxOf, forkChange, savedDoc, type State } from './counter-helpers.js'

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

/** The gossip topic of the 'notes' collection in the default namespace. */
export const NOTES_TOPIC = '/convergent/default/c/notes'

/**
 * `net` with the gossip of `from` held back until release() (the test decides what arrives
 * first), and once cut() no requests either way with `from` (no anti-entropy brings it).
 */
export function holdingGossipOf(net: Network, from: string): { net: Network; held: Uint8Array[]; release: () => void; cut: () => void } {
  const held: Uint8Array[] = []
  let events: NetworkEvents | undefined
  let cut = false
  const wrapped = new Proxy(net, {
    get(target, prop) {
      if (prop === 'start')
        return (e: NetworkEvents) => {
          events = e
          return target.start({
            ...e,
            onMessage: (topic, data, sender) => (sender === from && topic === NOTES_TOPIC ? void held.push(data) : e.onMessage(topic, data, sender)),
            onRequest: (sender, data) => (cut && sender === from ? Promise.reject(new Error('cut')) : e.onRequest(sender, data)),
          })
        }
      if (prop === 'request')
        return (peer: string, ...rest: unknown[]) =>
          cut && peer === from ? Promise.reject(new Error('cut')) : (target.request as (...a: unknown[]) => unknown).call(target, peer, ...rest)
      const v = Reflect.get(target, prop, target) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  })
  return { net: wrapped, held, release: () => held.splice(0).forEach((data) => events!.onMessage(NOTES_TOPIC, data, from)), cut: () => (cut = true) }
}

/**
 * ADMIN (a member) and SUPPORT (in memory) on one hub, SUPPORT's copy of ADMIN's gossip held
 * back (holdingGossipOf), ADMIN's `policy` set and adopted by SUPPORT.
 */
export async function adminAndHeldSupport(keys: Keyring, replicas: Replica[], policy: PolicyDocument) {
  const hub = new LoopbackHub()
  const admin = await trustMember(keys, replicas, hub, ADMIN)
  const holding = holdingGossipOf(hub.createNetwork(SUPPORT), ADMIN)
  const support = await memoryReplica({ network: holding.net, trust: keys.trust(SUPPORT, [ADMIN]), syncIntervalMs: 0 })
  replicas.push(support)
  await admin.policy.set(policy)
  await waitFor(() => support.policy.get() !== undefined, 'SUPPORT adopts')
  return { hub, admin, holding, support }
}

/** ADMIN, ORDERS and SUPPORT on a fresh hub under NOTES_POLICY (SUPPORT's log lines in `said`), 'notes'/e written by ADMIN and held at SUPPORT. */
export async function notesHeldBySupport(keys: Keyring, track: Replica[]): Promise<{ r: Record<string, Replica>; said: string[] }> {
  const said: string[] = []
  const logger = { warn: (m: string) => said.push(m), error: (m: string) => said.push(m) }
  const hub = new LoopbackHub()
  const r: Record<string, Replica> = {}
  for (const id of [ADMIN, ORDERS, SUPPORT]) r[id] = await trustMember(keys, track, hub, id, id === SUPPORT ? { logger } : {})
  await r[ADMIN]!.policy.set(NOTES_POLICY)
  await waitFor(() => [ORDERS, SUPPORT].every((id) => r[id]!.policy.get() !== undefined), 'adopted')
  await notes(r[ADMIN]!).put('e', { text: 'base' })
  await waitFor(async () => (await notes(r[SUPPORT]!).get('e')) !== undefined, 'e at SUPPORT')
  return { r, said }
}

/**
 * ADMIN, ORDERS and SUPPORT; SUPPORT holds n1 up to c0, then ADMIN, cut off, writes c1…c5 and
 * sends SUPPORT c3 and c5 (each headed) ahead of the ones before them: c3 waits there, and c5,
 * a second waiting change of the actor, is not taken ('later': head-judge.ts waitsServably), so
 * the head SUPPORT keeps for ADMIN's actor is c3's (not held). ADMIN's changes of n1, SUPPORT's
 * context, the actor and c2…c5 (review-waiting, review-s30-core).
 */
export async function c3WaitingC5RefusedAtSupport(keys: Keyring, track: Replica[]) {
  const { hub, r } = await headsCluster(keys, track, [ADMIN, ORDERS, SUPPORT])
  await notes(r[ADMIN]!).put('n1', { text: 'zero' })
  await waitFor(async () => (await notes(r[SUPPORT]!).get('n1')) !== undefined, 'n1 at SUPPORT')
  hub.partition([ADMIN], [ORDERS, SUPPORT])
  for (const text of ['one', 'two', 'three', 'four', 'five']) await notes(r[ADMIN]!).put('n1', { text })
  const all = A.getAllChanges(A.load<State>(await savedDoc(r[ADMIN]!, 'notes', 'n1')))
  const [, c2, c3, c4, c5] = all.slice(-5) as [Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array]
  const ctx = ctxOf(r[SUPPORT]!)
  for (const [change, expected] of [
    [c3, 'applied'],
    [c5, 'later'],
  ] as const) {
    const got = await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', encodeHeaded(change, [await headOf(keys, change)]))
    if (got !== expected) throw new Error(`a change that overtook the ones before it was ${got}, not ${expected}`)
  }
  const actor = A.decodeChange(c3).actor
  await waitFor(async () => (await ctx.heads!.stored('notes', 'n1')).get(actor)?.leaf.seq === A.decodeChange(c3).seq, "c3's head stored")
  return { r, ctx, all, actor, c2, c3, c4, c5 }
}

/**
 * The relay of the liveness gap of signed heads: ADMIN, ORDERS and SUPPORT, all holding n1 up to
 * its first change and then cut apart. Changes are made by hand under an actor X of ADMIN and an
 * actor Y of ORDERS: c1 (X), c2 (Y, after c1) and c3 (X, after c2). SUPPORT takes c1 with its head,
 * then c3 with its head: c3 waits there for c2, which SUPPORT never got, and the head SUPPORT
 * keeps for X is c3's (the newest). ORDERS, which lacks c1, is the peer it serves.
 */
export async function c1AppliedC3WaitingAtSupport(keys: Keyring, track: Replica[]) {
  const { hub, r } = await headsCluster(keys, track, [ADMIN, ORDERS, SUPPORT])
  await notes(r[ADMIN]!).put('n1', { text: 'zero' })
  await waitFor(async () => (await notes(r[SUPPORT]!).get('n1')) !== undefined && (await notes(r[ORDERS]!).get('n1')) !== undefined, 'n1 everywhere')
  hub.partition([ADMIN], [ORDERS, SUPPORT])
  hub.partition([ORDERS], [SUPPORT])
  const base = await savedDoc(r[SUPPORT]!, 'notes', 'n1')
  const x = toHex(boundActor(ADMIN, new Uint8Array(16).fill(1)))
  const y = toHex(boundActor(ORDERS, new Uint8Array(16).fill(2)))
  const c1 = forkChange(base, x, (d) => void (d.text = 'one'))
  const c2 = forkChange(A.save(A.applyChanges(A.load<State>(base), [c1])[0]), y, (d) => void (d.tag = 'y'))
  const c3 = forkChange(A.save(A.applyChanges(A.load<State>(base), [c1, c2])[0]), x, (d) => void (d.text = 'three'))
  const ctx = ctxOf(r[SUPPORT]!)
  for (const change of [c1, c3]) {
    const got = await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', encodeHeaded(change, [await headOf(keys, change)]))
    if (got !== 'applied') throw new Error(`ADMIN's change was ${got} at SUPPORT, not applied`)
  }
  await waitFor(async () => (await ctx.heads!.stored('notes', 'n1')).get(x)?.leaf.seq === A.decodeChange(c3).seq, "c3's head stored at SUPPORT")
  return { hub, r, ctx, base, x, y, c1, c2, c3 }
}

/** `read` of 'notes'/n1's document at `ctx`'s replica, while it holds the entity. */
export async function onN1<T>(ctx: ReplicationContext, read: (backend: Backend, doc: unknown) => T): Promise<T> {
  const col = ctx.entities.collections.get('notes')!
  const entity = await ctx.entities.acquire(col, 'n1')
  try {
    return read(col.backend, entity.doc)
  } finally {
    ctx.entities.release(entity)
  }
}

/** The version `ctx`'s replica holds of 'notes'/n1. */
export function versionAt(ctx: ReplicationContext): Promise<Uint8Array> {
  return onN1(ctx, (backend, doc) => backend.version(doc))
}

/** Rounds both ways until `a` shows `text` for n1 (at most `max`); how many it took, or undefined. */
export async function roundsUntil(a: Replica, b: Replica, text: string, max = 6): Promise<number | undefined> {
  for (let i = 1; i <= max; i++) {
    await a.sync()
    await b.sync()
    if ((await notes(a).get('n1'))?.text === text) return i
  }
  return undefined
}

/** ADMIN, ORDERS and SUPPORT holding n1 'zero', then cut apart (no gossip, no rounds). */
export async function threeApart(keys: Keyring, track: Replica[]): Promise<{ hub: LoopbackHub; r: Record<string, Replica> }> {
  const { hub, r } = await headsCluster(keys, track, [ADMIN, ORDERS, SUPPORT])
  await notes(r[ADMIN]!).put('n1', { text: 'zero' })
  await waitFor(async () => (await notes(r[SUPPORT]!).get('n1')) !== undefined, 'n1 at SUPPORT')
  hub.partition([ADMIN], [ORDERS, SUPPORT])
  hub.partition([ORDERS], [SUPPORT])
  await waitFor(() => r[SUPPORT]!.peers().length === 0, 'SUPPORT cut off')
  return { hub, r }
}

/** What `from` serves `to` of 'notes'/n1 in an exchange (deltaSince, headed as the sync server heads it). */
export async function served(from: ReplicationContext, to: string, theirVersion: Uint8Array): Promise<Uint8Array> {
  const col = from.entities.collections.get('notes')!
  from.heads!.markReader(to)
  const entity = await from.entities.acquire(col, 'n1')
  try {
    const delta = col.backend.deltaSince(entity.doc, theirVersion)!
    return await headed(from, col, 'n1', delta, to, { doc: entity.doc, theirVersion })
  } finally {
    from.entities.release(entity)
  }
}

/** `bytes` sent whole by `from` to `to` with the heads a range answer gives them (every actor's). */
export async function sentWhole(from: ReplicationContext, to: string, bytes: Uint8Array): Promise<Uint8Array> {
  const col = from.entities.collections.get('notes')!
  from.heads!.markReader(to)
  return withHeads(bytes, await headsFor(from, col, 'n1', bytes, to, 'whole'))
}

/** `delta` from `peer` to `replica`'s 'notes'/n1. */
export function sendTo(replica: Replica, peer: string, delta: Uint8Array): Promise<ApplyResult> {
  return applyRemoteDelta(ctxOf(replica), peer, 'notes', 'automerge', 'n1', delta)
}

/** What `ctx`'s SignedHeads was made with (its store among them): a restart's SignedHeads is made so. */
export function headsOptionsOf(ctx: ReplicationContext): ConstructorParameters<typeof SignedHeads>[0] {
  return (ctx.heads as unknown as { opts: ConstructorParameters<typeof SignedHeads>[0] }).opts
}

/** The store under a replica (as its signed heads read it). */
export function storeOf(replica: Replica): Store {
  return headsOptionsOf(ctxOf(replica)).store
}

/** Whether `replica`'s document of 'notes'/n1 holds the change of hash `hash` (applied, not waiting). */
export async function holds(replica: Replica, hash: string): Promise<boolean> {
  const ctx = ctxOf(replica)
  const col = ctx.entities.collections.get('notes')!
  const entity = await ctx.entities.acquire(col, 'n1')
  try {
    return col.backend.history!.holds(entity.doc, hash)
  } finally {
    ctx.entities.release(entity)
  }
}
