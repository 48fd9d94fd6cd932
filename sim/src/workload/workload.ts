import { isConvergentError } from '@convergent/core'
import type { CollectionPlan, HostNode, SimContext } from '../run/context.js'
import { ZipfSampler, type Prng } from '../engine/random.js'

/** Entity ids: e0, e1, … (e0 is the most popular under zipf). */
export function entityId(i: number): string {
  return `e${i}`
}

/**
 * The update stream: at Poisson (or evenly spaced) instants, a live writer node updates one
 * entity of one collection (chosen by backend weight, then by popularity). Each update sets
 * the writer's own register to its next counter value, plus filler — see ledger.ts for why
 * that makes "no acknowledged write lost" checkable.
 */
export class Workload {
  private readonly rng: Prng
  private readonly popularity: ZipfSampler
  private stopped = false
  issued = 0
  acked = 0
  failed = 0
  skipped = 0
  /** Writes whose promise never settled (their node crashed first). */
  get unacknowledged(): number {
    return this.issued - this.acked - this.failed
  }

  constructor(private readonly ctx: SimContext) {
    this.rng = ctx.rng.fork('workload')
    const w = ctx.scenario.workload
    this.popularity = new ZipfSampler(w.entities, w.popularity.kind === 'zipf' ? w.popularity.s : 0)
  }

  /** Node 0 creates every entity (empty), so later writers can update them. */
  scheduleSeed(): void {
    const w = this.ctx.scenario.workload
    this.ctx.scheduler.at(w.seedAtMs, () => {
      const node = this.ctx.nodes[0]!
      for (const plan of this.ctx.collections) {
        const col = node.collection(plan.name)
        if (col === undefined) {
          this.ctx.errors.push('node 0 is not up at seedAtMs: the entities were not created')
          return
        }
        for (let i = 0; i < w.entities; i++) {
          col.put(entityId(i), {}).catch((err: unknown) => this.ctx.errors.push(`seeding ${entityId(i)} failed: ${String(err)}`))
        }
      }
      this.ctx.trace.log(`node 0 created ${w.entities} entities in each of ${this.ctx.collections.length} collection(s)`)
    })
  }

  start(): void {
    const w = this.ctx.scenario.workload
    if (w.ratePerSec <= 0) return
    const stopAt = w.stopMs ?? this.ctx.scenario.durationMs
    const mean = 1000 / w.ratePerSec
    // Fractional times are kept and rounded per event, so the rate is exact on average.
    let t = w.startMs
    const step = (): void => {
      if (this.stopped) return
      this.writeOne()
      t += w.arrival === 'poisson' ? this.rng.exponential(mean) : mean
      if (t < stopAt) this.ctx.scheduler.at(t, step)
    }
    this.ctx.scheduler.at(t, step)
  }

  stop(): void {
    this.stopped = true
  }

  private writeOne(): void {
    const w = this.ctx.scenario.workload
    const writers = this.ctx.nodes.filter((n) => n.isUp && (w.writers === 'all' || n.index < w.writers))
    // Draw every choice even when no one can write, so the streams stay aligned across runs.
    const pickWriter = this.rng.next()
    const plan = this.pickCollection()
    const entity = entityId(this.popularity.sample(this.rng))
    if (writers.length === 0) return
    const node = writers[Math.floor(pickWriter * writers.length)]!
    this.write(node, plan, entity)
  }

  private pickCollection(): CollectionPlan {
    const plans = this.ctx.collections
    const total = plans.reduce((a, p) => a + p.weight, 0)
    let u = this.rng.next() * total
    for (const p of plans) {
      u -= p.weight
      if (u < 0) return p
    }
    return plans[plans.length - 1]!
  }

  private write(node: HostNode, plan: CollectionPlan, entity: string): void {
    const col = node.collection(plan.name)
    if (col === undefined) return
    const { ledger, scheduler } = this.ctx
    const n = ++node.counter
    const writer = node.index
    const { payloadBytes, nested } = this.ctx.scenario.workload.value
    const pad = payloadBytes > 0 ? filler(payloadBytes, n) : undefined
    const record = ledger.issue(writer, plan.name, entity, n, scheduler.now)
    this.issued++
    col
      .update(entity, (draft) => {
        if (nested) draft[`w${writer}`] = pad === undefined ? { n } : { n, p: pad }
        else {
          draft[`n${writer}`] = n
          if (pad !== undefined) draft[`p${writer}`] = pad
        }
      })
      .then(
        () => {
          this.acked++
          ledger.ack(record, scheduler.now)
        },
        (err: unknown) => {
          this.failed++
          const code = isConvergentError(err) ? err.code : 'ERR_UNKNOWN'
          if (code === 'ERR_NOT_FOUND') this.skipped++
          ledger.fail(record, code)
        },
      )
  }
}

/** Printable filler that differs per write (so every write changes the bytes). */
function filler(bytes: number, n: number): string {
  const base = n.toString(36)
  return base.repeat(Math.ceil(bytes / base.length)).slice(0, bytes)
}
