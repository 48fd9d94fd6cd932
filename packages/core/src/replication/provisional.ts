/**
 * Collections a peer's delta created (or switched to its backend) before the delta was judged.
 * The receive path (apply.ts) may only learn after it made the collection that the delta is
 * refused or must wait (signed heads, counter rows): such a collection is kept once one delta
 * for it is taken, or once the application opens it here, and undone when every delta that
 * used it ended otherwise — so a refused delta leaves no collection, gossip subscription or
 * backend switch behind, and cannot fill the maxCollections slots.
 */

/** Ends one delta's use of a collection: taken (the collection stays) or not (undone if no other delta uses it). */
export type CollectionHold = (taken: boolean) => void

const NOTHING_HELD: CollectionHold = () => undefined

export class ProvisionalCollections {
  private readonly held = new Map<string, { users: number; undo: () => void }>()

  /** A collection a delta just created or switched, with how to undo that; held by that delta. */
  created(name: string, undo: () => void): CollectionHold {
    const entry = { users: 1, undo }
    this.held.set(name, entry)
    return this.releaseOf(name, entry)
  }

  /** A delta for a collection that exists: held while it is applied, if the collection is still provisional. */
  hold(name: string): CollectionHold {
    const entry = this.held.get(name)
    if (entry === undefined) return NOTHING_HELD
    entry.users++
    return this.releaseOf(name, entry)
  }

  /** The collection is the application's now (it opened it here): never undone. */
  keep(name: string): void {
    this.held.delete(name)
  }

  /** Whether a collection is still provisional (for tests and stats). */
  has(name: string): boolean {
    return this.held.has(name)
  }

  private releaseOf(name: string, entry: { users: number; undo: () => void }): CollectionHold {
    let released = false
    return (taken) => {
      if (released) return
      released = true
      // Kept or undone meanwhile (and maybe made again since, by another delta): not ours to end.
      if (this.held.get(name) !== entry) return
      if (taken) {
        this.held.delete(name)
        return
      }
      if (--entry.users > 0) return
      this.held.delete(name)
      entry.undo()
    }
  }
}
