import { SERVICE_NAMES } from '../shared/protocol.js'
import type { ScenarioResult } from './scenario.js'

export interface Invariant {
  name: string
  ok: boolean
  detail: string
}

/** The trust boundary's checks (from the end of the run). */
function trustInvariants(r: ScenarioResult): Invariant[] {
  const t = r.trust
  if (t === null) return [{ name: 'trust: unauthorised writes refused, outsiders refused at connect', ok: false, detail: 'the trust checks did not run' }]
  const versions = SERVICE_NAMES.map((s) => t.policyVersion[s] ?? null)
  const dropped = Object.values(t.forged.droppedBy)
  return [
    {
      name: 'trust: the signed policy is in force on every service',
      ok: versions.length === 3 && versions.every((v) => v !== null && v >= 1),
      detail: SERVICE_NAMES.map((s) => `${s} v${t.policyVersion[s] ?? '—'}`).join(', '),
    },
    {
      name: 'trust: an unauthorised write is refused (locally, and on receipt)',
      ok:
        t.error === null &&
        t.refusedWrite.code === 'ERR_FORBIDDEN' &&
        t.refusedWrite.storedOn.length === 0 &&
        t.supportPaymentsCode === 'ERR_FORBIDDEN' &&
        t.supportReadsOrder.ok &&
        dropped.length === 3 &&
        dropped.every((n) => n > 0) &&
        t.forged.storedOn.length === 0,
      detail: `support: write ${t.refusedWrite.code ?? 'accepted'}, payments ${t.supportPaymentsCode ?? 'readable'}, reads orders ${t.supportReadsOrder.ok ? 'yes' : 'no'}; tampered client's order dropped by ${Object.entries(
        t.forged.droppedBy,
      )
        .map(([s, n]) => `${s} ${n}`)
        .join(', ')}, stored on ${t.forged.storedOn.length} services${t.error ? `; ${t.error}` : ''}`,
    },
    {
      name: 'trust: outsiders refused at connect',
      ok: t.outsiders.length === 2 && t.outsiders.every((o) => !o.connected),
      detail: t.outsiders.map((o) => `${o.name}: ${o.connected ? 'CONNECTED' : `not connected in ${o.triedMs} ms`}`).join('; '),
    },
  ]
}

/** The properties the demo exists to show; any false one makes the demo exit non-zero. */
export function checkInvariants(r: ScenarioResult): Invariant[] {
  const accepted = r.attempts.filter((a) => a.outcome === 'accepted')
  const soldPerSku: Record<string, number> = {}
  for (const a of accepted) soldPerSku[a.sku] = (soldPerSku[a.sku] ?? 0) + a.qty
  const initialTotal = Object.values(r.initialStock).reduce((x, y) => x + y, 0)
  const soldTotal = Object.values(soldPerSku).reduce((x, y) => x + y, 0)
  const oversoldSkus = Object.entries(soldPerSku).filter(([sku, n]) => n > (r.initialStock[sku] ?? 0))
  const errors = r.attempts.filter((a) => a.outcome === 'error')
  const finished = !r.interrupted && r.error === null

  // Final stock on every service must be exactly initial − sold: no decrement lost or doubled.
  const stockMismatches: string[] = []
  for (const state of r.finalStates) {
    for (const [sku, initial] of Object.entries(r.initialStock)) {
      const expected = initial - (soldPerSku[sku] ?? 0)
      if (state.stock[sku] !== expected) stockMismatches.push(`${state.service} ${sku}: ${state.stock[sku]} ≠ ${expected}`)
    }
  }

  const list: Invariant[] = [
    {
      name: 'scenario ran to the end',
      ok: finished,
      detail: r.interrupted ? 'interrupted' : (r.error?.split('\n')[0] ?? 'yes'),
    },
    {
      name: 'no oversell: stock never below 0 on any replica',
      ok: r.lowestStock.overall !== null && r.lowestStock.overall >= 0,
      detail: `lowest seen ${r.lowestStock.overall ?? 'n/a'} (polled ${r.lowestStock.polled ?? 'n/a'}; replicas' own watch: ${Object.entries(
        r.lowestStock.watched,
      )
        .map(([s, v]) => `${s} ${v ?? 'n/a'}`)
        .join(', ')})`,
    },
    {
      name: 'no oversell: accepted quantity ≤ initial stock',
      ok: oversoldSkus.length === 0 && soldTotal <= initialTotal,
      detail: `${soldTotal} of ${initialTotal} units${oversoldSkus.length ? `; oversold ${oversoldSkus.map(([s, n]) => `${s} ${n}/${r.initialStock[s]}`).join(', ')}` : ''}`,
    },
    {
      name: 'stock adds up on every service (initial − accepted)',
      ok: finished && r.finalStates.length === 3 && stockMismatches.length === 0,
      detail: stockMismatches.length ? stockMismatches.slice(0, 4).join('; ') : `${r.finalStates.length} services checked`,
    },
    {
      name: 'converged after the heal, and at the end',
      ok: r.convergence.afterHealOk && r.convergence.finalOk,
      detail: `after heal ${r.convergence.afterHealMs ?? '—'} ms; at the end ${r.convergence.finalMs ?? '—'} ms`,
    },
    {
      name: 'acknowledged writes lost = 0',
      ok: finished && r.lost.missing.length === 0 && r.lost.checked === accepted.length * 3,
      detail: `${r.lost.missing.length} missing of ${accepted.length} acknowledged orders × 3 services`,
    },
    {
      name: 'every order request answered (201 or 409)',
      ok: errors.length === 0,
      detail:
        (errors.length ? `${errors.length} errors, first: ${errors[0]!.error}` : `${r.attempts.length} answered`) +
        (r.httpRetries > 0 ? ` (${r.httpRetries} request(s) sent again after finding their kept-alive connection closed)` : ''),
    },
    ...trustInvariants(r),
    {
      name: 'no process left behind',
      ok: r.processesLeft.length === 0 && r.pids.length > 0,
      detail: r.processesLeft.length ? `still alive: ${r.processesLeft.join(', ')}` : `${r.pids.length} started, all exited`,
    },
  ]
  return list
}
