import { formatMs } from './format.js'
import type { PrivacyResult } from './privacy.js'
import type { ScenarioResult } from './scenario.js'
import { renderTable } from './table.js'
import type { OrderAttempt, PhaseName } from './workload.js'

export interface Headline {
  label: string
  value: string
}

const PHASE_LABELS: Record<PhaseName, string> = { normal: '① normal traffic', partition: '② during the partition', healed: '⑤ after the heal' }

/** The numbers the demo is about, as label/value pairs (the text summary and the HTML report share them). */
export function headlines(r: ScenarioResult): Headline[] {
  const accepted = r.attempts.filter((a) => a.outcome === 'accepted')
  const rejected = r.attempts.filter((a) => a.outcome === 'rejected')
  const byChannel = (list: OrderAttempt[], channel: 'web' | 'store'): number => list.filter((a) => a.channel === channel).length
  const unreachable = rejected.filter((a) => a.reason === 'rights-unreachable').length
  const soldOut = rejected.filter((a) => a.reason === 'sold-out').length
  const sold = accepted.reduce((n, a) => n + a.qty, 0)
  const initial = Object.values(r.initialStock).reduce((x, y) => x + y, 0)
  const failed = r.invariants.filter((i) => !i.ok)
  const errors = r.attempts.length - accepted.length - rejected.length
  return [
    {
      label: 'orders accepted (HTTP 201)',
      value: `${accepted.length} of ${r.attempts.length} (web ${byChannel(accepted, 'web')}, shop counter ${byChannel(accepted, 'store')})`,
    },
    {
      label: 'orders rejected (HTTP 409)',
      value: `${rejected.length}${rejected.length ? ` (${unreachable} rights out of reach, ${soldOut} sold out)` : ''}${errors ? `; ${errors} errors` : ''}`,
    },
    { label: 'units sold / initial stock', value: `${sold} / ${initial}` },
    { label: 'time to converge after heal', value: r.convergence.afterHealMs === null ? 'did not converge' : formatMs(r.convergence.afterHealMs) },
    {
      label: 'lowest stock seen on any replica',
      value: r.lowestStock.overall === null ? 'n/a' : `${r.lowestStock.overall}${r.lowestStock.overall >= 0 ? ' (never below 0)' : ' — BELOW ZERO'}`,
    },
    { label: 'acknowledged writes lost', value: `${r.lost.missing.length} (${accepted.length} orders × ${r.services.length} services checked)` },
    ...privacyHeadlines(r),
    ...trustHeadlines(r),
    { label: 'processes left behind', value: `${r.processesLeft.length} of ${r.pids.length}` },
    {
      label: 'invariants',
      value: failed.length === 0 ? `all ${r.invariants.length} hold` : `${failed.length} FAILED: ${failed.map((f) => f.name).join('; ')}`,
    },
  ]
}

function privacyHeadlines(r: ScenarioResult): Headline[] {
  const p = r.privacy
  if (p === null || p.forgotten === null) return [{ label: 'customer forgotten', value: `not done${p?.error ? `: ${p.error}` : ' (the run ended early)'}` }]
  const searches = [...Object.values(p.before.search), ...Object.values(p.after.search)]
  const plain = searches.reduce((n, s) => n + s.found.length, 0)
  const reached = Object.entries(p.reachedMs)
    .map(([s, ms]) => `${s} ${formatMs(ms)}`)
    .join(', ')
  return [
    {
      label: 'customer forgotten',
      value: `${p.forgotten.email} (id ${p.forgotten.id}) by ${p.forgotten.by}; reached ${reached || 'no service'}; email and address gone from get() on ${Object.values(p.after.fieldsLeft).filter((f) => f.length === 0).length} of 3 services`,
    },
    offlineHeadline(p),
    {
      label: 'customer emails in plain on disk',
      value: `${plain} (byte search of every file of every service, before and after the forget: ${searches.reduce((n, s) => n + s.files, 0)} file reads)`,
    },
  ]
}

function offlineHeadline(p: PrivacyResult): Headline {
  const o = p.offline
  const label = 'offline during the forget'
  if (o === null) return { label, value: 'no service' }
  const held =
    o.heldWhileDown === null ? '' : ` (its stopped folder opened the email in ${o.heldWhileDown.forgottenOpened} of ${o.heldWhileDown.records} records)`
  const back =
    o.pids.after === null
      ? 'NOT restarted'
      : o.forgotMs === null
        ? 'came back and STILL returned the email'
        : `came back and destroyed the key in ${formatMs(o.forgotMs)}`
  return { label, value: `${o.service}: ${back}${held}` }
}

function trustHeadlines(r: ScenarioResult): Headline[] {
  const t = r.trust
  if (t === null) return [{ label: 'trust boundary', value: 'not checked (the run ended early)' }]
  const drops = Object.entries(t.forged.droppedBy)
    .map(([s, n]) => `${s} ${n}`)
    .join(', ')
  const refused = t.outsiders.filter((o) => !o.connected).length
  return [
    {
      label: 'unauthorised writes refused',
      value: `support's order: ${t.refusedWrite.code ?? 'ACCEPTED'} locally; tampered client's order: dropped as forbidden by ${drops || 'none'} (stored on ${t.forged.storedOn.length} services)`,
    },
    { label: 'outsiders refused at connect', value: `${refused} of ${t.outsiders.length} (${t.outsiders.map((o) => o.name).join('; ')})` },
  ]
}

export function phaseRows(r: ScenarioResult): string[][] {
  const rows = [['phase', 'sent', 'accepted', 'rejected', 'units sold']]
  for (const phase of ['normal', 'partition', 'healed'] as const) {
    const list = r.attempts.filter((a) => a.phase === phase)
    if (list.length === 0) continue
    const acc = list.filter((a) => a.outcome === 'accepted')
    rows.push([PHASE_LABELS[phase], String(list.length), String(acc.length), String(list.length - acc.length), String(acc.reduce((n, a) => n + a.qty, 0))])
  }
  return rows
}

export function renderSummary(r: ScenarioResult): string {
  const lines = [
    '',
    'Summary',
    renderTable(headlines(r).map((h) => [h.label, h.value])),
    '',
    renderTable(phaseRows(r), { header: true, align: ['left', 'right', 'right', 'right', 'right'] }),
    '',
    'Invariants',
  ]
  for (const inv of r.invariants) lines.push(`  ${inv.ok ? '✓' : '✗'} ${inv.name} — ${inv.detail}`)
  return lines.join('\n')
}
