import type { Store } from '../store.js'
import { proofKey } from './signed-push.js'

/** Proof keys remembered per kind below: beyond that many the oldest go (a push's proof may then be written again, harmlessly). */
const MAX_REMEMBERED = 4096

/**
 * What this replica knows of signed pushes, by proof key (`proof/<collection> NUL <id>`), so
 * that no push is checked or applied twice and none is skipped that still has to be:
 *
 * - admitted: a push that passed its check (true), or the verdict of the check under way —
 *   copies arriving meanwhile wait for it instead of being checked and applied again;
 * - written: proofs written, or in a tick being written (a push's deltas may commit over
 *   several ticks; its proof, up to ~1 MB, is written once); a failed tick takes its own back;
 * - incomplete: pushes some of whose deltas failed to be written: their replays must be checked
 *   and applied again although their proof is stored.
 *
 * Everything is bounded in memory; the stored proofs keep the replay rule beyond it (stored()).
 */
export class PushProofs {
  private readonly admitted = new Map<string, true | Promise<boolean>>()
  private readonly written = new Set<string>()
  private readonly incomplete = new Set<string>()

  constructor(private readonly store: Store) {}

  /** What is known of a signed push: admitted (true), being checked (its verdict), or nothing. */
  admission(collection: string, proofId: string): true | Promise<boolean> | undefined {
    return this.admitted.get(proofKey(collection, proofId))
  }

  /**
   * Starts the check of a signed push: copies arriving meanwhile wait for its verdict. Call
   * `passed()` once it passed (or was found stored), `refused()` otherwise (copies then check
   * themselves: a forged copy must not shadow the genuine push).
   */
  begin(collection: string, proofId: string): { passed(): void; refused(): void } {
    const key = proofKey(collection, proofId)
    let settle!: (ok: boolean) => void
    const verdict = new Promise<boolean>((resolve) => (settle = resolve))
    if (!this.admitted.has(key) && this.admitted.size >= MAX_REMEMBERED) {
      const oldest = this.admitted.keys().next()
      if (oldest.done !== true) this.admitted.delete(oldest.value)
    }
    this.admitted.set(key, verdict)
    return {
      passed: () => {
        if (this.admitted.has(key)) this.admitted.set(key, true) // (not if a drop forgot it meanwhile)
        settle(true)
      },
      refused: () => {
        if (this.admitted.get(key) === verdict) this.admitted.delete(key)
        settle(false)
      },
    }
  }

  /**
   * Whether the push's proof is stored (or on its way): a replay is then a duplicate — unless
   * the push is incomplete. Remembered ones first; else one point read (a damaged record counts
   * as not stored: the push is checked and its proof written again).
   */
  async stored(collection: string, proofId: string): Promise<boolean> {
    const key = proofKey(collection, proofId)
    if (this.incomplete.has(key)) return false
    if (this.written.has(key)) return true
    try {
      return (await this.store.getMeta(key)) !== undefined
    } catch {
      return false
    }
  }

  /** Some of the push's deltas did not reach the store (a failed write): a replay is checked and applied again. */
  failed(collection: string, proofId: string): void {
    const key = proofKey(collection, proofId)
    if (this.admitted.get(key) === true) this.admitted.delete(key)
    if (this.incomplete.size >= MAX_REMEMBERED) this.incomplete.clear()
    this.incomplete.add(key)
  }

  /** All of the push's deltas reached the store (or were held already): its replays are duplicates again. */
  complete(collection: string, proofId: string): void {
    if (this.incomplete.size > 0) this.incomplete.delete(proofKey(collection, proofId))
  }

  /** True the first time a proof key is to be written (the caller writes it); false while it is written or being written. */
  claimWrite(key: string): boolean {
    if (this.written.has(key)) return false
    if (this.written.size >= MAX_REMEMBERED) this.written.clear()
    this.written.add(key)
    return true
  }

  /** The tick that was to write these proofs failed: they are not written. */
  unclaim(keys: Iterable<string>): void {
    for (const key of keys) this.written.delete(key)
  }

  /** Forgets a dropped collection's pushes (their proofs were deleted with it). */
  forgetCollection(collection: string): void {
    const prefix = proofKey(collection, '')
    for (const key of this.written) if (key.startsWith(prefix)) this.written.delete(key)
    for (const key of this.admitted.keys()) if (key.startsWith(prefix)) this.admitted.delete(key)
    for (const key of this.incomplete) if (key.startsWith(prefix)) this.incomplete.delete(key)
  }
}
