import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Replica, silentLogger, type Backend, type JsonObject, type Logger, type Network, type ReplicaOptions } from '@convergent/core'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { memoryLevelStore } from '@convergent/level'

export const BACKENDS = ['yjs', 'automerge'] as const
export type BackendName = (typeof BACKENDS)[number]

/** A fresh temp folder; remove it with the returned cleanup. */
export async function tempDir(prefix = 'convergent-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) }
}

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

/** A logger that records what it was told (to assert drops are logged with the peer id). */
export function recordingLogger(): Logger & { lines: { message: string; fields?: Record<string, unknown> }[] } {
  const lines: { message: string; fields?: Record<string, unknown> }[] = []
  return {
    lines,
    warn: (message, fields) => lines.push({ message, ...(fields ? { fields } : {}) }),
    error: (message, fields) => lines.push({ message, ...(fields ? { fields } : {}) }),
  }
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

/** Polls until cond() is true or the timeout passes (then throws with the label). */
export async function waitFor(cond: () => boolean | Promise<boolean>, label: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${label}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** Every live entity of a collection as a plain object, for equality checks. */
export async function dump(replica: Replica, collection: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {}
  for await (const [id, value] of replica.collection(collection).entries()) out[id] = value
  return out
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
    applyDelta: (doc: D, delta: Uint8Array) => inner.applyDelta(live(doc), delta),
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

/** Runs a Node script in a child process (killed after timeoutMs) and collects its output. */
export function runNode(file: string, args: string[] = [], options: { cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file, ...args], options.cwd === undefined ? {} : { cwd: options.cwd })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000)
    child.on('error', reject)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}
