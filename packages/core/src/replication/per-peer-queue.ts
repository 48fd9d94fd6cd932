/**
 * Runs tasks one at a time per peer, in arrival order; different peers' tasks do not wait for
 * each other. A peer's entry is removed once its last task settles, so the map holds only peers
 * with work in flight.
 */
export class PerPeerQueue {
  private readonly tails = new Map<string, Promise<unknown>>()

  run<T>(peer: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(peer) ?? Promise.resolve()
    const result = previous.then(task, task)
    const tail = result.then(
      () => undefined,
      () => undefined,
    )
    this.tails.set(peer, tail)
    void tail.then(() => {
      if (this.tails.get(peer) === tail) this.tails.delete(peer)
    })
    return result
  }
}
