import type { DeltaWork } from '../backend.js'
import type { PeerBudget } from '../peer-budget.js'

/**
 * What judging one delta may read of an entity's history (DeltaLimits.work), charged per
 * author: the reads for a change go to the peer a verified head names as its actor's owner,
 * else to `charged` (a push's author, or the peer that sent the delta — it vouches for unbound
 * actors' changes). So a relay pays for its own changes and those it vouches for, never for
 * another writer's (review-history-reads HOLE 4: a member's inserts on old bases, relayed by an
 * honest peer, spent that peer's minute at every other replica).
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
    /** The owner of an actor (hex) where a verified head names it. */
    private readonly ownerOf: (actor: string) => string | undefined,
  ) {}

  accountOf(actor: string): DeltaWork {
    const peer = this.ownerOf(actor) ?? this.charged
    let account = this.accounts.get(peer)
    if (account === undefined) {
      account = { allowed: this.budget.left(peer, this.now), done: 0 }
      this.accounts.set(peer, account)
    }
    return account
  }

  /** Takes what each account read from its peer's budget (once: the counts start again at 0). */
  settle(): void {
    for (const [peer, account] of this.accounts) {
      if (account.done > 0) this.budget.take(peer, this.now, account.done)
      account.done = 0
    }
  }

  /** The peers whose allowance ran out judging the delta (the charged one if none says so). */
  short(): string[] {
    const out = [...this.accounts].filter(([, a]) => a.exhausted === true).map(([peer]) => peer)
    return out.length > 0 ? out : [this.charged]
  }
}
