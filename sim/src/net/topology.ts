import type { Prng } from '../engine/random.js'
import type { ConnectionsSpec } from '../run/scenario.js'

/** Who wants a connection with whom (the simulator's Fabric, the live environment). */
export interface Wiring {
  want(a: number, b: number): void
  wantedOf(a: number): ReadonlySet<number>
}

/**
 * Which nodes dial which: everyone ('full'), or a random connected graph where every node has
 * at least `degree` links (a ring for connectivity, then random chords) — like bootstrap lists.
 */
export function wireInitial(fabric: Wiring, nodes: number[], spec: ConnectionsSpec, rng: Prng): void {
  if (spec.kind === 'full' || nodes.length <= spec.degree + 1) {
    for (const a of nodes) for (const b of nodes) if (a < b) fabric.want(a, b)
    return
  }
  const n = nodes.length
  for (let i = 0; i < n; i++) fabric.want(nodes[i]!, nodes[(i + 1) % n]!)
  const order = rng.shuffle(nodes.slice())
  for (const a of order) {
    let attempts = 0
    while (fabric.wantedOf(a).size < spec.degree && attempts++ < 20 * spec.degree) {
      const b = nodes[rng.int(n)]!
      if (b === a || fabric.wantedOf(b).has(a) || fabric.wantedOf(b).size >= spec.degree + 2) continue
      fabric.want(a, b)
    }
  }
}

/** A node joining later dials everyone ('full') or `degree` random nodes still around. */
export function wireJoiner(fabric: Wiring, node: number, candidates: number[], spec: ConnectionsSpec, rng: Prng): void {
  const others = candidates.filter((c) => c !== node)
  const chosen = spec.kind === 'full' ? others : rng.sample(others, spec.degree)
  for (const b of chosen) fabric.want(node, b)
}
