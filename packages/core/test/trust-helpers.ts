import { Keyring } from '../src/testing/index.js'
export { Keyring }
import { waitFor } from '../src/testing/index.js'
import type { Counter, PolicyDocument } from '../src/index.js'
import { LoopbackHub, type Backend, type ChangeEntry, type Network, type Replica, type ReplicaOptions } from '../src/index.js'
import type { PushMessage } from '../src/internal.js'
import { yjsBackend } from '@convergent/yjs'
import type { Keyring as KeyringType } from '../src/testing/index.js'
import { memoryReplica } from './helpers.js'

export const ADMIN = 'a-admin'
export const ORDERS = 'b-orders'
export const SUPPORT = 'c-support'

/** The network a replica was opened with (a test's raw requests go through it). */
export function netOf(r: Replica): Network {
  return (r as unknown as { options: { network: Network } }).options.network
}

/**
 * The admin sets `policy` (ORDERS may write 'stock'), ORDERS adopts it, and the admin's counter
 * 'stock' gets 100 on 's1', which ORDERS sees: the start of the rights-draining tests.
 */
export async function adminStockOf100(r: Record<string, Replica>, policy: PolicyDocument): Promise<Counter> {
  await r[ADMIN]!.policy.set(policy)
  await waitFor(() => r[ORDERS]!.policy.get() !== undefined, 'adopted')
  const stock = r[ADMIN]!.counter('stock')
  await stock.increment('s1', 100)
  await waitFor(async () => (await r[ORDERS]!.counter('stock').value('s1')) === 100, 'value arrives')
  return stock
}

/**
 * Opens one in-memory replica per id on a fresh loopback hub, each with its test key and ADMIN
 * as the admin; `track` collects them for the test's afterEach to close. `wrap` may wrap a
 * replica's network (e.g. to record what it receives), `options` add per-replica options.
 */
export async function trustCluster(
  keys: KeyringType,
  ids: string[],
  track: Replica[],
  { wrap, options }: { wrap?: (id: string, net: Network) => Network; options?: (id: string) => Partial<ReplicaOptions> } = {},
): Promise<{ hub: LoopbackHub; r: Record<string, Replica> }> {
  const hub = new LoopbackHub()
  const r: Record<string, Replica> = {}
  for (const id of ids) {
    const network = wrap === undefined ? hub.createNetwork(id) : wrap(id, hub.createNetwork(id))
    r[id] = await memoryReplica({ network, trust: keys.trust(id, [ADMIN]), ...options?.(id) })
    track.push(r[id])
  }
  return { hub, r }
}

/** Member `id` of the cluster (ADMIN the admin) on `hub`, in memory, without sync rounds of its own; `track` closes it after the test. */
export async function trustMember(keys: KeyringType, track: Replica[], hub: LoopbackHub, id: string, options: Partial<ReplicaOptions> = {}): Promise<Replica> {
  const r = await memoryReplica({ network: hub.createNetwork(id), trust: keys.trust(id, [ADMIN]), syncIntervalMs: 0, ...options })
  track.push(r)
  return r
}

/** A Yjs backend that counts the deltas it is asked to apply. */
export function countingYjs(): { backend: Backend; applied: () => number } {
  const inner = yjsBackend()
  let n = 0
  const backend = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'applyDelta')
        return (...args: unknown[]) => {
          n++
          return (target.applyDelta as (...a: unknown[]) => unknown).apply(target, args)
        }
      const v = Reflect.get(target, prop, receiver) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  }) as Backend
  return { backend, applied: () => n }
}

/** The gossip topic of the collection 'orders' in the default namespace. */
export const ORDERS_TOPIC = '/convergent/default/c/orders'

/** A small Yjs delta of an entity (`note` makes each one different). */
export function deltaOf(note: string): Uint8Array {
  const backend = yjsBackend()
  return (backend.put(backend.create(new Uint8Array(16).fill(7)), { total: 1, note }) as { delta: Uint8Array }).delta
}

/** A push of Yjs deltas by `author` ('orders' unless said otherwise), to sign or send plain. */
export function pushOf(author: string, entries: [string, Uint8Array][], sequence = 1, collection = 'orders'): PushMessage {
  return { collection, backend: 'yjs', origin: author, sequence, entries, time: Date.now() }
}

/** The change feed of a collection, whole. */
export async function feedOf(replica: Replica, collection = 'orders'): Promise<ChangeEntry[]> {
  const out: ChangeEntry[] = []
  for await (const e of replica.collection(collection).changes()) out.push(e)
  return out
}

/** A trust test file's keyring and the replicas it opens (closed after each test). */
export function trustSuite(): { keys: KeyringType; replicas: Replica[] } {
  const suite = { keys: new Keyring(), replicas: [] as Replica[] }
  afterEach(async () => {
    await Promise.all(suite.replicas.splice(0).map((r) => r.close().catch(() => undefined)))
  })
  return suite
}
