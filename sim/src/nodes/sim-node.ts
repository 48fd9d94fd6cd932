import type { Store } from '@convergent/core'
import { memoryLevelStore } from '@convergent/level'
import { watchRightsRequests } from '../workload/counter-ledger.js'
import type { SimContext } from '../run/context.js'
import type { Fabric } from '../net/fabric.js'
import { SimNetwork } from '../net/sim-network.js'
import type { Prng } from '../engine/random.js'
import { ReplicaNode, type Incarnation } from './replica-node.js'
import type { NodeClock } from '../engine/scheduler.js'
import { MapStore } from './map-store.js'
import { SimStore } from './sim-store.js'

/** One life of a simulated node: from start to crash or close. */
interface SimIncarnation extends Incarnation {
  readonly number: number
  readonly clock: NodeClock
  readonly store: SimStore
  readonly net: SimNetwork
}

/**
 * A simulated node: a durable store that survives crashes, and successive incarnations of a
 * real Replica over it (each with its own clock, network endpoint and store view).
 */
export class SimNode extends ReplicaNode<SimIncarnation> {
  /** The node's durable data: kept across crashes, closed only at the end of the run. */
  readonly store: Store
  private readonly rng: Prng

  constructor(
    ctx: SimContext,
    private readonly fabric: Fabric,
    index: number,
    id: string,
  ) {
    super(ctx, index, id)
    this.rng = ctx.rng.fork(`node-${index}`)
    this.store = ctx.scenario.replica.store === 'map' ? new MapStore() : memoryLevelStore()
  }

  get network(): SimNetwork | undefined {
    return this.inc?.net
  }

  get peerId(): string {
    return this.fabric.idOf(this.index)
  }

  /** Opens a new incarnation over the node's store (real async work, tracked by Activity). */
  override start(): void {
    if (this.status !== 'new' && this.status !== 'down') return
    const { scheduler, activity, scenario } = this.ctx
    const fabric = this.fabric
    const number = ++this.incarnations
    const clock = scheduler.clockFor(this.rng.fork(`clock-${number}`), () => this.skewMs)
    const inc: SimIncarnation = {
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
    activity.track(this.openReplica(inc, inc.net)).then(
      (replica) => {
        if (this.inc !== inc) return // crashed while opening: the process is gone
        this.replicaOpened(inc, replica)
        this.status = 'up'
        this.ctx.trace.log(number === 1 ? `${this.id} up` : `${this.id} restarted (incarnation ${number})`)
        this.onUp?.(this)
      },
      (err: unknown) => {
        this.ctx.errors.push(`${this.id} failed to open: ${(err as Error).stack ?? String(err)}`)
        if (this.inc === inc) this.kill(inc)
      },
    )
  }

  protected override dropConnections(inc: SimIncarnation): void {
    inc.net.kill()
  }

  override async dispose(): Promise<void> {
    if (this.inc !== undefined) this.kill(this.inc)
    await this.store.close().catch(() => undefined)
  }
}
