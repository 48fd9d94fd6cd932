import type { WriteRecord } from '../workload/ledger.js'
import type { TargetResult } from './report.js'
import type { Scenario } from '../run/scenario.js'
import type { summarize } from './stats.js'

/**
 * When each acknowledged write had reached every final live replica that existed when it was
 * issued (its completion), and per heal how long after it the writes acknowledged before it
 * took to complete.
 */
export function healConvergence(heals: { at: number; kind: string; live: number[] }[], writes: WriteRecord[], finalLive: Set<number>) {
  const completion = new Map<number, number>()
  for (const w of writes) {
    if (Number.isNaN(w.ackedAt)) continue
    let last = w.ackedAt
    let complete = true
    for (const t of finalLive) {
      if (t >= w.arrivals.length) continue
      const at = w.arrivals[t]!
      if (Number.isNaN(at)) {
        complete = false
        break
      }
      if (at > last) last = at
    }
    if (complete) completion.set(w.idx, last)
  }
  // Per heal: the replicas live then and at the end; when had they all shown every write acknowledged before it?
  const afterEachHeal = heals.map((h) => {
    const targets = h.live.filter((n) => finalLive.has(n))
    let worst = 0
    let unknown = false
    for (const w of writes) {
      if (Number.isNaN(w.ackedAt) || w.ackedAt > h.at) continue
      for (const t of targets) {
        if (t >= w.arrivals.length) continue
        const at = w.arrivals[t]!
        if (Number.isNaN(at)) unknown = true
        else if (at > h.at) worst = Math.max(worst, at - h.at)
      }
    }
    return { atMs: h.at, kind: h.kind, convergedAfterMs: unknown ? null : worst }
  })
  return { afterEachHeal, completion }
}

export function evaluateTargets(
  scenario: Scenario,
  measured: { msgsPerUpdate: number | null; latency: ReturnType<typeof summarize>; wallMs: number },
): TargetResult[] {
  const t = scenario.targets
  const out: TargetResult[] = []
  const add = (name: string, limit: number | undefined, value: number | null): void => {
    if (limit === undefined) return
    out.push({ name, limit, value, met: value !== null && value < limit })
  }
  add('messages per update', t.msgsPerUpdate, measured.msgsPerUpdate)
  add(`median propagation latency (${t.latencyOf ?? 'healthy'} writes), ms`, t.medianPropagationMs, measured.latency.median)
  add(`p99 propagation latency (${t.latencyOf ?? 'healthy'} writes), ms`, t.p99PropagationMs, measured.latency.p99)
  add(`max propagation latency (${t.latencyOf ?? 'healthy'} writes), ms`, t.maxPropagationMs, measured.latency.max)
  add('wall-clock time, ms', t.wallMs, Math.round(measured.wallMs))
  return out
}

/**
 * Propagation latency of each acknowledged write: from update() to its completion (the last
 * final replica showing it). `affected` marks writes near a fault (not "healthy"). Also a
 * sample of at most 2,000 [issue time, latency] points for the timeline.
 */
export function propagation(acked: WriteRecord[], completion: Map<number, number>, affected: (w: WriteRecord) => boolean) {
  const allLatencies: number[] = []
  const healthyLatencies: number[] = []
  const latencySamples: [number, number][] = []
  for (const w of acked) {
    const c = completion.get(w.idx)
    if (c === undefined) continue
    const latency = c - w.issuedAt
    allLatencies.push(latency)
    if (!affected(w)) healthyLatencies.push(latency)
  }
  const stride = Math.max(1, Math.ceil(acked.length / 2000))
  for (let i = 0; i < acked.length; i += stride) {
    const c = completion.get(acked[i]!.idx)
    if (c !== undefined) latencySamples.push([acked[i]!.issuedAt, c - acked[i]!.issuedAt])
  }
  return { allLatencies, healthyLatencies, latencySamples, incomplete: acked.length - allLatencies.length }
}
