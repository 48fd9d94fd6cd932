/**
 * Shared setup of the counter tests in a cluster (counter-signed, counter-forger-model and the
 * review*-counter-rows tests): ADMIN, ORDERS (the forger: asForger, it writes the counter's
 * document with its own code) and SUPPORT on one loopback hub under a policy that declares
 * 'stock' a counter every one of them may write.
 */
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { automergeBackend } from '@convergent/automerge'
import { classicLevelStore } from '@convergent/level'
import { yjsBackend } from '@convergent/yjs'
import { Replica, type LoopbackHub, type PolicyDocument } from '../src/index.js'
import { silentLogger } from '../src/logger.js'
import type { SignedRow } from '../src/counter-rows.js'
import type { ReplicationContext } from '../src/replication/context.js'
import { applyRemoteDelta, type ApplyResult } from '../src/replication/apply.js'
import type { Collection } from '../src/index.js'
import { asForger, putRow, rowKeyIn, signedRow, waitFor } from '../src/testing/index.js'
import { ADMIN, ORDERS, SUPPORT, trustCluster, trustSuite, type Keyring } from './trust-helpers.js'
import { memoryReplica } from './helpers.js'

export type State = Record<string, unknown>
export const ALL = [ADMIN, ORDERS, SUPPORT]
export const STOCK_POLICY: PolicyDocument = {
  roles: { admin: [ADMIN], orders: [ORDERS], support: [SUPPORT] },
  collections: { stock: { read: ['*'], write: ['admin', 'orders', 'support'], counter: true } },
}

type Cluster = Awaited<ReturnType<typeof trustCluster>>

/** A test file's keyring and replicas (closed after each test), and its cluster set-ups. */
export function counterSuite(defaultPolicy: PolicyDocument = STOCK_POLICY) {
  const { keys, replicas } = trustSuite()

  /** The three replicas under `policy`, adopted everywhere. */
  async function cluster(policy: PolicyDocument = defaultPolicy): Promise<Cluster> {
    const c = await trustCluster(keys, ALL, replicas)
    asForger(c.r[ORDERS]!)
    await c.r[ADMIN]!.policy.set(policy)
    await waitFor(() => c.r[ORDERS]!.policy.get() !== undefined && c.r[SUPPORT]!.policy.get() !== undefined, 'adopted')
    return c
  }

  /** ADMIN's counter 's1' holds 100 and every replica sees it (opened as a counter on those `open` names; the others only hold it). */
  async function setUp(open: string[] = ALL, policy: PolicyDocument = defaultPolicy): Promise<Cluster> {
    const c = await cluster(policy)
    await c.r[ADMIN]!.counter('stock').increment('s1', 100)
    for (const id of [ORDERS, SUPPORT]) {
      if (open.includes(id)) await waitFor(async () => (await c.r[id]!.counter('stock').value('s1')) === 100, `${id} sees 100`)
      else await waitFor(async () => (await c.r[id]!.collection<State>('stock').get('s1')) !== undefined, `${id} holds s1`)
    }
    return c
  }

  /** A row of `holder` signed with `signer`'s key (a member signing its own row, or a forger). */
  const row = (signer: string, holder: string, id: string, fields: Partial<SignedRow> & { version: number }, collection = 'stock'): string =>
    signedRow(keys, signer, holder, id, fields, collection)

  /**
   * ORDERS's two rows of equal numbers (v1, v2, inc 1 each), seen everywhere: the saved document,
   * their keys, and two concurrent changes of ORDERS's own code each deleting one of them (the
   * pair of review4's and review5's HOLE 1).
   */
  async function twoEqualRows(r: Record<string, Replica>): Promise<{ base: Uint8Array; k1: string; k2: string; drop1: Uint8Array; drop2: Uint8Array }> {
    await r[ORDERS]!.collection<State>('stock').update('s1', (s) => {
      putRow(s, ORDERS, 1, row(ORDERS, ORDERS, 's1', { version: 1, inc: 1 }))
      putRow(s, ORDERS, 2, row(ORDERS, ORDERS, 's1', { version: 2, inc: 1 }))
    })
    for (const n of [ADMIN, SUPPORT]) await waitFor(async () => (await r[n]!.counter('stock').value('s1')) === 101, `${n} sees 101`)
    const base = await savedDoc(r[ORDERS]!, 'stock', 's1')
    const state = A.load<State>(base)
    const [k1, k2] = [rowKeyIn(state, ORDERS, 1), rowKeyIn(state, ORDERS, 2)]
    const drop1 = forkChange(base, '01'.repeat(16), (d) => void delete d[k1])
    const drop2 = forkChange(base, '02'.repeat(16), (d) => void delete d[k2])
    return { base, k1, k2, drop1, drop2 }
  }

  return { keys, replicas, cluster, setUp, row, twoEqualRows }
}

/** Rounds in which every replica runs anti-entropy with the others (failures of a cut link ignored). */
export async function syncAll(r: Record<string, Replica>, rounds = 2): Promise<void> {
  for (let i = 0; i < rounds; i++) for (const name of Object.keys(r)) await r[name]!.sync().catch(() => undefined)
}

/** The value of a counter id on each named replica. */
export function values(r: Record<string, Replica>, id = 's1', names = ALL): Promise<number[]> {
  return Promise.all(names.map((n) => r[n]!.counter('stock').value(id)))
}

/** The error code a promise rejects with (undefined if it resolves). */
export async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p
    return undefined
  } catch (err) {
    return (err as { code?: string }).code ?? `${(err as Error).name}: ${(err as Error).message}`
  }
}

/** Deltas and messages `replica` dropped as forbidden from `from`. */
export function forbidden(replica: Replica, from: string): number {
  return replica.stats().peers[from]?.dropped.forbidden ?? 0
}

/** Every delta or message `replica` dropped as forbidden, from any peer. */
export function forbiddenAll(replica: Replica): number {
  return Object.values(replica.stats().peers).reduce((n, p) => n + p.dropped.forbidden, 0)
}

/**
 * After honest work on 'stock'/s1: once the members converge again, none refused anything as
 * forbidden, and each shows `value`, its holders' rights summing to it, none below 0.
 */
export async function expectHonestEnd(r: Record<string, Replica>, value: number): Promise<void> {
  await syncAll(r, 3)
  await waitFor(async () => new Set(await values(r)).size === 1, 'converged again', 20_000)
  const seen = []
  for (const n of ALL) {
    const { value, rights } = await r[n]!.counter('stock').inspect('s1')
    seen.push({ value, sum: Object.values(rights).reduce((a, b) => a + b, 0), negative: Object.values(rights).some((x) => x < 0) })
  }
  expect(
    ALL.map((n) => forbiddenAll(r[n]!)),
    'refused',
  ).to.deep.equal([0, 0, 0])
  expect(seen).to.deep.equal(ALL.map(() => ({ value, sum: value, negative: false })))
}

/** Until `name` has refused something from `from` (the forger) as forbidden. */
export async function refusedBy(r: Record<string, Replica>, name: string, from = ORDERS): Promise<void> {
  await waitFor(async () => {
    await r[name]!.sync().catch(() => undefined)
    return forbidden(r[name]!, from) > 0
  }, `${name} refuses the forgery`)
}

/** A replica's replication context (a raw applyRemoteDelta in a test goes through it). */
export function ctxOf(replica: Replica): ReplicationContext {
  return (replica as unknown as { replication: ReplicationContext }).replication
}

/** The whole Automerge document of an entity as `replica` holds it now (A.save). */
export async function savedDoc(replica: Replica, collection: string, id: string): Promise<Uint8Array> {
  const ctx = ctxOf(replica)
  const entity = await ctx.entities.acquire(ctx.entities.collections.get(collection)!, id)
  try {
    return A.save(entity.doc as A.Doc<State>)
  } finally {
    ctx.entities.release(entity)
  }
}

/** A change made on `doc` (saved bytes) by a fresh actor: what a forger sends as it likes. */
export function forkChange(doc: Uint8Array, actor: string, edit: (d: State) => void): Uint8Array {
  const fork = A.change(A.load<State>(doc, { actor }), { time: 0 }, edit)
  return A.getLastLocalChange(fork)!
}

/** An Automerge op as a hand-made change holds it. */
export type Op = A.DecodedChange['ops'][number]

/** A change on `doc` (saved bytes; its heads as dependencies) by `actor` holding exactly `ops`: what only hostile code makes. */
export function crafted(doc: Uint8Array, actor: string, ops: Op[]): Uint8Array {
  const { hash: _hash, ...change } = A.decodeChange(forkChange(doc, actor, (d) => void (d['zz'] = 1)))
  return A.encodeChange({ ...change, ops })
}

/** The Automerge op id (counter@actor) of the one value at root key `key` of a saved document. */
export function opIdAt(saved: Uint8Array, key: string): string {
  const all = A.getBackend(A.load<State>(saved)).getAll('_root', key)
  if (all.length !== 1) throw new Error(`expected one op at ${key}, got ${all.length}`)
  return String(all[0]![all[0]!.length - 1])
}

/** Drops `replica`'s in-memory copy of an entity: the next read loads it from the store. */
export async function reloadEntity(replica: Replica, collection: string, id: string): Promise<void> {
  const ctx = ctxOf(replica)
  const col = ctx.entities.collections.get(collection)!
  const entity = await ctx.entities.acquire(col, id)
  ctx.entities.release(entity)
  ctx.entities.discard(col, entity)
}

/** Member `id` of the cluster (admin ADMIN) on `hub`, in the classic-level folder `dir` (for restarts and disk copies). */
export function diskMember(keys: Keyring, dir: string, id: string, hub: LoopbackHub): Promise<Replica> {
  return Replica.open({
    store: classicLevelStore(dir),
    backends: [yjsBackend(), automergeBackend()],
    network: hub.createNetwork(id),
    trust: keys.trust(id, [ADMIN]),
    syncIntervalMs: 0,
    logger: silentLogger,
  })
}

/** After a split: ADMIN sells 1, the network heals, then ADMIN sells 1 more and SUPPORT stocks 10 (honest writes on both sides). */
export async function healThenSell(r: Record<string, Replica>, hub: LoopbackHub): Promise<void> {
  await r[ADMIN]!.counter('stock').decrement('s1', 1)
  hub.heal()
  await syncAll(r, 3)
  await r[ADMIN]!.counter('stock').decrement('s1', 1)
  await r[SUPPORT]!.counter('stock').increment('s1', 10)
  await syncAll(r, 3)
}

/** A development-mode replica `name` on `hub` (closed after the test with `opened`), and its Automerge collection 'orders'. */
export async function ordersReplica(opened: { replicas: Replica[] }, hub: LoopbackHub, name: string): Promise<{ replica: Replica; orders: Collection<State> }> {
  const replica = await memoryReplica({ network: hub.createNetwork(name) })
  opened.replicas.push(replica)
  return { replica, orders: replica.collection<State>('orders', { backend: 'automerge' }) }
}

/** Applies a delta of 'orders'/`id` at `replica` as if `from` had sent it (the receive path, without the network). */
export function ordersFrom(replica: Replica, id: string): (from: string, delta: Uint8Array) => Promise<ApplyResult> {
  return (from, delta) => applyRemoteDelta(ctxOf(replica), from, 'orders', 'automerge', id, delta)
}
