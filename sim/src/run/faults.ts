import type { PartitionEpisode } from '../checks/checkers.js'
import type { SimContext } from './context.js'
import type { Prng } from '../engine/random.js'
import { resolveGroups, type FaultEvent } from './scenario.js'

/**
 * Applies the scenario's fault schedule at its virtual times, and records every fault as an
 * interval in the trace (for the timeline, the healthy-write filter and convergence times).
 */
export class FaultInjector {
  private readonly rng: Prng
  /** Flapping and churn loops check this so healAtEnd can stop them. */
  private ended = false
  /** Partitions that healed, with who was live then (for the groups-converge invariant). */
  readonly episodes: PartitionEpisode[] = []
  private openPartition: { groups: number[][]; from: number } | undefined

  constructor(private readonly ctx: SimContext) {
    this.rng = ctx.rng.fork('faults')
  }

  schedule(faults: FaultEvent[]): void {
    for (const f of faults) this.ctx.scheduler.at(f.at, () => this.apply(f))
  }

  private apply(f: FaultEvent): void {
    const { control, trace, nodes } = this.ctx
    const initial = this.ctx.scenario.nodes
    switch (f.type) {
      case 'partition': {
        const groups = resolveGroups(f, initial)
        this.endEpisode()
        control.partition(groups)
        this.openPartition = { groups, from: this.ctx.scheduler.now }
        trace.open('partition', groups.map((g) => describeGroup(g)).join(' | '))
        break
      }
      case 'isolate':
        control.isolate(f.node)
        trace.open('isolate', nodes[f.node]!.id)
        break
      case 'heal':
        this.endEpisode()
        control.heal()
        trace.log('heal: every partition, isolation and flapping cut lifted')
        trace.close(['partition', 'isolate', 'flap'])
        break
      case 'flap':
        this.flap(resolveGroups(f, initial), f.periodMs, f.untilMs)
        break
      case 'crash': {
        const node = nodes[f.node]!
        if (node.status === 'up' || node.status === 'starting') {
          node.crash()
          trace.open('crash', node.id)
        }
        break
      }
      case 'restart': {
        const node = nodes[f.node]!
        if (node.status === 'down') {
          node.start()
          trace.close(['crash', 'down'], node.id)
        }
        break
      }
      case 'leave': {
        const node = nodes[f.node]!
        node.leave(true)
        trace.instant('leave', node.id)
        break
      }
      case 'join':
        for (let i = 0; i < f.count; i++) trace.instant('join', this.ctx.addNode().id)
        break
      case 'churn':
        trace.open('churn', `until ${f.untilMs} ms`)
        this.churn(f)
        break
      case 'skew': {
        const node = nodes[f.node]!
        node.skewMs = f.offsetMs
        trace.log(`${node.id} clock skewed by ${f.offsetMs} ms`)
        break
      }
      case 'network':
        control.setLinkParams(f.set)
        trace.log(`link conditions changed: ${JSON.stringify(f.set)}`)
        break
    }
  }

  private endEpisode(): void {
    if (this.openPartition === undefined) return
    const live = this.ctx.nodes.filter((n) => n.isUp).map((n) => n.index)
    this.episodes.push({ ...this.openPartition, to: this.ctx.scheduler.now, live })
    this.openPartition = undefined
  }

  /** The links between the groups go down and up every periodMs until untilMs. */
  private flap(groups: number[][], periodMs: number, untilMs: number): void {
    const { control, trace, scheduler } = this.ctx
    trace.open('flap', groups.map((g) => describeGroup(g)).join(' ⇄ '))
    let down = false
    const toggle = (): void => {
      if (this.ended) return
      if (scheduler.now >= untilMs) {
        control.setFlap(undefined, false)
        trace.close(['flap'])
        return
      }
      down = !down
      control.setFlap(groups, down)
      scheduler.after(periodMs, toggle)
    }
    toggle()
  }

  /** Nodes go away (crash or graceful) and come back, or are replaced by fresh nodes. */
  private churn(f: Extract<FaultEvent, { type: 'churn' }>): void {
    const { scheduler, trace } = this.ctx
    const step = (): void => {
      if (this.ended || scheduler.now >= f.untilMs) {
        trace.close(['churn'])
        return
      }
      // Node 0 stays: it seeded the entities and anchors the checks of a run.
      const candidates = this.ctx.nodes.filter((n) => n.isUp && n.index !== 0)
      const crash = this.rng.chance(f.crashFraction)
      const replace = this.rng.chance(f.replaceFraction)
      const downFor = this.rng.uniform(f.downMs[0], f.downMs[1])
      if (candidates.length > 0) {
        const node = this.rng.pick(candidates)
        if (replace) {
          if (crash) node.crash()
          else node.leave(true)
          node.status = crash ? 'left' : node.status // a crashed node that never returns has left
          trace.instant('leave', node.id)
          trace.instant('join', this.ctx.addNode().id)
        } else {
          if (crash) node.crash()
          else node.leave(false)
          trace.open('down', node.id)
          scheduler.after(downFor, () => {
            if (this.ended) return
            if (node.status === 'down') {
              node.start()
              trace.close(['down'], node.id)
            } else if (node.status === 'stopping') {
              // Still closing: try again shortly.
              scheduler.after(100, () => {
                if (!this.ended && node.status === 'down') {
                  node.start()
                  trace.close(['down'], node.id)
                }
              })
            }
          })
        }
      }
      scheduler.after(this.rng.exponential(f.intervalMs), step)
    }
    step()
  }

  /** At the end of the run: lift every cut, restart every node that is down (not left), stop loops. */
  healAll(): void {
    const { control, trace, nodes } = this.ctx
    this.ended = true
    this.endEpisode()
    control.heal()
    trace.log('end of faults: network healed, crashed nodes restarted')
    trace.close()
    // Nodes still shutting down come back once their close has finished.
    const restartDown = (tries: number): void => {
      for (const node of nodes) if (node.status === 'down') node.start()
      if (tries > 0 && nodes.some((n) => n.status === 'stopping')) this.ctx.scheduler.after(100, () => restartDown(tries - 1))
    }
    restartDown(50)
  }
}

function describeGroup(g: number[]): string {
  if (g.length === 0) return '{}'
  const contiguous = g.every((v, i) => i === 0 || v === g[i - 1]! + 1)
  return contiguous && g.length > 2 ? `n${g[0]}…n${g[g.length - 1]}` : g.map((i) => `n${i}`).join(',')
}
