import type { Clock } from './clock.js'
import { ConvergentError } from './errors.js'
import type { Network, NetworkEvents } from './network.js'

/**
 * An in-process Network: replicas in one process (tests, examples) talk through a hub.
 * Every delivery is asynchronous (a clock timer of 0 ms, in FIFO order) and carries a copy of
 * the bytes, so nothing relies on a synchronous call chain or on shared buffers — as on a
 * real network. Links can be cut and healed to test partitions.
 */
export interface LoopbackHubOptions {
  /**
   * Schedules deliveries; the simulator passes its virtual clock. By default Node's own timers,
   * not unref'd (unlike systemClock()'s): a delivery on its way keeps the process alive, as an
   * open socket does, so a script awaiting a reply does not exit before it.
   */
  clock?: Clock
  /** Link every pair of started networks unless cut (default true). With false, only pairs joined by connect() are linked. */
  connectOnStart?: boolean
  /** Largest published message or request, and the default response limit (default 4 MiB, as on libp2p). */
  maxMessageBytes?: number
}

const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

export class LoopbackHub {
  private readonly clock: Clock | undefined
  private readonly connectOnStart: boolean
  readonly maxMessageBytes: number
  private readonly nodes = new Map<string, LoopbackNetwork>()
  /** Explicit link state per pair (connect/disconnect/partition); absent → connectOnStart. */
  private readonly links = new Map<string, boolean>()
  private nextId = 1

  constructor(options: LoopbackHubOptions = {}) {
    this.clock = options.clock
    this.connectOnStart = options.connectOnStart ?? true
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES
    if (!Number.isSafeInteger(this.maxMessageBytes) || this.maxMessageBytes < 1) {
      throw new ConvergentError('ERR_INVALID_ARGUMENT', `maxMessageBytes must be a positive integer, got ${options.maxMessageBytes}`)
    }
  }

  /** A new network on this hub. A peer id can be reused once the network holding it has stopped. */
  createNetwork(peerId?: string): Network {
    const id = peerId ?? this.freshId()
    const existing = this.nodes.get(id)
    if (existing !== undefined && !existing.isStopped()) {
      throw new ConvergentError('ERR_INVALID_ARGUMENT', `peer id ${id} is already in use on this hub; stop that network first or pick another id`)
    }
    const node = new LoopbackNetwork(id, this)
    this.nodes.set(id, node)
    return node
  }

  connect(a: string, b: string): void {
    this.links.set(pairKey(a, b), true)
    this.refresh()
  }

  disconnect(a: string, b: string): void {
    this.links.set(pairKey(a, b), false)
    this.refresh()
  }

  /** Cuts every link between the two groups; links inside each group are untouched. */
  partition(groupA: string[], groupB: string[]): void {
    for (const a of groupA) for (const b of groupB) if (a !== b) this.links.set(pairKey(a, b), false)
    this.refresh()
  }

  /** Removes every cut made by disconnect() or partition(). */
  heal(): void {
    for (const [key, linked] of this.links) if (!linked) this.links.delete(key)
    this.refresh()
  }

  /** @internal Runs fn on a later turn, in order with every other delivery. */
  schedule(fn: () => void): void {
    if (this.clock !== undefined) this.clock.setTimeout(fn, 0)
    else setTimeout(fn, 0)
  }

  /** @internal The started network with that id, if any. */
  started(peerId: string): LoopbackNetwork | undefined {
    const node = this.nodes.get(peerId)
    return node?.isStarted() === true ? node : undefined
  }

  /** @internal Recomputes who is connected to whom after any start, stop or link change. */
  refresh(): void {
    const started = [...this.nodes.values()].filter((n) => n.isStarted())
    for (const node of started) {
      for (const other of started) {
        if (node === other) continue
        const linked = this.links.get(pairKey(node.peerId, other.peerId)) ?? this.connectOnStart
        if (linked) node.linkUp(other.peerId)
        else node.linkDown(other.peerId)
      }
    }
  }

  private freshId(): string {
    let id: string
    do id = `loopback-${this.nextId++}`
    while (this.nodes.has(id))
    return id
  }
}

function pairKey(a: string, b: string): string {
  return a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`
}

interface PendingRequest {
  readonly peer: string
  fail(err: ConvergentError): void
}

type State = 'new' | 'started' | 'stopped'

class LoopbackNetwork implements Network {
  readonly multiaddrs: string[] = []
  private state: State = 'new'
  private events: NetworkEvents | undefined
  private readonly connected = new Set<string>()
  private readonly topics = new Set<string>()
  private readonly pending = new Set<PendingRequest>()

  constructor(
    readonly peerId: string,
    private readonly hub: LoopbackHub,
  ) {}

  isStarted(): boolean {
    return this.state === 'started'
  }

  isStopped(): boolean {
    return this.state === 'stopped'
  }

  async start(events: NetworkEvents): Promise<void> {
    if (this.state !== 'new') {
      throw new ConvergentError('ERR_CLOSED', `loopback network ${this.peerId} was already started; create a new one with hub.createNetwork()`)
    }
    this.events = events
    this.state = 'started'
    this.hub.refresh()
  }

  async stop(): Promise<void> {
    if (this.state === 'stopped') return
    this.state = 'stopped'
    this.events = undefined
    for (const peer of [...this.connected]) {
      this.connected.delete(peer)
      this.hub.started(peer)?.linkDown(this.peerId)
    }
    for (const call of [...this.pending]) call.fail(new ConvergentError('ERR_CLOSED', 'the network was stopped during the request'))
  }

  subscribe(topic: string): void {
    this.topics.add(topic)
  }

  unsubscribe(topic: string): void {
    this.topics.delete(topic)
  }

  async publish(topic: string, data: Uint8Array): Promise<void> {
    this.assertStarted()
    this.assertSize(data, 'message')
    for (const peer of this.connected) {
      const copy = data.slice()
      this.hub.schedule(() => {
        const target = this.hub.started(peer)
        // Checked on arrival: a link cut or an unsubscribe while in flight drops the message.
        if (target?.connected.has(this.peerId) === true && target.topics.has(topic)) {
          target.emit((e) => e.onMessage(topic, copy, this.peerId))
        }
      })
    }
  }

  peers(): string[] {
    return [...this.connected]
  }

  request(peer: string, data: Uint8Array, options: { signal?: AbortSignal; maxBytes?: number } = {}): Promise<Uint8Array> {
    const { signal } = options
    const maxBytes = options.maxBytes ?? this.hub.maxMessageBytes
    return new Promise<Uint8Array>((resolve, reject) => {
      if (signal?.aborted === true) return reject(abortedError())
      try {
        this.assertStarted()
        this.assertSize(data, 'request')
      } catch (err) {
        return reject(err instanceof Error ? err : new Error(String(err)))
      }
      if (!this.connected.has(peer)) {
        return reject(new ConvergentError('ERR_NETWORK', `not connected to peer ${peer}; wait for onPeerConnected before sending requests`))
      }

      let settled = false
      const settle = (): boolean => {
        if (settled) return false
        settled = true
        this.pending.delete(call)
        signal?.removeEventListener('abort', onAbort)
        return true
      }
      const call: PendingRequest = { peer, fail: (err) => settle() && reject(err) }
      const onAbort = (): void => call.fail(abortedError())
      signal?.addEventListener('abort', onAbort, { once: true })
      this.pending.add(call)

      const requestCopy = data.slice()
      this.hub.schedule(() => {
        if (settled) return
        const target = this.hub.started(peer)
        if (target === undefined || !this.connected.has(peer)) {
          return call.fail(new ConvergentError('ERR_NETWORK', `peer ${peer} went away before the request arrived`))
        }
        target.serve(this.peerId, requestCopy).then(
          (response) => {
            const responseCopy = response.slice()
            this.hub.schedule(() => {
              if (responseCopy.byteLength > maxBytes) {
                call.fail(new ConvergentError('ERR_TOO_LARGE', `response of ${responseCopy.byteLength} bytes from ${peer} exceeds maxBytes ${maxBytes}`))
              } else if (settle()) {
                resolve(responseCopy)
              }
            })
          },
          (err: unknown) => {
            const detail = err instanceof Error ? err.message : String(err)
            this.hub.schedule(() => call.fail(new ConvergentError('ERR_NETWORK', `peer ${peer} failed the request: ${detail}`)))
          },
        )
      })
    })
  }

  /** Runs our request handler for a peer's request. */
  serve(from: string, data: Uint8Array): Promise<Uint8Array> {
    const events = this.events
    if (events === undefined) return Promise.reject(new Error('the peer stopped'))
    try {
      return events.onRequest(from, data)
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)))
    }
  }

  linkUp(peer: string): void {
    if (this.connected.has(peer)) return
    this.connected.add(peer)
    this.emit((e) => e.onPeerConnected(peer))
  }

  linkDown(peer: string): void {
    if (!this.connected.delete(peer)) return
    for (const call of [...this.pending]) {
      if (call.peer === peer) call.fail(new ConvergentError('ERR_NETWORK', `disconnected from peer ${peer} during the request`))
    }
    this.emit((e) => e.onPeerDisconnected(peer))
  }

  /** Delivers an event on a later turn, unless we have stopped by then. */
  emit(fn: (events: NetworkEvents) => void): void {
    this.hub.schedule(() => {
      const events = this.events
      if (events !== undefined) fn(events)
    })
  }

  private assertStarted(): void {
    if (this.state !== 'started') {
      throw new ConvergentError('ERR_CLOSED', `loopback network ${this.peerId} is ${this.state === 'new' ? 'not started; call start() first' : 'stopped'}`)
    }
  }

  private assertSize(data: Uint8Array, what: string): void {
    if (data.byteLength > this.hub.maxMessageBytes) {
      throw new ConvergentError('ERR_TOO_LARGE', `${what} of ${data.byteLength} bytes exceeds the hub's maxMessageBytes ${this.hub.maxMessageBytes}; split it`)
    }
  }
}

function abortedError(): ConvergentError {
  return new ConvergentError('ERR_ABORTED', 'the request was aborted through its signal')
}
