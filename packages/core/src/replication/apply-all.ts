import type { SignedBy } from '../trust/signed-push.js'
import { nextTurn, type Clock } from '../clock.js'
import { applyRemoteDelta, type ApplyResult } from './apply.js'
import type { VerifiedHead } from '../trust/signed-heads.js'
import type { ReplicationContext } from './context.js'

/** Deltas started per turn of the event loop, over every message being applied. */
const PER_TURN = 64

/**
 * Paces remote applies across the whole replica: at most PER_TURN deltas are started per turn
 * of the event loop, whatever number of messages they came in — fifty pushes of 1,024 deltas
 * that arrive in one read would otherwise all start their first slice in the same turn.
 */
export class ApplyPacer {
  private used = 0
  private turn: Promise<void> | undefined

  constructor(private readonly clock: Clock) {}

  /** Resolves when `n` more deltas may start in the current turn. */
  async take(n: number): Promise<void> {
    while (this.used > 0 && this.used + n > PER_TURN) await this.next()
    this.used += n
    void this.next() // the count starts over on the next turn
  }

  private next(): Promise<void> {
    this.turn ??= nextTurn(this.clock).then(() => {
      this.turn = undefined
      this.used = 0
    })
    return this.turn
  }
}

/**
 * Applies the deltas of one message (a push, a sync chunk) — concurrently, so that each slice
 * shares one group commit, but paced (ApplyPacer): between slices the event loop gets a turn
 * (timers, I/O, other peers' messages), so no message, and no flood of them, blocks the node
 * for long. Durability overlaps: a slice's batch is written while the next is applied.
 */
export async function applyAll(
  ctx: ReplicationContext,
  peer: string,
  collection: string,
  backend: string,
  entries: readonly (readonly [string, Uint8Array])[],
  /** The origin's commit time the message carried (a push), for replication lag. */
  originTime?: number,
  /** A signed push's verified author and proof (the sender only relays it). */
  signed?: SignedBy,
  /** Per entry, the author's heads the push carried, checked (receiver.ts). */
  heads?: readonly (ReadonlyMap<string, VerifiedHead> | undefined)[],
): Promise<ApplyResult[]> {
  const pending: Promise<ApplyResult>[] = []
  for (let i = 0; i < entries.length; i += PER_TURN) {
    const end = Math.min(entries.length, i + PER_TURN)
    await ctx.pacer.take(end - i)
    for (let j = i; j < end; j++) {
      const [id, delta] = entries[j]!
      pending.push(applyRemoteDelta(ctx, peer, collection, backend, id, delta, originTime, signed, heads?.[j]))
    }
  }
  return Promise.all(pending)
}
