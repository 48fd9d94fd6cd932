import { setImmediate as nextMacrotask } from 'node:timers/promises'

/**
 * Real asynchronous work in flight. The replicas under test await real promises — memory-level
 * completes a batch on later turns of the event loop and group commit waits a setImmediate —
 * so between two virtual instants the scheduler lets the real event loop run until every
 * tracked operation has settled. Work takes zero virtual time; the order in which it finishes
 * is fixed by the order it was started (no I/O, no real timers), so runs stay deterministic.
 *
 * Only operations that finish without virtual time passing may be tracked (store calls,
 * Replica.open); tracking anything that waits on a virtual timer would never drain.
 */
export class Activity {
  private outstanding = 0
  /** Event-loop turns spent draining, for the report. */
  turns = 0

  get pending(): number {
    return this.outstanding
  }

  track<T>(promise: Promise<T>): Promise<T> {
    this.outstanding++
    return promise.finally(() => {
      this.outstanding--
    })
  }

  /**
   * Runs the real event loop until nothing tracked is pending. One macrotask turn always
   * passes, so every microtask queued by the virtual events just run has run too.
   */
  async drain(): Promise<void> {
    let spins = 0
    do {
      await nextMacrotask()
      this.turns++
      if (++spins > 1_000_000) throw new Error(`real async work did not settle: ${this.outstanding} operation(s) still pending`)
    } while (this.outstanding > 0)
  }
}
