import type { HostNode, SimContext } from '../run/context.js'
import type { CounterLedger } from '../workload/counter-ledger.js'
import type { WriteRecord } from '../workload/ledger.js'
import { registerKey } from '../workload/ledger.js'
import { readNodeState } from './node-state.js'

export interface CheckResult {
  name: string
  ok: boolean
  summary: string
  details?: unknown
}

/** What the final read of every live replica found. */
export interface FinalPass {
  at: number
  digests: { node: string; digest: string; entities: number }[]
  distinctStates: number
  /** Latest acknowledged writes some live replica does not show. */
  missing: { write: WriteRecord; missingAt: string[]; shownBy: number }[]
  /** …of which only a node that left for good ever held them (not a replication failure). */
  departedOnly: number
}

/** Reads every live replica once: state digests, and each register against its latest acknowledged write. */
export async function finalPass(ctx: SimContext, live: HostNode[]): Promise<FinalPass> {
  const maxima = ctx.ledger.ackedMaxima()
  const digests: FinalPass['digests'] = []
  const missingAt = new Map<string, string[]>()
  for (const node of live) {
    const state = await readNodeState(node, ctx.collections)
    digests.push({ node: node.id, digest: state.digest, entities: state.entities })
    for (const [key, { n, write }] of maxima) {
      const shown = state.registers.get(`${write.collection}\u0000${write.entity}`)?.get(write.writer) ?? 0
      if (shown < n) {
        const list = missingAt.get(key)
        if (list === undefined) missingAt.set(key, [node.id])
        else list.push(node.id)
      }
    }
  }
  const missing: FinalPass['missing'] = []
  let departedOnly = 0
  for (const [key, nodes] of missingAt) {
    const { write } = maxima.get(key)!
    const writerLeft = ctx.nodes[write.writer]!.status === 'left'
    if (writerLeft && nodes.length === live.length) {
      departedOnly++
      continue
    }
    missing.push({ write, missingAt: nodes, shownBy: live.length - nodes.length })
  }
  return { at: ctx.scheduler.now, digests, distinctStates: new Set(digests.map((d) => d.digest)).size, missing, departedOnly }
}

export function convergenceCheck(pass: FinalPass, convergedAfterMs: number | undefined): CheckResult {
  if (pass.distinctStates <= 1) {
    return {
      name: 'convergence',
      ok: true,
      summary: `all ${pass.digests.length} live replicas show the same state (digest ${pass.digests[0]?.digest ?? '-'}, ${pass.digests[0]?.entities ?? 0} entities)${
        convergedAfterMs === undefined ? '' : `, ${convergedAfterMs} ms after the workload stopped and the faults ended`
      }`,
    }
  }
  const groups = new Map<string, string[]>()
  for (const d of pass.digests) {
    const g = groups.get(d.digest)
    if (g === undefined) groups.set(d.digest, [d.node])
    else g.push(d.node)
  }
  return {
    name: 'convergence',
    ok: false,
    summary: `${pass.distinctStates} different states among ${pass.digests.length} live replicas after the settle period`,
    details: Object.fromEntries(
      [...groups].map(([digest, nodes]) => [digest, nodes.length > 12 ? [...nodes.slice(0, 12), `… ${nodes.length - 12} more`] : nodes]),
    ),
  }
}

export function ackedWritesCheck(ctx: SimContext, pass: FinalPass): CheckResult {
  const acked = ctx.ledger.writes.filter((w) => !Number.isNaN(w.ackedAt)).length
  const note = pass.departedOnly > 0 ? `; ${pass.departedOnly} register(s) whose latest write only ever lived on a node that left for good (not counted)` : ''
  if (pass.missing.length === 0) {
    return {
      name: 'acknowledged-writes-survive',
      ok: true,
      summary: `every one of ${acked} acknowledged writes is visible (or superseded by its writer) on every live replica${note}`,
    }
  }
  return {
    name: 'acknowledged-writes-survive',
    ok: false,
    summary: `${pass.missing.length} register(s) miss their latest acknowledged write on some live replica${note}`,
    details: pass.missing.slice(0, 10).map(({ write, missingAt, shownBy }) => ({
      write: `#${write.idx} ${ctx.nodes[write.writer]!.id} set ${write.collection}/${write.entity}.n${write.writer}=${write.n} at ${write.issuedAt} ms (acked ${write.ackedAt} ms)`,
      missingAt: missingAt.slice(0, 12),
      shownBy,
    })),
  }
}

export function monotonicCheck(ctx: SimContext): CheckResult {
  const { ledger } = ctx
  if (ledger.violationCount === 0) {
    return { name: 'monotonic-registers', ok: true, summary: 'no replica ever showed a register go back or disappear' }
  }
  return {
    name: 'monotonic-registers',
    ok: false,
    summary: `${ledger.violationCount} time(s) a replica showed a writer's register go back or disappear`,
    details: ledger.violations.slice(0, 10).map((v) => ({
      at: v.at,
      node: ctx.nodes[v.node]!.id,
      register: `${v.collection}/${v.entity}.n${v.writer}`,
      kind: v.kind,
      from: v.from,
      to: v.to,
    })),
  }
}

/** Drop reasons that mean a replica received something broken: never expected in a simulation. */
const BAD_DROPS = ['malformed', 'unsupportedVersion', 'tooLarge', 'unknownBackend', 'backendMismatch', 'invalidDelta', 'invalidId', 'storeFailed']

export function errorsCheck(ctx: SimContext): CheckResult {
  const t = ctx.totals
  const problems: string[] = []
  for (const e of ctx.scheduler.errors.slice(0, 5)) problems.push(`simulator task threw at ${e.at} ms: ${e.error.split('\n')[0]}`)
  for (const e of ctx.errors.slice(0, 5)) problems.push(e.split('\n')[0]!)
  for (const s of t.errorSamples) problems.push(`replica error: ${s}`)
  const bad = BAD_DROPS.filter((r) => (t.dropped[r] ?? 0) > 0).map((r) => `${r}: ${t.dropped[r]}`)
  if (bad.length > 0) problems.push(`replicas dropped input as ${bad.join(', ')}`)
  const count = ctx.scheduler.errors.length + ctx.errors.length + t.errors + bad.length
  return count === 0
    ? { name: 'no-errors', ok: true, summary: `no replica or simulator errors (${t.warnings} warnings, e.g. failed sync rounds during faults)` }
    : { name: 'no-errors', ok: false, summary: `${count} error(s)`, details: problems }
}

/** One partition episode, recorded when it healed. */
export interface PartitionEpisode {
  groups: number[][]
  from: number
  to: number
  live: number[]
}

/**
 * While partitioned, each side keeps replicating: every write acknowledged in a group at
 * least graceMs before the heal must have reached every live member of that group by the heal.
 */
export function groupsConvergeCheck(ctx: SimContext, episodes: PartitionEpisode[], graceMs: number): CheckResult {
  const failures: string[] = []
  let checked = 0
  for (const ep of episodes) {
    const live = new Set(ep.live)
    for (const group of ep.groups) {
      const members = new Set(group)
      for (const w of ctx.ledger.writes) {
        if (Number.isNaN(w.ackedAt) || w.ackedAt < ep.from || w.ackedAt > ep.to - graceMs || !members.has(w.writer)) continue
        checked++
        for (const m of group) {
          if (!live.has(m) || m >= w.arrivals.length) continue
          const at = w.arrivals[m]!
          if (Number.isNaN(at) || at > ep.to) {
            if (failures.length < 10)
              failures.push(
                `write #${w.idx} by ${ctx.nodes[w.writer]!.id} (acked ${w.ackedAt} ms) had not reached ${ctx.nodes[m]!.id} by the heal at ${ep.to} ms`,
              )
            else failures.push('')
          }
        }
      }
    }
  }
  const ok = failures.length === 0
  return {
    name: 'groups-converge-during-partition',
    ok,
    summary: ok
      ? `${checked} write(s) made during ${episodes.length} partition(s) reached their whole side within ${graceMs} ms`
      : `${failures.length} write/replica pair(s) did not converge inside their side of a partition within ${graceMs} ms`,
    ...(ok ? {} : { details: failures.filter((f) => f !== '') }),
  }
}

/** Filled by the runner when a node restarts: its own acknowledged writes it did not reload. */
export interface RestartFinding {
  node: string
  at: number
  checked: number
  lost: string[]
}

export function restartCheck(findings: RestartFinding[]): CheckResult {
  const lost = findings.flatMap((f) => f.lost)
  const checked = findings.reduce((a, f) => a + f.checked, 0)
  return lost.length === 0
    ? {
        name: 'restart-recovers-acked-writes',
        ok: true,
        summary: `${findings.length} restart(s): every one of ${checked} acknowledged register(s) of the restarted node was in its store`,
      }
    : {
        name: 'restart-recovers-acked-writes',
        ok: false,
        summary: `${lost.length} acknowledged write(s) missing from a restarted node's store`,
        details: lost.slice(0, 10),
      }
}

/** Every heal converges within limitMs, and so do the replicas once the run is quiescent. */
export function convergeWithinCheck(
  afterEachHeal: { atMs: number; convergedAfterMs: number | null }[],
  quiescentAfterMs: number | undefined,
  limitMs: number,
): CheckResult {
  const slow = afterEachHeal.filter((h) => h.convergedAfterMs === null || h.convergedAfterMs > limitMs)
  const ok = slow.length === 0 && quiescentAfterMs !== undefined && quiescentAfterMs <= limitMs
  const heals = afterEachHeal.map((h) => `${h.convergedAfterMs ?? 'never'} ms after the heal at ${h.atMs} ms`).join(', ')
  return {
    name: 'converge-within',
    ok,
    summary: `${heals.length > 0 ? `${heals}; ` : ''}equal states ${quiescentAfterMs ?? 'never'} ms after quiescence (limit ${limitMs} ms each)`,
  }
}

/** For restart findings: the latest acknowledged n of each register this node wrote. */
export function ownAckedMaxima(ctx: SimContext, node: number, before: number): Map<string, WriteRecord> {
  const out = new Map<string, WriteRecord>()
  for (const w of ctx.ledger.writes) {
    if (w.writer !== node || Number.isNaN(w.ackedAt) || w.ackedAt > before) continue
    const key = registerKey(w.collection, w.entity, w.writer)
    const cur = out.get(key)
    if (cur === undefined || w.n > cur.n) out.set(key, w)
  }
  return out
}

// --- bounded counter (workload.counter) ---

/** What the final read of every live replica's counters found. */
export interface CounterFinalPass {
  at: number
  /** Per live replica: id → value, and id → holder → rights, as it shows them. */
  replicas: { node: string; values: Record<string, number>; rights: Record<string, Record<string, number>> }[]
  /** Every live replica shows the same value for every id. */
  agree: boolean
  /** …and each of those values lies in its expected range. */
  asExpected: boolean
  expected: ReturnType<CounterLedger['expected']>
}

/** Reads every id on every live replica through counter.inspect() (values also go to the never-below-min check). */
export async function counterFinalPass(ctx: SimContext, live: HostNode[], ids: string[]): Promise<CounterFinalPass> {
  const { counterLedger, scheduler } = ctx
  const replicas: CounterFinalPass['replicas'] = []
  for (const node of live) {
    const stock = node.stock()
    if (stock === undefined) throw new Error(`${node.id} is not up: cannot read its counters`)
    const values: Record<string, number> = {}
    const rights: Record<string, Record<string, number>> = {}
    for (const id of ids) {
      const seen = await stock.inspect(id)
      counterLedger.observe(node.index, id, seen.value, scheduler.now, 'final')
      counterLedger.observeRights(node.index, id, seen.rights, scheduler.now, 'final')
      values[id] = seen.value
      rights[id] = seen.rights
    }
    replicas.push({ node: node.id, values, rights })
  }
  const expected = counterLedger.expected(ids)
  const agree = ids.every((id) => new Set(replicas.map((r) => r.values[id])).size <= 1)
  const asExpected = replicas.every((r) => ids.every((id) => r.values[id]! >= expected.get(id)!.low && r.values[id]! <= expected.get(id)!.high))
  return { at: scheduler.now, replicas, agree, asExpected, expected }
}

/** counter-never-below-min: every value any replica showed — on every subscribe() event, local or remote, every sampling read and the final read — is ≥ min. */
export function counterNeverBelowMinCheck(ctx: SimContext): CheckResult {
  const l = ctx.counterLedger
  const o = l.observed
  const lowest = l.lowestByNode().filter((v): v is number => v !== null)
  const seen = `${o.local + o.remote + o.sample + o.final} values seen (${o.local} local and ${o.remote} remote change events, ${o.sample} sampling reads, ${o.final} final reads); lowest ${lowest.length === 0 ? '—' : Math.min(...lowest)}, min ${l.min}`
  if (l.violationCount === 0) return { name: 'counter-never-below-min', ok: true, summary: seen }
  return {
    name: 'counter-never-below-min',
    ok: false,
    summary: `${l.violationCount} time(s) a replica showed a counter below min ${l.min}; ${seen}`,
    details: l.violations.slice(0, 10).map((v) => `${ctx.nodes[v.node]!.id} showed ${v.id} = ${v.value} at ${v.at} ms (${v.source})`),
  }
}

/**
 * counter-converges: after heal and quiescence every live replica shows the same value per id,
 * equal to min + acknowledged increments − acknowledged decrements (operations whose outcome
 * is unknown — never settled because their node crashed, or failed with another error — may
 * or may not count: they widen the range).
 */
export function counterConvergesCheck(ctx: SimContext, pass: CounterFinalPass): CheckResult {
  const ids = [...pass.expected.keys()]
  const wrong: string[] = []
  for (const id of ids) {
    const e = pass.expected.get(id)!
    const shown = new Map<number, string[]>()
    for (const r of pass.replicas) {
      const v = r.values[id]!
      const list = shown.get(v)
      if (list === undefined) shown.set(v, [r.node])
      else list.push(r.node)
    }
    const range =
      e.low >= e.high
        ? `${e.exact}${e.exact < ctx.counterLedger.min ? ' (below min: oversold)' : ''}`
        : `${e.low}…${e.high} (${e.exact} ± unsettled operations)`
    for (const [v, nodes] of shown) {
      if (shown.size > 1 || v < e.low || v > e.high)
        wrong.push(
          `${id}: ${nodes.join(', ')} show ${v}; expected ${range} = ${ctx.counterLedger.min} + ${e.ackedIncrements} acknowledged increments − ${e.ackedDecrements} acknowledged decrements`,
        )
    }
  }
  const uncertain = ids.reduce((a, id) => a + pass.expected.get(id)!.uncertainDecrements + pass.expected.get(id)!.uncertainIncrements, 0)
  if (wrong.length === 0) {
    const values = ids.map((id) => `${id}=${pass.replicas[0]?.values[id] ?? '—'}`).join(', ')
    return {
      name: 'counter-converges',
      ok: true,
      summary: `all ${pass.replicas.length} live replicas show ${values}, = min + acknowledged increments − acknowledged decrements${uncertain > 0 ? ` (within ${uncertain} of unsettled operations)` : ' exactly'}`,
    }
  }
  return {
    name: 'counter-converges',
    ok: false,
    summary: `${pass.agree ? 'replicas agree but a value is not what the acknowledged operations give' : 'live replicas show different counter values'} after the settle period`,
    details: wrong.slice(0, 12),
  }
}

/**
 * counter-no-oversell: per id, the acknowledged decrements never exceed the increments
 * (acknowledged, or unsettled and so possibly applied); and no replica ever showed a holder
 * with negative rights (one that spent rights it did not hold), at a sampling or the final read.
 */
export function counterNoOversellCheck(ctx: SimContext, ids: string[]): CheckResult {
  const l = ctx.counterLedger
  const expected = l.expected(ids)
  const over: string[] = []
  let sold = 0
  let stocked = 0
  for (const id of ids) {
    const e = expected.get(id)!
    sold += e.ackedDecrements
    stocked += e.ackedIncrements
    if (e.ackedDecrements > e.ackedIncrements + e.uncertainIncrements) {
      over.push(
        `${id}: ${e.ackedDecrements} sold (acknowledged decrements) > ${e.ackedIncrements} acknowledged + ${e.uncertainIncrements} unsettled increments`,
      )
    }
  }
  for (const v of l.rightsViolations.slice(0, 10))
    over.push(`${ctx.nodes[v.node]!.id} showed ${v.holder} holding ${v.rights} rights on ${v.id} at ${v.at} ms (${v.source})`)
  const count = over.length - Math.min(10, l.rightsViolations.length) + l.rightsViolationCount
  if (count === 0) {
    return {
      name: 'counter-no-oversell',
      ok: true,
      summary: `${sold} sold of ${stocked} stocked (acknowledged, over ${ids.length} id(s)); no replica ever showed negative rights`,
    }
  }
  return { name: 'counter-no-oversell', ok: false, summary: `${count} oversell finding(s): ${sold} sold of ${stocked} stocked`, details: over.slice(0, 12) }
}
