import { isConvergentError } from '@convergent/core'
import type { CounterFinalPass } from '../checks/checkers.js'
import type { CounterOp, OpTally, RightsRequestStats } from './counter-ledger.js'
import type { HostNode, SimContext } from '../run/context.js'
import type { Prng } from '../engine/random.js'
import type { CounterWorkloadSpec } from '../run/scenario.js'
import { summarize, type Summary } from '../report/stats.js'

/** Counter ids: sku0, sku1, … */
export function counterId(i: number): string {
  return `sku${i}`
}

export function counterIds(spec: CounterWorkloadSpec): string[] {
  return Array.from({ length: spec.ids }, (_, i) => counterId(i))
}

/**
 * The stock workload (scenario `workload.counter`): restockers add stock, every node sells,
 * rights move between nodes. Three independent Poisson streams (increments, decrements,
 * transfers), each with its own random stream; every choice is drawn even when no node can act,
 * so the streams stay aligned across runs. Every operation goes to the CounterLedger with how
 * it ended.
 */
export class CounterWorkload {
  private readonly spec: CounterWorkloadSpec
  private readonly ids: string[]
  private readonly incRng: Prng
  private readonly decRng: Prng
  private readonly transferRng: Prng
  private stopped = false

  constructor(private readonly ctx: SimContext) {
    this.spec = ctx.scenario.workload.counter
    this.ids = counterIds(this.spec)
    const rng = ctx.rng.fork('counter')
    this.incRng = rng.fork('increments')
    this.decRng = rng.fork('decrements')
    this.transferRng = rng.fork('transfers')
  }

  /** At seedAtMs the restockers add the initial stock of every id, split evenly among them. */
  scheduleSeed(): void {
    const { spec } = this
    if (spec.initial <= 0) return
    this.ctx.scheduler.at(this.ctx.scenario.workload.seedAtMs, () => {
      for (let r = 0; r < spec.restockers; r++) {
        const share = Math.floor(spec.initial / spec.restockers) + (r < spec.initial % spec.restockers ? 1 : 0)
        if (share <= 0) continue
        const node = this.ctx.nodes[r]!
        if (node.stock() === undefined) {
          this.ctx.errors.push(`restocker ${node.id} is not up at seedAtMs: the initial stock was not added`)
          continue
        }
        for (const id of this.ids) this.increment(node, id, share, true)
      }
      this.ctx.trace.log(`the restockers added ${spec.initial} to each of ${spec.ids} counter(s) '${spec.name}'`)
    })
  }

  start(): void {
    const w = this.ctx.scenario.workload
    const stopAt = w.stopMs ?? this.ctx.scenario.durationMs
    const stream = (rate: number, rng: Prng, act: () => void): void => {
      if (rate <= 0) return
      const mean = 1000 / rate
      let t = w.startMs + rng.exponential(mean)
      const step = (): void => {
        if (this.stopped) return
        act()
        t += rng.exponential(mean)
        if (t < stopAt) this.ctx.scheduler.at(t, step)
      }
      if (t < stopAt) this.ctx.scheduler.at(t, step)
    }
    stream(this.spec.incrementRate, this.incRng, () => this.restockOne())
    stream(this.spec.decrementRate, this.decRng, () => this.sellOne())
    stream(this.spec.transferRate, this.transferRng, () => this.transferOne())
  }

  stop(): void {
    this.stopped = true
  }

  private live(filter: (n: HostNode) => boolean = () => true): HostNode[] {
    return this.ctx.nodes.filter((n) => n.stock() !== undefined && filter(n))
  }

  private restockOne(): void {
    const rng = this.incRng
    const pick = rng.next()
    const id = this.ids[rng.int(this.ids.length)]!
    const n = 1 + rng.int(this.spec.maxIncrement)
    const nodes = this.live((node) => node.index < this.spec.restockers)
    if (nodes.length === 0) return
    this.increment(nodes[Math.floor(pick * nodes.length)]!, id, n, false)
  }

  private sellOne(): void {
    const rng = this.decRng
    const pick = rng.next()
    const id = this.ids[rng.int(this.ids.length)]!
    const n = 1 + rng.int(this.spec.maxDecrement)
    const nodes = this.live()
    if (nodes.length === 0) return
    const node = nodes[Math.floor(pick * nodes.length)]!
    const op = this.ctx.counterLedger.issue('decrement', node.index, id, n, this.ctx.scheduler.now)
    this.settle(op, node.stock()!.decrement(id, n, this.spec.waitMs > 0 ? { waitMs: this.spec.waitMs } : {}))
  }

  private transferOne(): void {
    const rng = this.transferRng
    const pickFrom = rng.next()
    const pickTo = rng.next()
    const id = this.ids[rng.int(this.ids.length)]!
    const n = 1 + rng.int(this.spec.maxTransfer)
    const nodes = this.live()
    if (nodes.length < 2) return
    const from = nodes[Math.floor(pickFrom * nodes.length)]!
    const others = nodes.filter((x) => x !== from && x.peerId !== undefined)
    if (others.length === 0) return
    const to = others[Math.floor(pickTo * others.length)]!
    const stock = from.stock()!
    const { counterLedger, scheduler, errors } = this.ctx
    // Give what it holds, up to n (a transfer beyond it would only be rejected).
    stock.rights(id).then(
      (have) => {
        if (have <= 0) {
          counterLedger.transfersSkipped++
          return
        }
        const amount = Math.min(n, have)
        const op = counterLedger.issue('transfer', from.index, id, amount, scheduler.now, { to: to.index })
        this.settle(op, stock.transfer(id, to.peerId!, amount))
      },
      (err: unknown) => {
        if (!(isConvergentError(err) && err.code === 'ERR_CLOSED')) errors.push(`reading ${from.id}'s rights on ${id} failed: ${String(err)}`)
      },
    )
  }

  private increment(node: HostNode, id: string, n: number, initial: boolean): void {
    const op = this.ctx.counterLedger.issue('increment', node.index, id, n, this.ctx.scheduler.now, { initial })
    this.settle(op, node.stock()!.increment(id, n))
  }

  private settle(op: CounterOp, p: Promise<unknown>): void {
    const { counterLedger, scheduler } = this.ctx
    p.then(
      () => counterLedger.ack(op, scheduler.now),
      (err: unknown) => counterLedger.fail(op, isConvergentError(err) ? err.code : 'ERR_UNKNOWN', scheduler.now),
    )
  }
}

/** report.json's `counter` section: what the counter workload did and what the replicas showed. */
export interface CounterReport {
  name: string
  ids: number
  min: number
  initialPerId: number
  increments: { issued: number; acknowledged: number; amountAcknowledged: number; failed: number; neverSettled: number }
  /** Sales: accepted (promise resolved), rejected for lack of rights (ERR_INSUFFICIENT_RIGHTS), failed otherwise, never settled (node crashed). */
  decrements: {
    issued: number
    accepted: number
    amountAccepted: number
    rejected: number
    failed: number
    neverSettled: number
    failureCodes: Record<string, number>
    /** Per replica (the node that sold): accepted and rejected decrements. */
    byReplica: Record<string, { accepted: number; rejected: number }>
  }
  /** Issue → promise settled, in virtual ms (includes waiting for rights from peers). */
  decrementLatencyMs: { accepted: Summary; rejected: Summary }
  transfers: Omit<OpTally, 'failureCodes'> & { skippedNoRights: number }
  rightsRequests: RightsRequestStats
  /** Lowest value a replica ever showed (over every id): per replica, per id, overall. */
  lowestValueSeen: { overall: number | null; byReplica: Record<string, number | null>; byId: Record<string, number> }
  valuesObserved: { localEvents: number; remoteEvents: number; samples: number; finalReads: number }
  /** Below-min values seen, and holders seen with negative rights (both must be 0). */
  violations: { belowMin: number; negativeRights: number }
  /** Per id: the value every live replica shows at the end (null if they differ), and what the ledger says it must be. */
  final: Record<string, { value: number | null; expected: number; expectedLow: number; expectedHigh: number; ackedIncrements: number; ackedDecrements: number }>
  /** From quiescence until every live replica showed the expected values (±100 ms); null = never. */
  agreedAfterQuiescenceMs: number | null
}

export function counterReport(ctx: SimContext, pass: CounterFinalPass, agreedAfterMs: number | null): CounterReport {
  const spec = ctx.scenario.workload.counter
  const l = ctx.counterLedger
  const inc = l.tally('increment')
  const dec = l.tally('decrement')
  const tr = l.tally('transfer')
  const latency = (outcome: CounterOp['outcome']): Summary =>
    summarize(l.ops.filter((op) => op.kind === 'decrement' && op.outcome === outcome).map((op) => op.settledAt - op.issuedAt))
  const byNode = l.lowestByNode()
  const known = byNode.filter((v): v is number => v !== null)
  const final: CounterReport['final'] = {}
  for (const [id, e] of pass.expected) {
    const shown = new Set(pass.replicas.map((r) => r.values[id]))
    final[id] = {
      value: shown.size === 1 ? [...shown][0]! : null,
      expected: e.exact,
      expectedLow: e.low,
      expectedHigh: e.high,
      ackedIncrements: e.ackedIncrements,
      ackedDecrements: e.ackedDecrements,
    }
  }
  return {
    name: spec.name,
    ids: spec.ids,
    min: spec.min,
    initialPerId: spec.initial,
    increments: {
      issued: inc.issued,
      acknowledged: inc.acknowledged,
      amountAcknowledged: inc.amountAcknowledged,
      failed: inc.failed,
      neverSettled: inc.neverSettled,
    },
    decrements: {
      issued: dec.issued,
      accepted: dec.acknowledged,
      amountAccepted: dec.amountAcknowledged,
      rejected: dec.rejected,
      failed: dec.failed,
      neverSettled: dec.neverSettled,
      failureCodes: dec.failureCodes,
      byReplica: Object.fromEntries(
        ctx.nodes.map((node) => {
          const mine = l.ops.filter((op) => op.kind === 'decrement' && op.node === node.index)
          return [
            node.id,
            { accepted: mine.filter((op) => op.outcome === 'acknowledged').length, rejected: mine.filter((op) => op.outcome === 'rejected').length },
          ]
        }),
      ),
    },
    decrementLatencyMs: { accepted: latency('acknowledged'), rejected: latency('rejected') },
    transfers: {
      issued: tr.issued,
      acknowledged: tr.acknowledged,
      amountAcknowledged: tr.amountAcknowledged,
      rejected: tr.rejected,
      failed: tr.failed,
      neverSettled: tr.neverSettled,
      skippedNoRights: l.transfersSkipped,
    },
    rightsRequests: { ...l.rightsRequests },
    lowestValueSeen: {
      overall: known.length === 0 ? null : Math.min(...known),
      byReplica: Object.fromEntries(byNode.map((v, i) => [ctx.nodes[i]!.id, v])),
      byId: Object.fromEntries([...l.lowestById()].sort((a, b) => (a[0] < b[0] ? -1 : 1))),
    },
    valuesObserved: { localEvents: l.observed.local, remoteEvents: l.observed.remote, samples: l.observed.sample, finalReads: l.observed.final },
    violations: { belowMin: l.violationCount, negativeRights: l.rightsViolationCount },
    final,
    agreedAfterQuiescenceMs: agreedAfterMs,
  }
}
