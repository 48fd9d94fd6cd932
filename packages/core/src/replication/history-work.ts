import type { DeltaWork } from '../backend.js'
import type { PeerBudget } from '../peer-budget.js'

/** The budget key of what a peer may have read for changes it relays but did not write (HistoryWork). */
export function relayedBy(peer: string): string {
  return `${peer}${RELAYED}`
}

const RELAYED = '\0relayed'

/**
 * What judging one delta may read of an entity's history (DeltaLimits.work), charged per
 * author: the reads for a change go to the writer a verified head names as its actor's owner
 * (ownerOf), else to `charged` (a push's author, or the peer that sent the delta).
 *
 * With `relayed` (anti-entropy in a cluster: relayedBy(sender)), what the sender vouches for
 * and did not write is charged to that account of the sender's instead — its own changes'
 * account stays its own: changes of unbound actors (review2-history-reads HOLE 10), and
 * another author's changes once that author has nothing left, so that a member who keeps its
 * own minute spent cannot keep out the honest changes relayed with its own or built on them
 * (HOLE 11). A member's reads thus never spend an honest relay's minute for its own changes
 * (review-history-reads HOLE 4); at most a relay's minute for what it relays.
 */
export class HistoryWork implements DeltaWork {
  /** Unused: every change is charged to an account (accountOf). */
  readonly allowed = 0
  done = 0
  /** Set by the backend: the delta was refused for the budget alone. */
  exhausted?: boolean
  private readonly accounts = new Map<string, DeltaWork>()

  constructor(
    private readonly budget: PeerBudget,
    private readonly now: number,
    private readonly charged: string,
    /** The owner of an actor (hex) where a verified head names it, and it may be charged. */
    private readonly ownerOf: (actor: string) => string | undefined,
    private readonly relayed?: string,
  ) {}

  accountOf(actor: string): DeltaWork {
    const owner = this.ownerOf(actor)
    if (owner === undefined) return this.account(this.relayed ?? this.charged)
    const own = this.account(owner)
    // The sender's own changes never fall back to its relay account (no second minute).
    if (own.done < own.allowed || this.relayed === undefined || owner === this.charged) return own
    return this.account(this.relayed)
  }

  private account(key: string): DeltaWork {
    let account = this.accounts.get(key)
    if (account === undefined) {
      account = { allowed: this.budget.left(key, this.now), done: 0 }
      this.accounts.set(key, account)
    }
    return account
  }

  /** What settle() took, by budget key. */
  private readonly taken = new Map<string, number>()

  /** Takes what each account read from its budget (the counts start again at 0). */
  settle(): void {
    for (const [key, account] of this.accounts) {
      if (account.done === 0) continue
      this.budget.take(key, this.now, account.done)
      this.taken.set(key, (this.taken.get(key) ?? 0) + account.done)
      account.done = 0
    }
  }

  /**
   * The delta was not taken (refused, or left to come again): what its authors were charged is
   * the sender's to pay, on the account it was charged on for what it vouches for — else a member
   * could send an honest author's genuine change again and again ahead of a change of its own
   * that is refused, each time at that author's cost (review3-history-reads HOLE 1). Call after
   * settle(), with the time now when an await came in between (the counter guard's): taken at the
   * time the work was made, a window of the sender's begun meanwhile would be taken for a clock set
   * back and started afresh, its count and debt forgotten (review4-history-reads HOLE 2).
   */
  refused(now = this.now, blamed?: string): void {
    // `blamed`: the author of the change refused, where a verified head names it: it pays for
    // the whole delta instead, so that an honest relay that took that change does not pay for
    // it at every round here (review4-history-reads HOLE 4).
    const payer = blamed ?? this.relayed ?? this.charged
    for (const [key, amount] of this.taken) {
      if (key === payer || (blamed === undefined && key === this.charged)) continue
      this.budget.refund(key, amount, this.now)
      this.budget.take(payer, now, amount)
    }
    this.taken.clear()
  }

  /** Who ran out judging the delta (the charged peer if none says so), for messages. */
  short(): string[] {
    const out = [...this.accounts].filter(([, a]) => a.exhausted === true).map(([key]) => key)
    return (out.length > 0 ? out : [this.charged]).map((key) => (key.endsWith(RELAYED) ? `${key.slice(0, -RELAYED.length)} (for what it relays)` : key))
  }
}
