import { nextTurn } from '../clock.js'
import { applyRemoteDelta, type ApplyResult } from './apply.js'
import type { ReplicationContext } from './context.js'

/** Deltas started per turn of the event loop. */
const SLICE = 128

/**
 * Applies the deltas of one message (a push, a sync chunk) — concurrently, so that each slice
 * of them shares one group commit, but a slice at a time: between slices the event loop gets
 * a turn (timers, I/O, other peers' messages), so a message of thousands of entries never
 * blocks the node for its whole length. Durability overlaps: a slice's batch is written
 * while the next slice is applied.
 */
export async function applyAll(
  ctx: ReplicationContext,
  peer: string,
  collection: string,
  backend: string,
  entries: readonly (readonly [string, Uint8Array])[],
): Promise<ApplyResult[]> {
  const pending: Promise<ApplyResult>[] = []
  for (let i = 0; i < entries.length; i += SLICE) {
    if (i > 0) await nextTurn(ctx.clock)
    for (let j = i; j < Math.min(entries.length, i + SLICE); j++) {
      const [id, delta] = entries[j]!
      pending.push(applyRemoteDelta(ctx, peer, collection, backend, id, delta))
    }
  }
  return Promise.all(pending)
}
