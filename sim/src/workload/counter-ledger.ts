import { type Network } from '@convergent/core'
import { decodeMessage, MessageType } from '@convergent/core/internal'

/**
 * The bounded-counter ledger: every operation the counter workload issued and how it ended,
 * every value a replica showed (on each `counter.subscribe()` event, local or remote, and at
 * each sampling step through `counter.inspect()`), and the rights requests that crossed the
 * network.
 *
 * What the checks rely on. An operation is *acknowledged* when its promise resolved: the change
 * is durable on its replica, so it must be part of every replica's final value. A decrement
 * rejected with ERR_INSUFFICIENT_RIGHTS changed nothing (the check and the write are one atomic
 * read-modify-write). An operation whose promise never settled (its node crashed first) or
 * failed otherwise may or may not have survived: the final value may include it or not, so
 * it widens the range the final value must lie in, and nothing more.
 */
export type CounterOpKind = 'increment' | 'decrement' | 'transfer'

export interface CounterOp {
  readonly idx: number
  readonly kind: CounterOpKind
  readonly node: number
  readonly id: string
  readonly n: number
  /** Transfers: the receiving node. */
  readonly to: number | undefined
  /** The initial stock added at seedAtMs. */
  readonly initial: boolean
  readonly issuedAt: number
  /** NaN until the promise settled. */
  settledAt: number
  outcome: 'pending' | 'acknowledged' | 'rejected' | 'failed'
  /** Error code of a rejected or failed operation. */
  code: string | undefined
}

export interface CounterViolation {
  at: number
  node: number
  id: string
  /** Where the value was seen: a local or remote subscribe() event, or a sampling read. */
  source: 'local' | 'remote' | 'sample' | 'final'
  value: number
}

export interface RightsViolation {
  at: number
  node: number
  id: string
  holder: string
  rights: number
  source: 'sample' | 'final'
}

/** Rights requests (decrements short of rights asking a peer), counted on the requester's side. */
export interface RightsRequestStats {
  sent: number
  answered: number
  /** Timed out, peer gone, connection reset… */
  failed: number
  /** Answers granting nothing (the peer had no spare rights). */
  emptyAnswers: number
  /** Rights granted in all answers. */
  rightsGranted: number
}

const MAX_KEPT = 50

/** Counts of one kind of counter operation by outcome, and the amount acknowledged. */
export interface OpTally {
  issued: number
  acknowledged: number
  amountAcknowledged: number
  rejected: number
  failed: number
  neverSettled: number
  failureCodes: Record<string, number>
}

export class CounterLedger {
  readonly ops: CounterOp[] = []
  /** Per node: id → lowest value it ever showed. */
  private readonly lowest: Map<string, number>[] = []
  /** Per node: values seen (events + samples). */
  private readonly seenCount: number[] = []
  readonly violations: CounterViolation[] = []
  violationCount = 0
  readonly rightsViolations: RightsViolation[] = []
  rightsViolationCount = 0
  /** Observations by source. */
  readonly observed = { local: 0, remote: 0, sample: 0, final: 0 }
  readonly rightsRequests: RightsRequestStats = { sent: 0, answered: 0, failed: 0, emptyAnswers: 0, rightsGranted: 0 }
  /** Transfers not attempted because the chosen node held no rights. */
  transfersSkipped = 0

  constructor(readonly min: number) {}

  addNode(): void {
    this.lowest.push(new Map())
    this.seenCount.push(0)
  }

  issue(kind: CounterOpKind, node: number, id: string, n: number, now: number, extra: { to?: number; initial?: boolean } = {}): CounterOp {
    const op: CounterOp = {
      idx: this.ops.length,
      kind,
      node,
      id,
      n,
      to: extra.to,
      initial: extra.initial ?? false,
      issuedAt: now,
      settledAt: NaN,
      outcome: 'pending',
      code: undefined,
    }
    this.ops.push(op)
    return op
  }

  ack(op: CounterOp, now: number): void {
    op.settledAt = now
    op.outcome = 'acknowledged'
  }

  /** ERR_INSUFFICIENT_RIGHTS: nothing was written. Any other code: the write may or may not have happened. */
  fail(op: CounterOp, code: string, now: number): void {
    op.settledAt = now
    op.code = code
    op.outcome = code === 'ERR_INSUFFICIENT_RIGHTS' ? 'rejected' : 'failed'
  }

  /** A value node showed for id (a subscribe() event, a sampling read or the final read). */
  observe(node: number, id: string, value: number, now: number, source: CounterViolation['source']): void {
    this.observed[source]++
    this.seenCount[node]!++
    const mine = this.lowest[node]!
    const prev = mine.get(id)
    if (prev === undefined || value < prev) mine.set(id, value)
    if (!(value >= this.min)) {
      this.violationCount++
      if (this.violations.length < MAX_KEPT) this.violations.push({ at: now, node, id, source, value })
    }
  }

  /** Every holder's rights as node shows them: none may be negative (it would have spent rights it did not hold). */
  observeRights(node: number, id: string, rights: Record<string, number>, now: number, source: RightsViolation['source']): void {
    for (const [holder, r] of Object.entries(rights)) {
      if (r >= 0) continue
      this.rightsViolationCount++
      if (this.rightsViolations.length < MAX_KEPT) this.rightsViolations.push({ at: now, node, id, holder, rights: r, source })
    }
  }

  /** Lowest value each node ever showed (over every id); null = it showed none. */
  lowestByNode(): (number | null)[] {
    return this.lowest.map((m) => (m.size === 0 ? null : Math.min(...m.values())))
  }

  /** Lowest value any node showed, per id. */
  lowestById(): Map<string, number> {
    const out = new Map<string, number>()
    for (const m of this.lowest) for (const [id, v] of m) out.set(id, Math.min(v, out.get(id) ?? Infinity))
    return out
  }

  /**
   * Per id, what the final value must be: min + acknowledged increments − acknowledged
   * decrements exactly, widened by operations whose outcome is unknown (never settled, or
   * failed with an error other than ERR_INSUFFICIENT_RIGHTS).
   */
  expected(
    ids: string[],
  ): Map<
    string,
    { exact: number; low: number; high: number; ackedIncrements: number; ackedDecrements: number; uncertainIncrements: number; uncertainDecrements: number }
  > {
    const out = new Map(
      ids.map((id) => [
        id,
        { exact: this.min, low: this.min, high: this.min, ackedIncrements: 0, ackedDecrements: 0, uncertainIncrements: 0, uncertainDecrements: 0 },
      ]),
    )
    for (const op of this.ops) {
      if (op.kind === 'transfer' || op.outcome === 'rejected') continue
      const e = out.get(op.id)
      if (e === undefined) continue
      const sure = op.outcome === 'acknowledged'
      if (op.kind === 'increment') {
        if (sure) e.ackedIncrements += op.n
        else e.uncertainIncrements += op.n
      } else if (sure) e.ackedDecrements += op.n
      else e.uncertainDecrements += op.n
    }
    for (const e of out.values()) {
      e.exact = this.min + e.ackedIncrements - e.ackedDecrements
      // (never below min: that is counter-never-below-min's to catch)
      e.low = Math.max(this.min, e.exact - e.uncertainDecrements)
      e.high = e.exact + e.uncertainIncrements
    }
    return out
  }

  /** Operation counts by kind and outcome, and amounts. */
  tally(kind: CounterOpKind): OpTally {
    const t = { issued: 0, acknowledged: 0, amountAcknowledged: 0, rejected: 0, failed: 0, neverSettled: 0, failureCodes: {} as Record<string, number> }
    for (const op of this.ops) {
      if (op.kind !== kind) continue
      t.issued++
      if (op.outcome === 'acknowledged') {
        t.acknowledged++
        t.amountAcknowledged += op.n
      } else if (op.outcome === 'rejected') t.rejected++
      else if (op.outcome === 'failed') {
        t.failed++
        t.failureCodes[op.code!] = (t.failureCodes[op.code!] ?? 0) + 1
      } else t.neverSettled++
    }
    return t
  }
}

/**
 * Counts the rights requests a node sends (and what they bring back) by watching its
 * Network's request() — the bytes are core's wire messages; nothing is changed.
 */
export function watchRightsRequests(net: Pick<Network, 'request'>, stats: RightsRequestStats): void {
  const inner = net.request.bind(net)
  net.request = async (peer, data, options) => {
    if (data[2] !== MessageType.RightsRequest) return inner(peer, data, options)
    stats.sent++
    let reply: Uint8Array
    try {
      reply = await inner(peer, data, options)
    } catch (err) {
      stats.failed++
      throw err
    }
    stats.answered++
    try {
      const body = decodeMessage(reply, Number.MAX_SAFE_INTEGER).body as { g?: unknown }
      if (typeof body.g === 'number' && body.g > 0) stats.rightsGranted += body.g
      else stats.emptyAnswers++
    } catch {
      // Not ours to judge: the replica reports a malformed answer itself.
    }
    return reply
  }
}
