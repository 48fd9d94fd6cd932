import type { Clock, TimerHandle } from '@convergent/core'
import type { Metrics } from '../report/metrics.js'
import type { Prng } from '../engine/random.js'
import type { GossipParams } from '../run/scenario.js'
import { CONTROL_ENTRY, idListBytes, messageBytes } from './sizes.js'

/** A published message; one immutable object shared by every node that holds it. */
export interface GossipMessage {
  readonly id: number
  readonly topic: string
  readonly origin: string
  readonly data: Uint8Array
  /** Bytes of the message inside an RPC. */
  readonly bytes: number
  /** The one-item RPC carrying it (shared: RPC item lists are never mutated). */
  readonly rpc: readonly GossipItem[]
}

export type GossipItem =
  | { k: 'msg'; m: GossipMessage }
  | { k: 'sub'; topic: string; on: boolean }
  | { k: 'graft'; topic: string }
  | { k: 'prune'; topic: string }
  | { k: 'ihave'; topic: string; ids: number[] }
  | { k: 'iwant'; ids: number[] }
  | { k: 'idontwant'; ids: number[] }

export function itemBytes(item: GossipItem): number {
  switch (item.k) {
    case 'msg':
      return item.m.bytes
    case 'sub':
    case 'graft':
    case 'prune':
      return CONTROL_ENTRY + item.topic.length
    case 'ihave':
      return item.topic.length + idListBytes(item.ids.length)
    case 'iwant':
    case 'idontwant':
      return idListBytes(item.ids.length)
  }
}

export interface RouterHost {
  readonly self: string
  /** Sends one RPC (a frame) with these items to a connected peer; `published` = our own new message. */
  send(peer: string, items: readonly GossipItem[], published?: boolean): void
  /** A new message on a topic we subscribe to reached us, from peer `via` (its author, or a relay). */
  deliver(msg: GossipMessage, via: string): void
  nextMessageId(): number
  /** Virtual ms since the start of the run. */
  now(): number
}

/**
 * The gossipsub model of one node (v1.1/v1.2 behaviour of js-libp2p gossipsub, minus peer
 * scoring): a mesh of degree D per topic kept in [Dlo, Dhi] by a heartbeat with GRAFT/PRUNE,
 * flood publishing (or mesh/fanout publishing), forwarding to the mesh, a seen-cache that drops
 * duplicates, a message cache answering IWANT, IHAVE gossip to Dlazy non-mesh peers every
 * heartbeat, and IDONTWANT for large messages.
 */
export class GossipRouter {
  private readonly topics = new Set<string>()
  /** Topics each connected peer subscribes to. */
  private readonly peerTopics = new Map<string, Set<string>>()
  /** Peers whose connection we dialed (gossipsub keeps at least Dout of them in each mesh). */
  private readonly outbound = new Set<string>()
  private readonly mesh = new Map<string, Set<string>>()
  private readonly fanout = new Map<string, Set<string>>()
  private readonly fanoutLastPublish = new Map<string, number>()
  /** Message id → expiry (insertion order is expiry order: the TTL is constant). */
  private readonly seen = new Map<number, number>()
  /** Message cache: ids per heartbeat window (newest first) and the messages themselves. */
  private readonly windows: number[][] = [[]]
  private readonly cache = new Map<number, GossipMessage>()
  /** IDONTWANTs received, per peer. */
  private readonly dontWant = new Map<string, Set<number>>()
  /** "topic\0peer" → time before which we do not GRAFT that peer again. */
  private readonly backoff = new Map<string, number>()
  private timer: TimerHandle | undefined
  private stopped = false

  constructor(
    private readonly host: RouterHost,
    private readonly params: GossipParams,
    private readonly clock: Clock,
    private readonly rng: Prng,
    private readonly metrics: Metrics,
  ) {}

  start(): void {
    // A random phase: nodes started together do not beat in lockstep.
    const first = this.params.heartbeatInitialDelayMs + this.rng.uniform(0, this.params.heartbeatMs)
    this.timer = this.clock.setTimeout(() => this.tick(), first)
  }

  stop(): void {
    this.stopped = true
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer)
  }

  // --- peers and subscriptions ---

  peerConnected(peer: string, outbound: boolean): void {
    this.peerTopics.set(peer, new Set())
    if (outbound) this.outbound.add(peer)
    if (this.topics.size > 0)
      this.host.send(
        peer,
        [...this.topics].map((topic) => ({ k: 'sub', topic, on: true })),
      )
  }

  peerDisconnected(peer: string): void {
    this.peerTopics.delete(peer)
    this.outbound.delete(peer)
    this.dontWant.delete(peer)
    for (const set of this.mesh.values()) set.delete(peer)
    for (const set of this.fanout.values()) set.delete(peer)
  }

  subscribe(topic: string): void {
    if (this.topics.has(topic)) return
    this.topics.add(topic)
    for (const peer of this.peerTopics.keys()) this.host.send(peer, [{ k: 'sub', topic, on: true }])
    // Join: start the mesh from fanout peers, topped up with random topic peers.
    const mesh = new Set<string>()
    for (const p of this.fanout.get(topic) ?? []) if (mesh.size < this.params.D) mesh.add(p)
    this.fanout.delete(topic)
    this.fanoutLastPublish.delete(topic)
    for (const p of this.rng.sample(
      this.topicPeers(topic, (p) => !mesh.has(p)),
      this.params.D - mesh.size,
    ))
      mesh.add(p)
    this.mesh.set(topic, mesh)
    for (const p of mesh) this.host.send(p, [{ k: 'graft', topic }])
  }

  unsubscribe(topic: string): void {
    if (!this.topics.delete(topic)) return
    for (const peer of this.peerTopics.keys()) this.host.send(peer, [{ k: 'sub', topic, on: false }])
    for (const p of this.mesh.get(topic) ?? []) this.host.send(p, [{ k: 'prune', topic }])
    this.mesh.delete(topic)
  }

  // --- messages ---

  publish(topic: string, data: Uint8Array): void {
    const rpc: GossipItem[] = []
    const msg: GossipMessage = { id: this.host.nextMessageId(), topic, origin: this.host.self, data, bytes: messageBytes(topic, data.byteLength), rpc }
    rpc.push({ k: 'msg', m: msg })
    this.metrics.gossip.published++
    this.remember(msg)
    for (const peer of this.publishTargets(topic)) {
      this.metrics.gossip.messageCopies++
      this.host.send(peer, msg.rpc, true)
    }
  }

  private publishTargets(topic: string): string[] {
    if (this.params.floodPublish) return this.topicPeers(topic)
    const mesh = this.mesh.get(topic)
    if (mesh !== undefined) {
      const targets = [...mesh]
      if (targets.length < this.params.D)
        targets.push(
          ...this.rng.sample(
            this.topicPeers(topic, (p) => !mesh.has(p)),
            this.params.D - targets.length,
          ),
        )
      return targets
    }
    let fanout = this.fanout.get(topic)
    if (fanout === undefined || fanout.size === 0) {
      fanout = new Set(this.rng.sample(this.topicPeers(topic), this.params.D))
      this.fanout.set(topic, fanout)
    }
    this.fanoutLastPublish.set(topic, this.host.now())
    return [...fanout]
  }

  /** One frame arrived from a peer: its items in order. */
  receive(from: string, items: readonly GossipItem[]): void {
    if (this.stopped) return
    // Data from a peer that just closed gracefully still counts; its control no longer does.
    if (!this.peerTopics.has(from)) items = items.filter((item) => item.k === 'msg')
    let iwant: number[] | undefined
    let served: GossipMessage[] | undefined
    const replies: GossipItem[] = []
    for (const item of items) {
      switch (item.k) {
        case 'msg':
          this.receiveMessage(from, item.m)
          break
        case 'sub': {
          const set = this.peerTopics.get(from)!
          if (item.on) {
            set.add(item.topic)
            // graftOnSubscribe: a mesh below Dlo takes a newly subscribed peer at once.
            const mesh = this.mesh.get(item.topic)
            if (mesh !== undefined && !mesh.has(from) && mesh.size < this.params.Dlo && !this.inBackoff(item.topic, from)) {
              mesh.add(from)
              replies.push({ k: 'graft', topic: item.topic })
            }
          } else {
            set.delete(item.topic)
            this.mesh.get(item.topic)?.delete(from)
            this.fanout.get(item.topic)?.delete(from)
          }
          break
        }
        case 'graft': {
          const mesh = this.mesh.get(item.topic)
          if (mesh === undefined || this.inBackoff(item.topic, from)) replies.push({ k: 'prune', topic: item.topic })
          else mesh.add(from)
          break
        }
        case 'prune':
          this.mesh.get(item.topic)?.delete(from)
          this.backoff.set(`${item.topic}\u0000${from}`, this.host.now() + this.params.pruneBackoffMs)
          break
        case 'ihave':
          if (!this.topics.has(item.topic)) break
          for (const id of item.ids) if (!this.seen.has(id)) (iwant ??= []).push(id)
          break
        case 'iwant':
          for (const id of item.ids) {
            const m = this.cache.get(id)
            if (m !== undefined) (served ??= []).push(m)
          }
          break
        case 'idontwant': {
          let set = this.dontWant.get(from)
          if (set === undefined) this.dontWant.set(from, (set = new Set()))
          for (const id of item.ids) set.add(id)
          break
        }
      }
    }
    if (replies.length > 0) this.host.send(from, replies)
    if (iwant !== undefined) this.host.send(from, [{ k: 'iwant', ids: iwant.slice(0, this.params.maxIHaveLength) }])
    if (served !== undefined) {
      this.metrics.gossip.messageCopies += served.length
      this.host.send(
        from,
        served.map((m) => ({ k: 'msg', m })),
      )
    }
  }

  private receiveMessage(from: string, msg: GossipMessage): void {
    if (this.seen.has(msg.id)) {
      this.metrics.gossip.duplicatesReceived++
      return
    }
    this.remember(msg)
    if (!this.topics.has(msg.topic)) return // not ours: gossipsub neither delivers nor forwards it
    this.host.deliver(msg, from)
    const mesh = this.mesh.get(msg.topic)
    if (mesh === undefined) return
    if (msg.data.byteLength >= this.params.idontwantMinBytes) {
      for (const p of mesh) if (p !== from) this.host.send(p, [{ k: 'idontwant', ids: [msg.id] }])
    }
    for (const p of mesh) {
      if (p === from || p === msg.origin || this.dontWant.get(p)?.has(msg.id) === true) continue
      this.sendMessage(p, msg)
    }
  }

  private sendMessage(peer: string, msg: GossipMessage): void {
    this.metrics.gossip.messageCopies++
    this.host.send(peer, msg.rpc)
  }

  private remember(msg: GossipMessage): void {
    this.seen.set(msg.id, this.host.now() + this.params.seenTtlMs)
    this.cache.set(msg.id, msg)
    this.windows[0]!.push(msg.id)
  }

  // --- heartbeat ---

  private tick(): void {
    if (this.stopped) return
    this.heartbeat()
    this.timer = this.clock.setTimeout(() => this.tick(), this.params.heartbeatMs)
  }

  /** Mesh maintenance, fanout expiry, IHAVE gossip, cache shift: control to each peer in one RPC. */
  heartbeat(): void {
    const p = this.params
    const now = this.host.now()
    const control = new Map<string, GossipItem[]>()
    const queue = (peer: string, item: GossipItem): void => {
      const list = control.get(peer)
      if (list === undefined) control.set(peer, [item])
      else list.push(item)
    }
    for (const [topic, mesh] of this.mesh) {
      for (const peer of mesh) if (!this.peerTopics.get(peer)?.has(topic)) mesh.delete(peer)
      if (mesh.size < p.Dlo) {
        const candidates = this.topicPeers(topic, (peer) => !mesh.has(peer) && !this.inBackoff(topic, peer))
        for (const peer of this.rng.sample(candidates, p.D - mesh.size)) {
          mesh.add(peer)
          queue(peer, { k: 'graft', topic })
        }
      } else if (mesh.size > p.Dhi) {
        // Keep D at random, but at least Dout of them outbound.
        const order = this.rng.shuffle([...mesh])
        const chosen = order.slice(0, p.D)
        let outbound = chosen.filter((x) => this.outbound.has(x)).length
        for (const extra of order.slice(p.D)) {
          if (outbound >= p.Dout) break
          if (!this.outbound.has(extra)) continue
          const swap = chosen.findIndex((x) => !this.outbound.has(x))
          if (swap === -1) break
          chosen[swap] = extra
          outbound++
        }
        const keep = new Set(chosen)
        for (const peer of [...mesh]) {
          if (keep.has(peer)) continue
          mesh.delete(peer)
          this.backoff.set(`${topic}\u0000${peer}`, now + p.pruneBackoffMs)
          queue(peer, { k: 'prune', topic })
        }
      }
      if (mesh.size >= p.Dlo) {
        // Too few outbound peers in the mesh: graft some (an eclipse defence that also re-knits meshes after a heal).
        const outbound = [...mesh].filter((x) => this.outbound.has(x)).length
        if (outbound < p.Dout) {
          const candidates = this.topicPeers(topic, (peer) => this.outbound.has(peer) && !mesh.has(peer) && !this.inBackoff(topic, peer))
          for (const peer of this.rng.sample(candidates, p.Dout - outbound)) {
            mesh.add(peer)
            queue(peer, { k: 'graft', topic })
          }
        }
      }
    }
    for (const [topic, fanout] of this.fanout) {
      if (now - (this.fanoutLastPublish.get(topic) ?? 0) > p.fanoutTtlMs) {
        this.fanout.delete(topic)
        this.fanoutLastPublish.delete(topic)
        continue
      }
      for (const peer of fanout) if (!this.peerTopics.get(peer)?.has(topic)) fanout.delete(peer)
      if (fanout.size < p.D)
        for (const peer of this.rng.sample(
          this.topicPeers(topic, (x) => !fanout.has(x)),
          p.D - fanout.size,
        ))
          fanout.add(peer)
    }
    this.emitGossip(queue)
    for (const [peer, items] of control) this.host.send(peer, items)
    this.shiftCache(now)
  }

  /** IHAVE of the recent windows' ids, to max(Dlazy, gossipFactor × candidates) non-mesh peers. */
  private emitGossip(queue: (peer: string, item: GossipItem) => void): void {
    const p = this.params
    const recent = new Map<string, number[]>()
    for (const window of this.windows.slice(0, p.mcacheGossip)) {
      for (const id of window) {
        const m = this.cache.get(id)
        if (m === undefined) continue
        const list = recent.get(m.topic)
        if (list === undefined) recent.set(m.topic, [id])
        else list.push(id)
      }
    }
    for (const [topic, ids] of recent) {
      const exclude = this.mesh.get(topic) ?? this.fanout.get(topic) ?? new Set<string>()
      const candidates = this.topicPeers(topic, (peer) => !exclude.has(peer))
      const count = Math.max(p.Dlazy, Math.floor(p.gossipFactor * candidates.length))
      const chosen = this.rng.sample(candidates, count)
      const shown = ids.length > p.maxIHaveLength ? this.rng.sample(ids, p.maxIHaveLength) : ids
      for (const peer of chosen) queue(peer, { k: 'ihave', topic, ids: shown })
    }
  }

  private shiftCache(now: number): void {
    this.windows.unshift([])
    while (this.windows.length > this.params.mcacheLength) {
      for (const id of this.windows.pop()!) this.cache.delete(id)
    }
    for (const [id, expiry] of this.seen) {
      if (expiry > now) break
      this.seen.delete(id)
    }
    for (const [key, until] of this.backoff) if (until <= now) this.backoff.delete(key)
    // IDONTWANTs only matter while the message can still be forwarded.
    if (this.dontWant.size > 0) for (const set of this.dontWant.values()) set.clear()
  }

  private inBackoff(topic: string, peer: string): boolean {
    const until = this.backoff.get(`${topic}\u0000${peer}`)
    return until !== undefined && until > this.host.now()
  }

  /** Connected peers subscribed to the topic, in a stable order. */
  private topicPeers(topic: string, filter?: (peer: string) => boolean): string[] {
    const out: string[] = []
    for (const [peer, set] of this.peerTopics) if (set.has(topic) && (filter === undefined || filter(peer))) out.push(peer)
    return out
  }

  /**
   * True if the frame would change nothing here: every item is a message, or an IHAVE of
   * messages, this node has already seen. (Seen entries outlive any frame's delay.)
   */
  hasSeenAll(items: readonly GossipItem[]): boolean {
    if (this.stopped) return false
    for (const item of items) {
      if (item.k === 'msg') {
        if (!this.seen.has(item.m.id)) return false
      } else if (item.k === 'ihave') {
        for (const id of item.ids) if (!this.seen.has(id)) return false
      } else return false
    }
    return true
  }

  /** For reports and tests. */
  meshOf(topic: string): string[] {
    return [...(this.mesh.get(topic) ?? [])]
  }
}
