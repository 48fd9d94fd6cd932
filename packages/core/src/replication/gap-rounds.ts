/** Entities noted per peer while a round with it runs; more are not noted (the scheduled round brings them). */
const MAX_NOTED = 1_000

/**
 * What a replica does about gaps in gossip (receiver.ts, PushOutcome: a push taken with changes
 * left waiting for ones this replica lacks — a push before it was lost, or too large to push).
 * With no round with the sender running, one starts soon (roundSoon: at most one a second per
 * peer). While one runs, it may well bring what is missing: the entities are noted, and once it
 * ended, a round starts only if one of them still waits. (Queued behind a running round on every
 * gap of a hot entity, rounds made a hot, lossy cluster slower, not faster; dropped, a gap found
 * while a round ran that had passed the entity waited for the next scheduled round.)
 */
export class GapRounds {
  /** Per peer, the entities (collection → ids) whose gaps came while a round with it ran. */
  private readonly noted = new Map<string, { entities: Map<string, Set<string>>; count: number }>()

  constructor(
    private readonly deps: {
      /** The round with the peer running or queued (settles once it ended; never rejects), if any. */
      roundRunning(peer: string): Promise<unknown> | undefined
      roundSoon(peer: string): void
      holdsWaiting(collection: string, id: string): boolean
    },
  ) {}

  /** A push from `peer` left changes waiting in these entities of `collection`. */
  found(peer: string, collection: string, ids: readonly string[]): void {
    const running = this.deps.roundRunning(peer)
    if (running === undefined) return this.deps.roundSoon(peer)
    let noted = this.noted.get(peer)
    if (noted === undefined) {
      const mine = (noted = { entities: new Map<string, Set<string>>(), count: 0 })
      this.noted.set(peer, mine)
      void running.then(() => {
        if (this.noted.get(peer) !== mine) return // forgotten meanwhile (the peer went away)
        this.noted.delete(peer)
        if (this.stillWaiting(mine.entities)) this.deps.roundSoon(peer)
      })
    }
    let ofCollection = noted.entities.get(collection)
    if (ofCollection === undefined) noted.entities.set(collection, (ofCollection = new Set()))
    for (const id of ids) {
      if (noted.count >= MAX_NOTED) break
      if (!ofCollection.has(id)) {
        ofCollection.add(id)
        noted.count++
      }
    }
  }

  /** The peer went away: nothing noted for it is followed up. */
  forget(peer: string): void {
    this.noted.delete(peer)
  }

  private stillWaiting(entities: Map<string, Set<string>>): boolean {
    for (const [collection, ids] of entities) for (const id of ids) if (this.deps.holdsWaiting(collection, id)) return true
    return false
  }
}
