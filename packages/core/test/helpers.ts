import { Replica, silentLogger, type Backend, type DeltaLimits, type JsonObject, type Network, type ReplicaOptions } from '../src/index.js'
import { waitFor } from '../src/testing/index.js'
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

export { dump, recordingLogger, tempDir, waitFor } from '../src/testing/index.js'
