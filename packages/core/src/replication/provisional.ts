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

interface Entry {
  users: number
  undo: () => void
  /** A switch of the default backend of a collection the application opened (not one made for the delta). */
  switched: boolean
  /** Resolves once the entry ends (kept or undone). */
  ended: Promise<void>
  end: () => void
}

export class ProvisionalCollections {
  private readonly held = new Map<string, Entry>()

  /**
   * A collection a delta just created (or, `switched`, whose default backend it just switched),
   * with how to undo that; held by that delta.
   */
  created(name: string, undo: () => void, switched = false): CollectionHold {
    let end!: () => void
    const ended = new Promise<void>((resolve) => (end = resolve))
    const entry: Entry = { users: 1, undo, switched, ended, end }
    // One still held here belongs to a collection since dropped (this one is new): nothing of it
    // is left to undo, and what waits for it must not wait for ever.
    this.held.get(name)?.end()
    this.held.set(name, entry)
    return this.releaseOf(name, entry)
  }

  /** The application drops the collection: nothing of it is left to undo; what waits for it goes on. */
  forget(name: string): void {
    this.end(name)
  }

  /** A delta for a collection that exists: held while it is applied, if the collection is still provisional. */
  hold(name: string): CollectionHold {
    const entry = this.held.get(name)
    if (entry === undefined) return NOTHING_HELD
    entry.users++
    return this.releaseOf(name, entry)
  }

  /**
   * The application opens the collection here: one a delta made is the application's now, never
   * undone. A switch of its default backend still waits for its delta's verdict (see settled) —
   * unless the application names the backend (`definite`): then it is the one the delta switched
   * to (any other is refused as a mismatch), and the application's choice, never undone either.
   */
  keep(name: string, definite = false): void {
    if (this.held.get(name)?.switched !== true || definite) this.end(name)
  }

  /**
   * While a delta that switched the collection's default backend is judged: resolves once it is
   * taken or undone (an application write waits for it, so it is never made with a backend that
   * is then switched back). Undefined otherwise.
   */
  settled(name: string): Promise<void> | undefined {
    const entry = this.held.get(name)
    return entry?.switched === true ? entry.ended : undefined
  }

  /** Whether a collection is still provisional (tests read it). */
  has(name: string): boolean {
    return this.held.has(name)
  }

  /** Ends the entry of `name`, if any: nothing undone, and what waits for it goes on. */
  private end(name: string): void {
    const entry = this.held.get(name)
    if (entry === undefined) return
    this.held.delete(name)
    entry.end()
  }

  private releaseOf(name: string, entry: Entry): CollectionHold {
    let released = false
    return (taken) => {
      if (released) return
      released = true
      // Kept or undone meanwhile (and maybe made again since, by another delta): not ours to end.
      if (this.held.get(name) !== entry) return
      if (!taken && --entry.users > 0) return
      this.held.delete(name)
      if (!taken) entry.undo()
      entry.end()
    }
  }
}
