import type { Metrics } from '../report/metrics.js'
import type { Prng } from '../engine/random.js'
import type { NetworkSpec } from '../run/scenario.js'
import type { Scheduler } from '../engine/scheduler.js'
import type { Task } from '../engine/timer-queue.js'
import { itemBytes, type GossipItem } from './gossip-router.js'
import { LinkControl } from './link-control.js'
import { LinkModel } from './link-model.js'
import { FRAME_OVERHEAD, REQUEST_STREAM_OVERHEAD } from './sizes.js'
import type { Endpoint, ResponsePayload } from './types.js'

/**
 * A connection between two node incarnations. Frames in flight hold it and are delivered only
 * while it is up — or, after a graceful close, gossip already sent still arrives (data written
 * before a FIN is delivered); an abrupt close (crash, partition) drops everything in flight.
 */
interface Connection {
  readonly a: number
  readonly b: number
  state: 'up' | 'closed-graceful' | 'closed-abrupt'
}

const PAIR = 2 ** 21

function pairKey(a: number, b: number): number {
  return a < b ? a * PAIR + b : b * PAIR + a
}

/** Per direction of a link: RPC items waiting for the next send slot, and when the last one went. */
interface Outbox {
  items: GossipItem[]
  task: Task | undefined
  lastSentAt: number
}

/**
 * The simulated network between all nodes: which pairs are connected (a topology of wanted
 * links, minus partitions, isolation and flapping cuts), and how frames travel (LinkModel).
 * Nodes are indices; their incarnations (SimNetwork, seen here as an Endpoint) attach when
 * started and detach when stopped or crashed.
 */
export class Fabric extends LinkControl {
  readonly link: LinkModel
  private readonly ids: string[] = []
  private readonly indexOf = new Map<string, number>()
  private readonly slots: (Endpoint | undefined)[] = []
  private readonly conns = new Map<number, Connection>()
  private readonly adjacency: Set<number>[] = []
  private readonly dials = new Map<number, Task>()
  private readonly outboxes = new Map<number, Outbox>()
  private nextMessage = 1
  private nextRequest = 1

  constructor(
    readonly scheduler: Scheduler,
    readonly spec: NetworkSpec,
    readonly metrics: Metrics,
    private readonly rng: Prng,
  ) {
    super()
    this.link = new LinkModel({ ...spec }, rng.fork('links'))
  }

  // --- nodes and topology ---

  addNode(id: string): number {
    const index = this.ids.length
    this.ids.push(id)
    this.indexOf.set(id, index)
    this.slots.push(undefined)
    this.wanted.push(new Set())
    this.adjacency.push(new Set())
    return index
  }

  idOf(index: number): string {
    return this.ids[index]!
  }

  index(id: string): number | undefined {
    return this.indexOf.get(id)
  }

  get nodeCount(): number {
    return this.ids.length
  }

  /** Indices of the nodes `a` is connected to now. */
  connectedTo(a: number): ReadonlySet<number> {
    return this.adjacency[a]!
  }

  isUp(a: number, b: number): boolean {
    return this.conns.get(pairKey(a, b))?.state === 'up'
  }

  attach(net: Endpoint): void {
    this.slots[net.index] = net
    // The node that (re)starts dials its peers.
    for (const b of this.wanted[net.index]!) this.maybeDial(net.index, b)
  }

  /** The incarnation went away: gracefully (stop) or abruptly (crash). */
  detach(net: Endpoint, graceful: boolean): void {
    if (this.slots[net.index] !== net) return
    this.slots[net.index] = undefined
    for (const b of [...this.adjacency[net.index]!]) this.close(net.index, b, graceful ? 'closed-graceful' : 'closed-abrupt')
  }

  started(index: number): Endpoint | undefined {
    return this.slots[index]
  }

  // --- faults (partition, heal, … come from LinkControl) ---

  /** After a cut changes: close links no longer allowed, redial those allowed again. */
  protected override reconcile(): void {
    for (const [a, set] of this.wanted.entries()) {
      for (const b of set) {
        if (b < a) continue
        const up = this.isUp(a, b)
        const ok = this.allowed(a, b)
        if (up && !ok) this.close(a, b, 'closed-abrupt')
        else if (!up && ok) {
          // After a heal either side's redial may win.
          if (this.rng.chance(0.5)) this.maybeDial(a, b)
          else this.maybeDial(b, a)
        }
      }
    }
  }

  // --- connections ---

  /** `a` dials `b` after the connect delay (if both are up and allowed to talk by then). */
  private maybeDial(a: number, b: number): void {
    const key = pairKey(a, b)
    if (this.dials.has(key) || this.conns.has(key)) return
    if (this.slots[a] === undefined || this.slots[b] === undefined || !this.allowed(a, b)) return
    const [min, max] = this.spec.connectDelayMs
    const task = this.scheduler.after(this.rng.uniform(min, max), () => {
      this.dials.delete(key)
      if (this.conns.has(key) || this.slots[a] === undefined || this.slots[b] === undefined || !this.allowed(a, b)) return
      this.open(a, b)
    })
    this.dials.set(key, task)
  }

  private open(a: number, b: number): void {
    const conn: Connection = { a, b, state: 'up' }
    this.conns.set(pairKey(a, b), conn)
    this.adjacency[a]!.add(b)
    this.adjacency[b]!.add(a)
    this.connectionsOpened++
    this.slots[a]!.peerUp(this.ids[b]!, true)
    this.slots[b]!.peerUp(this.ids[a]!, false)
  }

  private close(a: number, b: number, state: 'closed-graceful' | 'closed-abrupt'): void {
    const key = pairKey(a, b)
    const conn = this.conns.get(key)
    if (conn === undefined) return
    conn.state = state
    this.conns.delete(key)
    this.adjacency[a]!.delete(b)
    this.adjacency[b]!.delete(a)
    this.connectionsClosed++
    this.link.reset(a * PAIR + b)
    this.link.reset(b * PAIR + a)
    for (const dir of [a * PAIR + b, b * PAIR + a]) {
      const box = this.outboxes.get(dir)
      if (box === undefined) continue
      this.outboxes.delete(dir)
      if (box.task !== undefined) this.scheduler.cancel(box.task)
      if (state === 'closed-graceful' && box.items.length > 0) this.transmit(conn, dir, box.items)
    }
    this.slots[a]?.peerDown(this.ids[b]!)
    this.slots[b]?.peerDown(this.ids[a]!)
    // A graceful close by one side does not stop the other from dialing again later.
    if (state === 'closed-abrupt') this.maybeDial(a, b)
  }

  // --- frames ---

  nextMessageId(): number {
    return this.nextMessage++
  }

  nextRequestId(): number {
    return this.nextRequest++
  }

  /**
   * Gossip RPC items from one node to a connected peer. With rpcBatchMs > 0, relayed messages
   * and control to a peer are paced: at most one RPC per rpcBatchMs, the first after a quiet
   * spell at once, anything sent meanwhile waits for the next slot and goes out with the rest
   * in one RPC. A node's own new messages (`published`) always go at once, as gossipsub sends them.
   */
  sendGossip(from: number, to: number, items: readonly GossipItem[], published = false): void {
    const conn = this.conns.get(pairKey(from, to))
    if (conn === undefined || conn.state !== 'up') return
    const dir = from * PAIR + to
    const batchMs = this.spec.gossip.rpcBatchMs
    if (batchMs <= 0 || published) return this.transmit(conn, dir, items)
    const now = this.scheduler.now
    let box = this.outboxes.get(dir)
    if (box === undefined) this.outboxes.set(dir, (box = { items: [], task: undefined, lastSentAt: -Infinity }))
    if (box.task === undefined && now - box.lastSentAt >= batchMs) {
      box.lastSentAt = now
      return this.transmit(conn, dir, items)
    }
    for (const item of items) box.items.push(item)
    const pending = box
    pending.task ??= this.scheduler.at(pending.lastSentAt + batchMs, () => {
      pending.task = undefined
      const batch = pending.items
      pending.items = []
      pending.lastSentAt = this.scheduler.now
      if (conn.state === 'up' && batch.length > 0) this.transmit(conn, dir, batch)
    })
  }

  private transmit(conn: Connection, dir: number, items: readonly GossipItem[]): void {
    const from = Math.floor(dir / PAIR)
    const to = dir % PAIR
    let bytes = FRAME_OVERHEAD
    let carriesMessages = false
    const g = this.metrics.gossip
    for (const item of items) {
      bytes += itemBytes(item)
      switch (item.k) {
        case 'msg':
          carriesMessages = true
          break
        case 'sub':
          g.subscriptions++
          break
        case 'graft':
          g.graft++
          break
        case 'prune':
          g.prune++
          break
        case 'ihave':
          g.ihave++
          break
        case 'iwant':
          g.iwant++
          break
        case 'idontwant':
          g.idontwant++
          break
      }
    }
    this.metrics.gossipFrame(bytes, carriesMessages)
    const target = this.slots[to]
    const link = this.link
    const at = link.plan(this.scheduler.now, dir, bytes, false, 0, false)
    const duplicateAt = link.duplicateAt
    if (Number.isNaN(at)) {
      this.metrics.traffic.framesLost++
      return
    }
    // Most gossip copies reach a node that already has the message (the seen-cache drops
    // them on arrival). Entries of the seen-cache outlive any delay, so such a copy is
    // counted now and not scheduled at all: the same totals for a fraction of the work.
    if (target !== undefined && target.router.hasSeenAll(items)) {
      const copies = Number.isNaN(duplicateAt) ? 1 : 2
      for (const item of items) if (item.k === 'msg') this.metrics.gossip.duplicatesReceived += copies
      return
    }
    const fromId = this.ids[from]!
    const deliver = (): void => {
      if (conn.state === 'closed-abrupt' || this.slots[to] !== target || target === undefined) {
        this.metrics.traffic.framesLost++
        return
      }
      target.gossipArrived(fromId, items)
    }
    this.scheduler.at(at, deliver)
    if (!Number.isNaN(duplicateAt)) this.scheduler.at(duplicateAt, deliver)
  }

  /**
   * A sync request. The server's answer (or failure) travels back on the same connection;
   * `onResponse` runs at the requester when it arrives. Nothing arrives if the connection
   * breaks: the requester fails its pending requests when it hears of the disconnection.
   */
  sendRequest(from: Endpoint, to: number, data: Uint8Array, onResponse: (payload: ResponsePayload) => void): boolean {
    const conn = this.conns.get(pairKey(from.index, to))
    if (conn === undefined || conn.state !== 'up') return false
    const server = this.slots[to]!
    const bytes = FRAME_OVERHEAD + REQUEST_STREAM_OVERHEAD + data.byteLength
    this.metrics.syncFrame(bytes, true)
    const drop = this.spec.requestLoss === 'drop'
    const at = this.link.plan(this.scheduler.now, from.index * PAIR + to, bytes, true, this.spec.retransmitMs, drop)
    this.metrics.traffic.retransmits += this.link.retransmits
    if (Number.isNaN(at)) {
      this.metrics.traffic.framesLost++
      return true
    }
    const fromId = from.peerId
    this.scheduler.at(at, () => {
      if (conn.state !== 'up' || this.slots[to] !== server || this.slots[from.index] !== from) return
      server.requestArrived(fromId, data, (payload) => this.sendResponse(conn, server, from, payload, onResponse))
    })
    return true
  }

  private sendResponse(conn: Connection, server: Endpoint, client: Endpoint, payload: ResponsePayload, onResponse: (p: ResponsePayload) => void): void {
    if (conn.state !== 'up' || this.slots[server.index] !== server) return
    const size = 'ok' in payload ? payload.ok.byteLength : payload.error.length
    const bytes = FRAME_OVERHEAD + size
    this.metrics.syncFrame(bytes, false)
    const drop = this.spec.requestLoss === 'drop'
    const at = this.link.plan(this.scheduler.now, server.index * PAIR + client.index, bytes, true, this.spec.retransmitMs, drop)
    this.metrics.traffic.retransmits += this.link.retransmits
    if (Number.isNaN(at)) {
      this.metrics.traffic.framesLost++
      return
    }
    this.scheduler.at(at, () => {
      if (conn.state !== 'up' || this.slots[client.index] !== client) return
      onResponse(payload)
    })
  }

  /** Every started incarnation. */
  startedNetworks(): Endpoint[] {
    return this.slots.filter((s): s is Endpoint => s !== undefined)
  }
}
