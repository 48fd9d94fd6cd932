import type { HostNode, SimContext } from './context.js'
import type { Environment, EnvironmentParts } from './environment.js'
import { Fabric } from '../net/fabric.js'
import { SimNode } from '../nodes/sim-node.js'
import type { Prng } from '../engine/random.js'
import type { RunOptions } from '../engine/scheduler.js'
import { wireInitial, wireJoiner } from '../net/topology.js'

/** The simulator: SimNodes over a Fabric, in virtual time. */
export class SimEnvironment implements Environment {
  readonly mode = 'simulated' as const
  readonly virtualDateNow = true
  readonly control: Fabric
  private readonly topologyRng: Prng

  constructor(private readonly parts: EnvironmentParts) {
    this.control = new Fabric(parts.scheduler, structuredClone(parts.scenario.network), parts.metrics, parts.rng.fork('network'))
    this.topologyRng = parts.rng.fork('topology')
  }

  createNode(ctx: SimContext, index: number): HostNode {
    const fabricIndex = this.control.addNode(`n${index}`)
    if (fabricIndex !== index) throw new Error(`node index mismatch: ${fabricIndex} ≠ ${index}`)
    return new SimNode(ctx, this.control, index, `n${index}`)
  }

  wireInitial(nodes: number[]): void {
    wireInitial(this.control, nodes, this.parts.scenario.network.connections, this.topologyRng)
  }

  wireJoiner(node: number, candidates: number[]): void {
    wireJoiner(this.control, node, candidates, this.parts.scenario.network.connections, this.topologyRng)
  }

  /** Opening takes no virtual time: the runner drained it already. */
  async nodesStarted(): Promise<void> {}

  advance(until: number, options: RunOptions): Promise<void> {
    return this.parts.scheduler.runUntil(until, options)
  }

  async dispose(): Promise<void> {}
}
