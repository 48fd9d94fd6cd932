import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Machine } from './machine.js'
import type { Result } from './result.js'
import { round } from './stats.js'

export interface Report {
  machine: Machine
  command: string
  startedAt: string
  mode: 'quick' | 'full'
  /** Later runs (`--update`) that replaced some results of this report. */
  updates?: { command: string; startedAt: string; until?: string; loadAverage: number }[]
  results: Result[]
}

/** results.jsonl: one header line (machine, command), then one line per run. */
export function parseJsonl(text: string): Report {
  const lines = text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as { type: string } & Record<string, unknown>)
  const header = lines.find((l) => l.type === 'header') as unknown as Omit<Report, 'results'> | undefined
  if (header === undefined) throw new Error('no header line in the results file')
  const results = lines.filter((l) => l.type === 'result').map(({ type: _type, ...r }) => r as unknown as Result)
  return {
    machine: header.machine,
    command: header.command,
    startedAt: header.startedAt,
    mode: header.mode,
    ...(header.updates ? { updates: header.updates } : {}),
    results,
  }
}

/** Identifies a run across suites: a rerun replaces the old line with the same key. */
export const runKey = (r: { workload: string; case: string; system: string; n: number }): string => `${r.workload}|${r.case}|${r.system}|${r.n}`

export function toJsonl(report: Report): string {
  const header = {
    type: 'header',
    machine: report.machine,
    command: report.command,
    startedAt: report.startedAt,
    mode: report.mode,
    ...(report.updates ? { updates: report.updates } : {}),
  }
  return [header, ...report.results.map((r) => ({ type: 'result', ...r }))].map((l) => JSON.stringify(l)).join('\n') + '\n'
}

export async function writeReport(report: Report, dir: string, basename: string): Promise<{ jsonl: string; md: string }> {
  await mkdir(dir, { recursive: true })
  const jsonl = join(dir, `${basename}.jsonl`)
  const md = join(dir, `${basename}.md`)
  await writeFile(jsonl, toJsonl(report))
  await writeFile(md, toMarkdown(report))
  return { jsonl, md }
}

const fmt = (value: number, unit: string): string => {
  if (!Number.isFinite(value)) return 'n/a'
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2
  return `${round(value, digits).toLocaleString('en-US')} ${unit}`.trim()
}

const groupKey = (r: Result): string => `${r.workload}|${r.case}|${r.n}`

/**
 * How Convergent compares with a baseline on the primary metric, as "how many times better":
 * ours ÷ theirs for throughput, theirs ÷ ours for time. Against the raw ceiling it is shown as
 * the share of the ceiling reached.
 */
export function ratioText(ours: Result, other: Result): string {
  const a = ours.primary.value
  const b = other.primary.value
  if (!Number.isFinite(a) || !Number.isFinite(b) || a <= 0 || b <= 0) return 'n/a'
  const better = ours.primary.better === 'higher' ? a / b : b / a
  if (other.role === 'raw') return `${Math.round(better * 100)} % of ceiling`
  return `${round(better, better >= 10 ? 0 : 1)}×`
}

/** For a baseline row: its ratio against each Convergent backend measured in the same case. */
function ratiosFor(row: Result, group: Result[]): string {
  if (row.role === 'ours' || row.error !== undefined) return ''
  const ours = group.filter((r) => r.role === 'ours' && r.error === undefined && (row.role !== 'raw' || r.backend === row.backend))
  return ours.map((o) => `${o.backend === 'yjs' ? 'Yjs' : 'Automerge'}: ${ratioText(o, row)}`).join(' · ')
}

function details(r: Result): string {
  const parts = Object.entries(r.metrics).map(([k, v]) => `${k} ${Number.isInteger(v) ? v.toLocaleString('en-US') : round(v, 2)}`)
  return [...parts, ...(r.notes ?? [])].join('; ')
}

const short = (r: Result): string => (r.error !== undefined ? 'failed' : fmt(r.primary.value, r.primary.unit))

/**
 * One row per workload case, one column per system: the table for the README. A baseline's
 * cell carries Convergent's ratio against it (Yjs / Automerge backend).
 */
export function toSummary(report: Report): string {
  const columns: { title: string; pick: (rs: Result[]) => Result[] }[] = [
    { title: 'Convergent (Yjs)', pick: (rs) => rs.filter((r) => r.system === 'convergent-yjs') },
    { title: 'Convergent (Automerge)', pick: (rs) => rs.filter((r) => r.system === 'convergent-automerge') },
    { title: 'raw ceiling (Yjs / Automerge)', pick: (rs) => rs.filter((r) => r.role === 'raw') },
    { title: 'OrbitDB 4', pick: (rs) => rs.filter((r) => r.system === 'orbitdb') },
    { title: 'automerge-repo 2', pick: (rs) => rs.filter((r) => r.system === 'automerge-repo') },
    { title: 'Yjs + y-leveldb', pick: (rs) => rs.filter((r) => r.system === 'y-leveldb') },
  ]
  const groups = new Map<string, Result[]>()
  for (const r of report.results) groups.set(groupKey(r), [...(groups.get(groupKey(r)) ?? []), r])
  const lines = [`| Workload | N | Metric | ${columns.map((c) => c.title).join(' | ')} |`, `|---|---:|---|${columns.map(() => '---:').join('|')}|`]
  for (const group of groups.values()) {
    const first = group[0]!
    const named = group.find((r) => r.error === undefined) ?? first
    const cells = columns.map((c) =>
      c
        .pick(group)
        .map((r) => {
          const ratios = ratiosFor(r, group)
            .replace(/Yjs: |Automerge: /g, '')
            .replace(' · ', ' / ')
          return ratios === '' ? short(r) : `${short(r)} (${ratios})`
        })
        .join(' / '),
    )
    const title = `${first.workload} ${first.case}`
    lines.push(`| ${title} | ${first.n.toLocaleString('en-US')} | ${named.error === undefined ? named.primary.name : ''} | ${cells.join(' | ')} |`)
  }
  return lines.join('\n')
}

export function toMarkdown(report: Report): string {
  const m = report.machine
  const lines: string[] = []
  lines.push(`# Convergent benchmark results (${report.mode})`)
  lines.push('')
  lines.push(`- Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB RAM, ${m.os}`)
  lines.push(`- Node ${m.node}${m.commit ? `, commit ${m.commit}` : ''}, started ${report.startedAt}, load average ${m.loadAverage} at start`)
  lines.push(`- Command: \`${report.command}\``)
  for (const u of report.updates ?? []) {
    const rows = report.results.filter((r) => r.startedAt >= u.startedAt && (u.until === undefined || r.startedAt <= u.until))
    lines.push(
      `- Updated ${u.startedAt} by \`${u.command}\` (load average ${u.loadAverage}): ${rows.map((r) => `${r.workload} ${r.case} ${r.system} n=${r.n}`).join(', ')}`,
    )
  }
  lines.push('')
  lines.push(
    '"Convergent vs this" is how many times better Convergent is on the primary metric (higher throughput or shorter time), per Convergent backend; against the raw ceiling, the share of it Convergent reaches.',
  )
  lines.push('')
  lines.push('## Summary')
  lines.push('')
  lines.push('Ratios in parentheses: Convergent with Yjs / with Automerge against that system.')
  lines.push('')
  lines.push(toSummary(report))
  lines.push('')
  const byWorkload = new Map<string, Result[]>()
  for (const r of report.results) byWorkload.set(r.workload, [...(byWorkload.get(r.workload) ?? []), r])
  for (const [workload, results] of byWorkload) {
    lines.push(`## ${workload} — ${results[0]!.title.replace(/^W\d+\s*/, '')}`)
    lines.push('')
    lines.push('| Case | N | System | Result | Convergent vs this | Details |')
    lines.push('|---|---:|---|---:|---|---|')
    const groups = new Map<string, Result[]>()
    for (const r of results) groups.set(groupKey(r), [...(groups.get(groupKey(r)) ?? []), r])
    for (const group of groups.values()) {
      for (const r of group) {
        const retried = r.retriedAfter !== undefined ? ` (second attempt; the first failed: ${r.retriedAfter.split('\n')[0]})` : ''
        const result =
          (r.error !== undefined ? `**failed**: ${r.error.split('\n')[0]}` : `${fmt(r.primary.value, r.primary.unit)} (${r.primary.name})`) + retried
        const n = (r.n ?? 0).toLocaleString('en-US')
        lines.push(`| ${r.case} | ${n} | ${r.label} | ${result} | ${ratiosFor(r, group)} | ${details(r)} |`)
      }
    }
    lines.push('')
  }
  return lines.join('\n')
}
