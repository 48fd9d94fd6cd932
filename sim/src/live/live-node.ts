import { join } from 'node:path'
import { Replica, type Collection, type Counter, type Logger, type Store } from '@convergent/core'
import { memoryLevelStore } from '@convergent/level'
import { createLibp2pNetwork } from '@convergent/libp2p'
import { watchRightsRequests } from '../counter-ledger.js'
import { addReplicaStats, type HostNode, type NodeStatus, type SimContext } from '../context.js'
import { FaultyNetwork } from './faulty-network.js'
import { GateStore } from './gate-store.js'
import type { LiveEnvironment } from './live-environment.js'
import { RealClock } from './real-clock.js'
import { countRpcs } from './rpc-counter.js'

interface Incarnation {
  readonly clock: RealClock
  readonly store: GateStore
  net: FaultyNetwork | undefined
  replica: Replica | undefined
  readonly collections: Map<string, Collection<Record<string, unknown>>>
  stock: Counter | undefined
}

/**
 * A live node: a real Replica over a real libp2p network (TCP on 127.0.0.1), a memory-level
 * store that survives crashes, and a peer id kept in an identity file so restarts keep it.
 */
export class LiveNode implements HostNode {
  status: NodeStatus = 'new'
  counter = 0
  skewMs = 0
  lastDownAt: number | undefined
  peerId: string | undefined
  onUp: ((node: HostNode) => void) | undefined
  private readonly store: Store = memoryLevelStore()
  private inc: Incarnation | undefined
  private incarnations = 0

  constructor(
    private readonly ctx: SimContext,
    private readonly env: LiveEnvironment,
    readonly index: number,
    readonly id: string,
  ) {}

  get isUp(): boolean {
    return this.status === 'up'
  }

  collection(name: string): Collection<Record<string, unknown>> | undefined {
    return this.status === 'up' ? this.inc?.collections.get(name) : undefined
  }

  stock(): Counter | undefined {
    return this.status === 'up' ? this.inc?.stock : undefined
  }

  start(): void {
    if (this.status !== 'new' && this.status !== 'down') return
    this.status = 'starting'
    const number = ++this.incarnations
    const rng = this.ctx.rng.fork(`live-${this.index}-${number}`)
    const inc: Incarnation = { clock: new RealClock(() => this.skewMs, () => rng.next()), store: new GateStore(this.store), net: undefined, replica: undefined, collections: new Map(), stock: undefined }
    this.inc = inc
    void this.open(inc, number).catch((err: unknown) => {
      this.ctx.errors.push(`${this.id} failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
      if (this.inc === inc) this.crash()
    })
  }

  private async open(inc: Incarnation, number: number): Promise<void> {
    const { scenario, metrics, scheduler, ledger, trace } = this.ctx
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
    const r = scenario.replica
    const replica = await Replica.open({
      store: inc.store,
      backends: this.ctx.backends,
      network: inc.net,
      clock: inc.clock,
      logger: this.logger(),
      syncIntervalMs: r.syncIntervalMs,
      syncOnConnect: r.syncOnConnect,
      cacheSize: r.cacheSize,
      compactAfter: r.compactAfter,
    })
    if (this.inc !== inc) return // crashed while opening
    inc.replica = replica
    for (const plan of this.ctx.collections) {
      const col = replica.collection<Record<string, unknown>>(plan.name, { backend: plan.backend })
      col.subscribe((ev) => ledger.observe(this.index, plan.name, ev.id, ev.value, scheduler.now))
      inc.collections.set(plan.name, col)
    }
    if (counterSpec.ids > 0) {
      const stock = replica.counter(counterSpec.name, { min: counterSpec.min, lowWater: counterSpec.lowWater })
      stock.subscribe((ev) => this.ctx.counterLedger.observe(this.index, ev.id, ev.value, scheduler.now, ev.origin))
      inc.stock = stock
    }
    this.peerId = inc.net.peerId
    this.env.started(this.index, libp2p)
    this.status = 'up'
    trace.log(number === 1 ? `${this.id} up (${libp2p.peerId})` : `${this.id} restarted (incarnation ${number})`)
    this.onUp?.(this)
  }

  crash(): void {
    const inc = this.inc
    if (inc === undefined) return
    this.lastDownAt = this.ctx.scheduler.now
    this.collectStats()
    inc.clock.kill()
    inc.store.crash()
    this.env.stopped(this.index)
    // The process is gone: its connections drop (libp2p stops without a goodbye from the replica).
    void Promise.resolve(inc.net?.inner.libp2p.stop()).catch(() => undefined)
    this.inc = undefined
    this.status = 'down'
    this.ctx.trace.log(`${this.id} crashed`)
  }

  leave(permanent: boolean): void {
    const inc = this.inc
    if (inc?.replica === undefined || this.status !== 'up') return
    this.status = 'stopping'
    this.lastDownAt = this.ctx.scheduler.now
    this.collectStats()
    this.env.stopped(this.index)
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

  collectStats(): void {
    const replica = this.inc?.replica
    if (replica === undefined) return
    addReplicaStats(this.ctx.totals, replica.stats())
  }

  async dispose(): Promise<void> {
    const inc = this.inc
    this.inc = undefined
    if (inc !== undefined) {
      inc.clock.kill()
      inc.store.crash()
      await Promise.resolve(inc.net?.inner.libp2p.stop()).catch(() => undefined)
    }
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
