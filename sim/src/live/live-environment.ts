import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Libp2pNetwork } from '@convergent/libp2p'
import type { HostNode, SimContext } from '../run/context.js'
import type { Environment, EnvironmentParts } from '../run/environment.js'
import { LinkControl } from '../net/link-control.js'
import { ScenarioError } from '../run/scenario.js'
import { LinkModel } from '../net/link-model.js'
import type { Prng } from '../engine/random.js'
import type { RunOptions } from '../engine/scheduler.js'
import { wireInitial, wireJoiner } from '../net/topology.js'
import { LiveNode } from './live-node.js'
import type { ConnectionGater, LiveHost } from './types.js'

export const MAX_LIVE_NODES = 10
const RECONCILE_MS = 500
const START_TIMEOUT_MS = 30_000

/**
 * Live mode: real libp2p nodes (TCP on 127.0.0.1) in this process, in real time. The scenario's
 * scheduler is pumped by the wall clock, so the same workload and fault schedule run. Faults
 * act on connections: a connection gater refuses dials and inbound connections between nodes
 * that are cut off from each other, and open connections between them are closed; a heal
 * redials. Latency, loss, duplication and reordering come from FaultyNetwork.
 */
export class LiveEnvironment extends LinkControl implements Environment, LiveHost {
  readonly mode = 'live' as const
  readonly virtualDateNow = false
  readonly control = this
  readonly link: LinkModel
  readonly dir = mkdtempSync(join(tmpdir(), 'convergent-live-'))
  private readonly running = new Map<number, Libp2pNetwork>()
  private readonly indexOfPeer = new Map<string, number>()
  private readonly topologyRng: Prng
  /** Wall-clock instant of virtual time 0: set again once the initial nodes are open. */
  private t0 = performance.now()
  private disposed = false

  constructor(private readonly parts: EnvironmentParts) {
    super()
    if (parts.scenario.replica.cluster) {
      // The admin is node 0's peer id, which a live node learns only once libp2p started (from its identity file).
      throw new ScenarioError(`scenario '${parts.scenario.name}': replica.cluster runs in the simulator only, not in live mode`)
    }
    if (parts.scenario.nodes > MAX_LIVE_NODES) {
      throw new Error(
        `live mode runs at most ${MAX_LIVE_NODES} nodes in one process; pass --nodes ${MAX_LIVE_NODES} or fewer (the scenario has ${parts.scenario.nodes})`,
      )
    }
    this.link = new LinkModel({ ...parts.scenario.network }, parts.rng.fork('live-links'))
    this.topologyRng = parts.rng.fork('topology')
    // Keep wanted connections up (libp2p drops idle ones; a heal needs redials).
    const reconcile = (): void => {
      if (this.disposed) return
      this.reconcile()
      parts.scheduler.after(RECONCILE_MS, reconcile)
    }
    parts.scheduler.after(RECONCILE_MS, reconcile)
  }

  // --- Environment ---

  createNode(ctx: SimContext, index: number): HostNode {
    this.wanted.push(new Set())
    return new LiveNode(ctx, this, index, `n${index}`)
  }

  wireInitial(nodes: number[]): void {
    wireInitial(this, nodes, this.parts.scenario.network.connections, this.topologyRng)
  }

  wireJoiner(node: number, candidates: number[]): void {
    wireJoiner(this, node, candidates, this.parts.scenario.network.connections, this.topologyRng)
  }

  /**
   * Waits until every initial node is open (or failed to open) — libp2p and a replica take
   * real time, longer on a loaded machine — then starts the clock, so that node 0 is up at
   * seedAtMs however slow the start was. Gives up after START_TIMEOUT_MS (the run then
   * reports the nodes that were not up).
   */
  async nodesStarted(nodes: readonly HostNode[]): Promise<void> {
    const deadline = performance.now() + START_TIMEOUT_MS
    while (nodes.some((n) => n.status === 'new' || n.status === 'starting') && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10))
    }
    this.t0 = performance.now() - this.parts.scheduler.now
  }

  /** Follows the wall clock: virtual ms = real ms since t0. */
  async advance(until: number, options: RunOptions): Promise<void> {
    const { scheduler } = this.parts
    for (;;) {
      const target = Math.min(until, Math.floor(performance.now() - this.t0))
      await scheduler.runUntil(target, options)
      if (target >= until) return
      await new Promise((r) => setTimeout(r, 5))
    }
  }

  async dispose(): Promise<void> {
    this.disposed = true
    rmSync(this.dir, { recursive: true, force: true })
  }

  // --- nodes ---

  /** A node's libp2p network is up: dial the peers it should reach. */
  started(index: number, net: Libp2pNetwork): void {
    this.running.set(index, net)
    this.indexOfPeer.set(net.peerId, index)
    net.libp2p.addEventListener('connection:open', () => this.connectionsOpened++)
    net.libp2p.addEventListener('connection:close', () => this.connectionsClosed++)
    this.reconcile()
  }

  stopped(index: number): void {
    this.running.delete(index)
  }

  /** The gater of node `self`: no connection with a node it is cut off from. */
  gaterFor(self: number): ConnectionGater {
    const deny = (peer: { toString(): string }): boolean => {
      const other = this.indexOfPeer.get(peer.toString())
      return other !== undefined && !this.cuts.allowed(self, other)
    }
    return {
      denyDialPeer: (peer) => deny(peer),
      denyInboundEncryptedConnection: (peer) => deny(peer),
      denyOutboundEncryptedConnection: (peer) => deny(peer),
    }
  }

  // --- NetworkControl (partition, heal, … come from LinkControl) ---

  /** Closes connections that are cut, dials wanted ones that are allowed and missing. */
  protected override reconcile(): void {
    for (const [a, net] of this.running) {
      for (const b of this.wanted[a] ?? []) {
        const other = this.running.get(b)
        if (other === undefined) continue
        const connected = net.libp2p.getConnections(other.libp2p.peerId).length > 0
        if (!this.cuts.allowed(a, b)) {
          if (connected) void net.libp2p.hangUp(other.libp2p.peerId).catch(() => undefined)
        } else if (!connected && a < b) {
          void net.libp2p.dial(other.libp2p.getMultiaddrs()).catch(() => undefined)
        }
      }
    }
  }
}
