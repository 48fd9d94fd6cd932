import type { HostNode, SimContext } from './context.js'
import type { WriteRecord } from './ledger.js'
import { registerKey } from './ledger.js'
import { readNodeState } from './state.js'

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
    details: Object.fromEntries([...groups].map(([digest, nodes]) => [digest, nodes.length > 12 ? [...nodes.slice(0, 12), `… ${nodes.length - 12} more`] : nodes])),
  }
}

export function ackedWritesCheck(ctx: SimContext, pass: FinalPass): CheckResult {
  const acked = ctx.ledger.writes.filter((w) => !Number.isNaN(w.ackedAt)).length
  const note = pass.departedOnly > 0 ? `; ${pass.departedOnly} register(s) whose latest write only ever lived on a node that left for good (not counted)` : ''
  if (pass.missing.length === 0) {
    return { name: 'acknowledged-writes-survive', ok: true, summary: `every one of ${acked} acknowledged writes is visible (or superseded by its writer) on every live replica${note}` }
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
            if (failures.length < 10) failures.push(`write #${w.idx} by ${ctx.nodes[w.writer]!.id} (acked ${w.ackedAt} ms) had not reached ${ctx.nodes[m]!.id} by the heal at ${ep.to} ms`)
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
    ? { name: 'restart-recovers-acked-writes', ok: true, summary: `${findings.length} restart(s): every one of ${checked} acknowledged register(s) of the restarted node was in its store` }
    : { name: 'restart-recovers-acked-writes', ok: false, summary: `${lost.length} acknowledged write(s) missing from a restarted node's store`, details: lost.slice(0, 10) }
}

/** Every heal converges within limitMs, and so do the replicas once the run is quiescent. */
export function convergeWithinCheck(afterEachHeal: { atMs: number; convergedAfterMs: number | null }[], quiescentAfterMs: number | undefined, limitMs: number): CheckResult {
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
