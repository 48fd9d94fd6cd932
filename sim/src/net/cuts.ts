// Which links the fault schedule has cut: a partition into groups, isolated nodes, and a
// flapping cut between groups that is only in force while it is "down". The simulated fabric
// and the live (libp2p) environment share it, so both read the same schedule the same way.

export class Cuts {
  private groupOf: Map<number, number> | undefined
  private readonly isolated = new Set<number>()
  /** A flapping cut between groups, applied only while `flapDown`. */
  private flapGroupOf: Map<number, number> | undefined
  private flapDown = false

  partition(groups: number[][]): void {
    this.groupOf = groupIndex(groups)
  }

  isolate(node: number): void {
    this.isolated.add(node)
  }

  /** Lifts every partition, isolation and flapping cut. */
  heal(): void {
    this.groupOf = undefined
    this.isolated.clear()
    this.flapGroupOf = undefined
    this.flapDown = false
  }

  setFlap(groups: number[][] | undefined, down: boolean): void {
    this.flapGroupOf = groups === undefined ? undefined : groupIndex(groups)
    this.flapDown = down
  }

  /** True when no partition, isolation or flapping cut is in force. */
  get whole(): boolean {
    return this.groupOf === undefined && this.isolated.size === 0 && !(this.flapDown && this.flapGroupOf !== undefined)
  }

  allowed(a: number, b: number): boolean {
    if (this.isolated.has(a) || this.isolated.has(b)) return false
    return !separates(this.groupOf, a, b) && !(this.flapDown && separates(this.flapGroupOf, a, b))
  }
}

function groupIndex(groups: number[][]): Map<number, number> {
  const index = new Map<number, number>()
  for (const [g, members] of groups.entries()) for (const m of members) index.set(m, g)
  return index
}

/** Nodes not named in any group are not cut off by it. */
function separates(groups: Map<number, number> | undefined, a: number, b: number): boolean {
  if (groups === undefined) return false
  const ga = groups.get(a)
  const gb = groups.get(b)
  return ga !== undefined && gb !== undefined && ga !== gb
}
