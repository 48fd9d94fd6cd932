import * as A from '@automerge/automerge'
import {
  LoopbackHub,
  Replica,
  silentLogger,
  type Backend,
  type Clock,
  type DeltaLimits,
  type JsonObject,
  type Network,
  type NetworkEvents,
  type ReplicaOptions,
  type Store,
  type TimerHandle,
} from '../src/index.js'
import { waitFor } from '../src/testing/index.js'
import { decodeMessage } from '../src/internal.js'
import { expect } from 'chai'
import { ConvergentError } from '../src/index.js'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { memoryLevelStore } from '@convergent/level'

export const BACKENDS = ['yjs', 'automerge'] as const
export type BackendName = (typeof BACKENDS)[number]

/** A replica over memory-level with both backends, no periodic sync, silent logs. */
export function memoryReplica(options: Partial<ReplicaOptions> & { network?: Network } = {}): Promise<Replica> {
  return Replica.open({
    store: memoryLevelStore(),
    backends: [yjsBackend(), automergeBackend()],
    syncIntervalMs: 0,
    logger: silentLogger,
    ...options,
  })
}

/** An Automerge change (its own actor) that makes a live entity holding { v } (for a test's hand-made deltas). */
export function automergeDeltaOf(v: number): Uint8Array {
  const doc = A.change(A.init<Record<string, unknown>>({ actor: 'dd'.repeat(16) }), { time: 0 }, (d) => {
    d['\u0000deleted'] = false
    d['v'] = v
  })
  return A.getLastLocalChange(doc)!
}

/** A Yjs delta that creates an entity holding `value` (for a test's hand-made pushes). */
export function yjsDeltaOf(value: JsonObject): Uint8Array {
  const backend = yjsBackend()
  return backend.put(backend.create(new Uint8Array(16).fill(7)), value).delta!
}

/**
 * Starts a bare network endpoint that ignores whatever it is sent (a test's hand-made peer),
 * subscribes it to `topics`, and waits until `seenBy` sees it connected.
 */
export async function startRawPeer(net: Network, seenBy: Replica, topics: string[] = []): Promise<void> {
  await net.start({ onMessage: () => {}, onRequest: async () => new Uint8Array(), onPeerConnected: () => {}, onPeerDisconnected: () => {} })
  for (const topic of topics) net.subscribe(topic)
  await waitFor(() => seenBy.peers().includes(net.peerId), 'connected')
}

/**
 * Wraps a backend so that any use of a document after dispose() throws, and records what was
 * disposed: a test over it fails if core ever frees a document something still uses (with
 * Automerge, whose dispose frees WASM memory, that would read freed memory or crash).
 */
export function disposalChecking<D>(inner: Backend<D>, options: { maxResident?: number } = {}): Backend<D> & { disposed: number } {
  const dead = new WeakSet<object>()
  const live = (doc: D): D => {
    if (dead.has(doc as object)) throw new Error(`a disposed ${inner.name} document was used again`)
    return doc
  }
  const wrapper = {
    name: inner.name,
    maxResident: options.maxResident ?? inner.maxResident,
    disposed: 0,
    create: (actor: Uint8Array) => inner.create(actor),
    load: (snapshot: Uint8Array | undefined, deltas: readonly Uint8Array[], actor: Uint8Array) => inner.load(snapshot, deltas, actor),
    save: (doc: D) => inner.save(live(doc)),
    read: (doc: D) => inner.read(live(doc)),
    put: (doc: D, value: JsonObject) => inner.put(live(doc), value),
    delete: (doc: D) => inner.delete(live(doc)),
    applyDelta: (doc: D, delta: Uint8Array, limits?: DeltaLimits) => inner.applyDelta(live(doc), delta, limits),
    version: (doc: D) => inner.version(live(doc)),
    versionHash: (doc: D) => inner.versionHash(live(doc)),
    deltaSince: (doc: D, version: Uint8Array) => inner.deltaSince(live(doc), version),
    includes: (doc: D, version: Uint8Array) => inner.includes(live(doc), version),
    mergeDeltas: (deltas: readonly Uint8Array[]) => inner.mergeDeltas(deltas),
    hasPending: (doc: D) => inner.hasPending(live(doc)),
    dispose(doc: D) {
      live(doc) // disposed twice is a bug too
      dead.add(doc as object)
      wrapper.disposed++
      inner.dispose?.(doc)
    },
  }
  return wrapper
}

/** Lets timers run (evicted documents are disposed of on a timer). */
export const nextTimerTurn = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5))

/** A clock whose timers run only when the test advances it; random() is 0.5 (no jitter). */
export class ManualClock implements Clock {
  private time = 1_000_000
  private nextId = 1
  private readonly timers = new Map<number, { at: number; fn: () => void }>()

  now(): number {
    return this.time
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++
    this.timers.set(id, { at: this.time + ms, fn })
    return { id }
  }
  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle.id)
  }
  random(): number {
    return 0.5
  }
  /** Moves time forward, running every timer due on the way (in time order). */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms
    for (;;) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0]
      if (due === undefined) break
      this.timers.delete(due[0])
      this.time = due[1].at
      due[1].fn()
      await settle()
    }
    this.time = end
    await settle()
  }
}

/** Lets in-flight async work (memory-level, loopback deliveries) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 1))
}

/**
 * A replica ('good') holding one Yjs entity in collection 'p', and a bare endpoint connected
 * to it that the test drives by hand (requests it sends, nothing it answers).
 */
export async function replicaWithRawPeer(opened: Replica[], peerName: string, entityId: string): Promise<{ good: Replica; peer: Network }> {
  const hub = new LoopbackHub()
  const peer = hub.createNetwork(peerName)
  const good = await memoryReplica({ network: hub.createNetwork('good') })
  opened.push(good) // closed by the suite's afterEach
  await good.collection('p', { backend: 'yjs' }).put(entityId, { v: 1 })
  await startRawPeer(peer, good)
  return { good, peer }
}

export { dump, recordingLogger, tempDir, waitFor, spyNetwork as spy } from '../src/testing/index.js'

/**
 * A replica 'victim' on a loopback hub with a yjs collection 'c' (subscribed to its gossip), and
 * a raw network 'evil' connected to it that sends whatever a test builds. Both closed by the
 * suite (closedAfterEach's lists).
 */
export async function victimAndRawPeer(opened: { replicas: Replica[]; nets: Network[] }): Promise<{ victim: Replica; evil: Network }> {
  const hub = new LoopbackHub()
  const victim = await memoryReplica({ network: hub.createNetwork('victim') })
  opened.replicas.push(victim)
  const evil = hub.createNetwork('evil')
  opened.nets.push(evil)
  await startRawPeer(evil, victim)
  victim.collection('c', { backend: 'yjs' })
  return { victim, evil }
}

/** A store that behaves like `inner` except for the methods given (each bound to `inner` otherwise). */
export function storeWith(inner: Store, overrides: Partial<Record<keyof Store, unknown>>): Store {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (Object.prototype.hasOwnProperty.call(overrides, prop)) return (overrides as Record<PropertyKey, unknown>)[prop]
      const value: unknown = Reflect.get(target, prop, receiver === undefined ? target : target)
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    },
  })
}

/** Awaits p and checks it rejected with a ConvergentError of that code. */
export async function rejectsWith(p: Promise<unknown>, code: string): Promise<ConvergentError> {
  try {
    await p
  } catch (err) {
    expect(err).to.be.instanceOf(ConvergentError)
    expect((err as ConvergentError).code).to.equal(code)
    return err as ConvergentError
  }
  throw new Error(`expected a rejection with ${code}`)
}

export type Answer = (type: number, body: unknown) => Uint8Array | Promise<Uint8Array>

/** A hand-made peer that answers every sync request with `answer`. */
export async function hostile(hub: LoopbackHub, name: string, answer: Answer): Promise<Network> {
  const net = hub.createNetwork(name)
  const events: NetworkEvents = {
    onMessage: () => {},
    onRequest: async (_from, data) => {
      const msg = decodeMessage(data, 1 << 24)
      return answer(msg.type, msg.body)
    },
    onPeerConnected: () => {},
    onPeerDisconnected: () => {},
  }
  await net.start(events)
  return net
}

/** Replicas and networks a test opens, closed (and the lists emptied) after each test. */
export function closedAfterEach(): { replicas: Replica[]; nets: Network[] } {
  const opened = { replicas: [] as Replica[], nets: [] as Network[] }
  afterEach(async () => {
    await Promise.all([...opened.replicas.map((r) => r.close()), ...opened.nets.map((n) => n.stop())])
    opened.replicas.length = 0
    opened.nets.length = 0
  })
  return opened
}
