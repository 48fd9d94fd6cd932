import { Replica, type Collection, type Counter, type Logger, type Store } from '@convergent/core'
import { memoryLevelStore } from '@convergent/level'
import { watchRightsRequests } from './counter-ledger.js'
import { addReplicaStats, type HostNode, type NodeStatus, type SimContext } from './context.js'
import type { Fabric } from './net/fabric.js'
import { SimNetwork } from './net/sim-network.js'
import type { Prng } from './random.js'
import type { NodeClock } from './scheduler.js'
import { MapStore } from './map-store.js'
import { SimStore } from './sim-store.js'

/** One life of a node: from start to crash or close. */
interface Incarnation {
  readonly number: number
  readonly clock: NodeClock
  readonly store: SimStore
  readonly net: SimNetwork
  replica: Replica | undefined
  readonly collections: Map<string, Collection<Record<string, unknown>>>
  stock: Counter | undefined
}

/**
 * A simulated node: a durable store that survives crashes, and successive incarnations of a
 * real Replica over it (each with its own clock, network endpoint and store view).
 */
export class SimNode implements HostNode {
  /** The node's durable data: kept across crashes, closed only at the end of the run. */
  readonly store: Store
  status: NodeStatus = 'new'
  /** Clock offset of this node (clock skew). */
  skewMs = 0
  /** The workload's counter for this node's registers: survives crashes. */
  counter = 0
  /** Virtual time this node last crashed or shut down. */
  lastDownAt: number | undefined
  private inc: Incarnation | undefined
  private incarnations = 0
  private readonly rng: Prng
  /** Called once each incarnation is open. */
  onUp: ((node: HostNode) => void) | undefined

  constructor(
    private readonly ctx: SimContext,
    private readonly fabric: Fabric,
    readonly index: number,
    readonly id: string,
  ) {
    this.rng = ctx.rng.fork(`node-${index}`)
    this.store = ctx.scenario.replica.store === 'map' ? new MapStore() : memoryLevelStore()
  }

  get isUp(): boolean {
    return this.status === 'up'
  }

  get replica(): Replica | undefined {
    return this.inc?.replica
  }

  get network(): SimNetwork | undefined {
    return this.inc?.net
  }

  collection(name: string): Collection<Record<string, unknown>> | undefined {
    return this.status === 'up' ? this.inc?.collections.get(name) : undefined
  }

  stock(): Counter | undefined {
    return this.status === 'up' ? this.inc?.stock : undefined
  }

  get peerId(): string {
    return this.fabric.idOf(this.index)
  }

  /** Opens a new incarnation over the node's store (real async work, tracked by Activity). */
  start(): void {
    if (this.status !== 'new' && this.status !== 'down') return
    const { scheduler, activity, scenario } = this.ctx
    const fabric = this.fabric
    const number = ++this.incarnations
    const clock = scheduler.clockFor(this.rng.fork(`clock-${number}`), () => this.skewMs)
    const inc: Incarnation = {
      number,
      clock,
      store: new SimStore(this.store, activity, scheduler, scenario.replica.writeLatencyMs),
      net: new SimNetwork(fabric, this.index, clock, this.rng.fork(`net-${number}`)),
      replica: undefined,
      collections: new Map(),
      stock: undefined,
    }
    const counterSpec = scenario.workload.counter
    if (counterSpec.ids > 0) watchRightsRequests(inc.net, this.ctx.counterLedger.rightsRequests)
    this.inc = inc
    this.status = 'starting'
    const r = scenario.replica
    const opening = Replica.open({
      store: inc.store,
      backends: this.ctx.backends,
      network: inc.net,
      clock,
      logger: this.logger(),
      syncIntervalMs: r.syncIntervalMs,
      syncOnConnect: r.syncOnConnect,
      cacheSize: r.cacheSize,
      compactAfter: r.compactAfter,
    })
    activity.track(opening).then(
      (replica) => {
        if (this.inc !== inc) return // crashed while opening: the process is gone
        inc.replica = replica
        for (const plan of this.ctx.collections) {
          const col = replica.collection<Record<string, unknown>>(plan.name, { backend: plan.backend })
          col.subscribe((ev) => this.ctx.ledger.observe(this.index, plan.name, ev.id, ev.value, scheduler.now))
          inc.collections.set(plan.name, col)
        }
        if (counterSpec.ids > 0) {
          const stock = replica.counter(counterSpec.name, { min: counterSpec.min, lowWater: counterSpec.lowWater })
          stock.subscribe((ev) => this.ctx.counterLedger.observe(this.index, ev.id, ev.value, scheduler.now, ev.origin))
          inc.stock = stock
        }
        this.status = 'up'
        this.ctx.trace.log(number === 1 ? `${this.id} up` : `${this.id} restarted (incarnation ${number})`)
        this.onUp?.(this)
      },
      (err: unknown) => {
        this.ctx.errors.push(`${this.id} failed to open: ${(err as Error).stack ?? String(err)}`)
        if (this.inc === inc) this.kill()
      },
    )
  }

  /** Crash: timers, connections and un-flushed writes vanish; the store keeps what was durable. */
  crash(): void {
    if (this.inc === undefined) return
    this.lastDownAt = this.ctx.scheduler.now
    this.collectStats()
    this.kill()
    this.ctx.trace.log(`${this.id} crashed`)
  }

  private kill(): void {
    const inc = this.inc!
    inc.clock.kill()
    inc.store.crash()
    inc.net.kill()
    this.inc = undefined
    this.status = 'down'
  }

  /** Graceful close (pending pushes flushed); permanent = the node never returns. */
  leave(permanent: boolean): void {
    const inc = this.inc
    if (inc === undefined || this.status !== 'up') return
    this.status = 'stopping'
    this.lastDownAt = this.ctx.scheduler.now
    this.collectStats()
    this.ctx.trace.log(`${this.id} ${permanent ? 'leaves for good' : 'shuts down'}`)
    inc.replica!.close().then(
      () => {
        inc.clock.kill()
        if (this.inc === inc) this.inc = undefined
        this.status = permanent ? 'left' : 'down'
      },
      (err: unknown) => this.ctx.errors.push(`${this.id} failed to close: ${String(err)}`),
    )
  }

  /** Adds this incarnation's replica counters to the run's totals (before it goes away). */
  collectStats(): void {
    const replica = this.inc?.replica
    if (replica === undefined) return
    addReplicaStats(this.ctx.totals, replica.stats())
  }

  async dispose(): Promise<void> {
    if (this.inc !== undefined) this.kill()
    await this.store.close().catch(() => undefined)
  }

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
