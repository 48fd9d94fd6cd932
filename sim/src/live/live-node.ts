import { join } from 'node:path'
import type { Store } from '@convergent/core'
import { memoryLevelStore } from '@convergent/level'
import { createLibp2pNetwork } from '@convergent/libp2p'
import { watchRightsRequests } from '../workload/counter-ledger.js'
import type { SimContext } from '../run/context.js'
import { CrashableStore } from '../nodes/crashable-store.js'
import { ReplicaNode, type Incarnation } from '../nodes/replica-node.js'
import { FaultyNetwork } from './faulty-network.js'
import { RealClock } from './real-clock.js'
import { countRpcs } from './rpc-counter.js'
import type { LiveHost } from './types.js'

/** One life of a live node: from start to crash or close. */
interface LiveIncarnation extends Incarnation {
  readonly clock: RealClock
  readonly store: CrashableStore
  net: FaultyNetwork | undefined
}

/**
 * A live node: a real Replica over a real libp2p network (TCP on 127.0.0.1), a memory-level
 * store that survives crashes, and a peer id kept in an identity file so restarts keep it.
 */
export class LiveNode extends ReplicaNode<LiveIncarnation> {
  peerId: string | undefined
  private readonly store: Store = memoryLevelStore()

  constructor(
    ctx: SimContext,
    private readonly env: LiveHost,
    index: number,
    id: string,
  ) {
    super(ctx, index, id)
  }

  override start(): void {
    if (this.status !== 'new' && this.status !== 'down') return
    this.status = 'starting'
    const number = ++this.incarnations
    const rng = this.ctx.rng.fork(`live-${this.index}-${number}`)
    const inc: LiveIncarnation = {
      clock: new RealClock(
        () => this.skewMs,
        () => rng.next(),
      ),
      store: new CrashableStore(this.store),
      net: undefined,
      replica: undefined,
      collections: new Map(),
      stock: undefined,
    }
    this.inc = inc
    void this.open(inc, number).catch((err: unknown) => {
      this.ctx.errors.push(`${this.id} failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
      if (this.inc === inc) this.crash()
    })
  }

  private async open(inc: LiveIncarnation, number: number): Promise<void> {
    const { scenario, metrics, trace } = this.ctx
    const libp2p = await createLibp2pNetwork({
      listen: ['/ip4/127.0.0.1/tcp/0'],
      identityFile: join(this.env.dir, `${this.id}.key`),
      connectionGater: this.env.gaterFor(this.index),
      requestTimeoutMs: scenario.network.requestTimeoutMs,
      clock: inc.clock,
    })
    countRpcs(libp2p, metrics)
    inc.net = new FaultyNetwork(libp2p, this.env.link, inc.clock, metrics, scenario.network.retransmitMs)
    const counterSpec = scenario.workload.counter
    if (counterSpec.ids > 0) watchRightsRequests(inc.net, this.ctx.counterLedger.rightsRequests)
    if (this.inc !== inc) return void (await libp2p.stop().catch(() => undefined))
    const replica = await this.openReplica(inc, inc.net)
    if (this.inc !== inc) return // crashed while opening
    this.replicaOpened(inc, replica)
    this.peerId = inc.net.peerId
    this.env.started(this.index, libp2p)
    this.status = 'up'
    trace.log(number === 1 ? `${this.id} up (${libp2p.peerId})` : `${this.id} restarted (incarnation ${number})`)
    this.onUp?.(this)
  }

  /** The process is gone: its connections drop (libp2p stops without a goodbye from the replica). */
  protected override dropConnections(inc: LiveIncarnation): void {
    this.env.stopped(this.index)
    void Promise.resolve(inc.net?.inner.libp2p.stop()).catch(() => undefined)
  }

  protected override leaving(): void {
    this.env.stopped(this.index)
  }

  override async dispose(): Promise<void> {
    const inc = this.inc
    this.inc = undefined
    if (inc !== undefined) {
      inc.clock.kill()
      inc.store.crash()
      await Promise.resolve(inc.net?.inner.libp2p.stop()).catch(() => undefined)
    }
    await this.store.close().catch(() => undefined)
  }
}
