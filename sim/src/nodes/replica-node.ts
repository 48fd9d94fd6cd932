import { Replica, type Clock, type Collection, type Counter, type Logger, type Network, type Store } from '@convergent/core'
import { clusterPolicy } from '../run/cluster.js'
import { addReplicaStats, type HostNode, type NodeStatus, type SimContext } from '../run/context.js'

/** One life of a node, from start to crash or close: what both kinds of node keep per incarnation. */
export interface Incarnation {
  /** Killed on a crash or close: every pending timer is dropped. */
  readonly clock: Clock & { kill(): void }
  /** A view of the node's durable store; a crash loses what it had not flushed. */
  readonly store: Store & { crash(): void }
  replica: Replica | undefined
  readonly collections: Map<string, Collection<Record<string, unknown>>>
  stock: Counter | undefined
}

/**
 * A node that runs a real Replica in successive incarnations. The simulated node (SimNode) and
 * the live one (LiveNode) extend it: they differ only in how an incarnation's clock, store and
 * network are made and torn down, so the replica's options, what the ledgers observe, and the
 * crash / leave / stats bookkeeping live here once and both modes report alike.
 */
export abstract class ReplicaNode<I extends Incarnation> implements HostNode {
  status: NodeStatus = 'new'
  /** The workload's counter for this node's registers: survives crashes. */
  counter = 0
  /** Clock offset of this node (clock skew). */
  skewMs = 0
  /** When this node last crashed or shut down. */
  lastDownAt: number | undefined
  /** Called once each incarnation is open. */
  onUp: ((node: HostNode) => void) | undefined
  abstract readonly peerId: string | undefined
  protected inc: I | undefined
  protected incarnations = 0

  constructor(
    protected readonly ctx: SimContext,
    readonly index: number,
    readonly id: string,
  ) {}

  abstract start(): void
  abstract dispose(): Promise<void>

  /** Drops the incarnation's connections when its process is gone (crash or failed start). */
  protected abstract dropConnections(inc: I): void

  /** The replica of the current incarnation (once open; also while stopping). */
  get replica(): Replica | undefined {
    return this.inc?.replica
  }

  get isUp(): boolean {
    return this.status === 'up'
  }

  collection(name: string): Collection<Record<string, unknown>> | undefined {
    return this.status === 'up' ? this.inc?.collections.get(name) : undefined
  }

  stock(): Counter | undefined {
    return this.status === 'up' ? this.inc?.stock : undefined
  }

  /** Opens the incarnation's Replica with the scenario's replica settings. */
  protected openReplica(inc: I, network: Network): Promise<Replica> {
    const r = this.ctx.scenario.replica
    const cluster = this.ctx.cluster
    // In a cluster: this node's key (the same every incarnation: derived from the seed and peer id), node 0 the admin.
    const admin = this.ctx.nodes[0]?.peerId
    if (cluster !== undefined && admin === undefined) throw new Error('replica.cluster: node 0 has no peer id yet (it is the admin)')
    return Replica.open({
      store: inc.store,
      backends: this.ctx.backends,
      network,
      clock: inc.clock,
      logger: this.logger(),
      syncIntervalMs: r.syncIntervalMs,
      syncOnConnect: r.syncOnConnect,
      cacheSize: r.cacheSize,
      compactAfter: r.compactAfter,
      ...(r.maxValueBytes !== null ? { limits: { maxValueBytes: r.maxValueBytes } } : {}),
      ...(cluster !== undefined ? { trust: cluster.keyring.trust(network.peerId, [admin!]) } : {}),
    })
  }

  /** The replica is open: open the workload's collections and counter, and report what they see. */
  protected replicaOpened(inc: I, replica: Replica): void {
    const { scheduler, ledger, counterLedger } = this.ctx
    inc.replica = replica
    for (const plan of this.ctx.collections) {
      const col = replica.collection<Record<string, unknown>>(plan.name, { backend: plan.backend })
      col.subscribe((ev) => ledger.observe(this.index, plan.name, ev.id, ev.value, scheduler.now))
      inc.collections.set(plan.name, col)
    }
    const counterSpec = this.ctx.scenario.workload.counter
    if (counterSpec.ids > 0) {
      const stock = replica.counter(counterSpec.name, { min: counterSpec.min, lowWater: counterSpec.lowWater })
      stock.subscribe((ev) => counterLedger.observe(this.index, ev.id, ev.value, scheduler.now, ev.origin))
      inc.stock = stock
    }
    if (this.ctx.cluster !== undefined && this.index === 0 && this.incarnations === 1) this.setPolicy(inc, replica)
  }

  /**
   * Node 0, the admin, signs a policy naming every node at its first start. Not tracked by
   * Activity: set() offers the policy to connected peers and waits for a store write, which
   * take virtual time. The others adopt it by anti-entropy (every round starts with an offer).
   */
  private setPolicy(inc: I, replica: Replica): void {
    const cluster = this.ctx.cluster!
    const ids = this.ctx.nodes.map((n) => n.peerId).filter((id): id is string => id !== undefined)
    replica.policy.set(clusterPolicy(ids)).then(
      (policy) => {
        cluster.policySet = { at: this.ctx.scheduler.now, version: policy.version, members: ids.length }
        this.ctx.trace.log(`${this.id} set the cluster policy (version ${policy.version}, ${ids.length} members)`)
      },
      (err: unknown) => {
        // Cut short by a crash: the clusterCheck reports the missing policy.
        if (this.inc === inc) this.ctx.errors.push(`${this.id} failed to set the cluster policy: ${String(err)}`)
      },
    )
  }

  /** Crash: timers, connections and un-flushed writes vanish; the store keeps what was durable. */
  crash(): void {
    if (this.inc === undefined) return
    this.lastDownAt = this.ctx.scheduler.now
    this.collectStats()
    this.kill(this.inc)
    this.ctx.trace.log(`${this.id} crashed`)
  }

  /** The process is gone, without a goodbye from the replica. */
  protected kill(inc: I): void {
    inc.clock.kill()
    inc.store.crash()
    this.dropConnections(inc)
    this.inc = undefined
    this.status = 'down'
  }

  /** Graceful close (pending pushes flushed); permanent = the node never returns. */
  leave(permanent: boolean): void {
    const inc = this.inc
    if (inc?.replica === undefined || this.status !== 'up') return
    this.status = 'stopping'
    this.lastDownAt = this.ctx.scheduler.now
    this.collectStats()
    this.leaving()
    this.ctx.trace.log(`${this.id} ${permanent ? 'leaves for good' : 'shuts down'}`)
    inc.replica.close().then(
      () => {
        inc.clock.kill()
        if (this.inc === inc) this.inc = undefined
        this.status = permanent ? 'left' : 'down'
      },
      (err: unknown) => this.ctx.errors.push(`${this.id} failed to close: ${String(err)}`),
    )
  }

  /** A graceful close has begun (the replica closes its own connections): nothing to do by default. */
  protected leaving(): void {}

  /** Adds this incarnation's replica counters to the run's totals (before it goes away). */
  collectStats(): void {
    const replica = this.inc?.replica
    if (replica === undefined) return
    const stats = replica.stats()
    addReplicaStats(this.ctx.totals, stats)
    this.ctx.cluster?.addStats(this.index, stats)
  }

  /** Counts the replica's warnings and errors in the run's totals, with a few samples. */
  private logger(): Logger {
    const t = this.ctx.totals
    return {
      warn: () => {
        t.warnings++
      },
      error: (message, fields) => {
        t.errors++
        const err = fields?.err
        if (t.errorSamples.length < 5) t.errorSamples.push(`${this.id}: ${message}${err instanceof Error ? `: ${err.message}` : ''}`)
      },
    }
  }
}
