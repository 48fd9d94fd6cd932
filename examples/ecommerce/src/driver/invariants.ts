import { SERVICE_NAMES } from '../shared/protocol.js'
import type { PrivacyResult } from './privacy.js'
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

/** The forget of a customer (after the heal) and the byte searches of every service's folder. */
function privacyInvariants(r: ScenarioResult): Invariant[] {
  const p = r.privacy
  if (p === null || p.forgotten === null) {
    return [{ name: 'privacy: a forgotten customer is gone from every service', ok: false, detail: p?.error ?? 'the forget did not run' }]
  }
  const n = p.customers.length
  const all = <T>(m: Partial<Record<string, T>>, ok: (v: T) => boolean): boolean => SERVICE_NAMES.every((s) => m[s] !== undefined && ok(m[s]))
  const found = [...Object.values(p.before.search), ...Object.values(p.after.search)].flatMap((s) => s.found)
  const dump = p.dump
  return [
    {
      name: 'privacy: no customer email or address in plain in any file of any service (byte search, before and after the forget)',
      ok: all(p.before.search, (s) => s.files > 0 && s.found.length === 0 && s.idFound) && all(p.after.search, (s) => s.files > 0 && s.found.length === 0),
      detail: found.length
        ? `found: ${found.slice(0, 3).join('; ')}`
        : `${n} customers' emails and addresses in none of ${Object.values(p.before.search).reduce((x, s) => x + s.files, 0)} files before, ${Object.values(p.after.search).reduce((x, s) => x + s.files, 0)} after; the customer id (stored in plain) found by the same search on ${SERVICE_NAMES.filter((s) => p.before.search[s]?.idFound).length} of 3 services`,
    },
    {
      name: 'privacy: the forget reached every service — its email and address gone from get(), the other customers still read',
      ok:
        p.error === null &&
        all(p.before.readable, (v) => v === n) &&
        all(p.reachedMs, () => true) &&
        all(p.after.fieldsLeft, (f) => f.length === 0) &&
        all(p.after.othersReadable, (v) => v === n - 1) &&
        (p.orderId === null || all(p.after.orderKept, (ok) => ok)) &&
        p.after.rewrite.status === 410 &&
        p.after.rewrite.code === 'ERR_FORGOTTEN' &&
        p.refusedForget.status === 403 &&
        p.refusedForget.code === 'ERR_FORBIDDEN' &&
        p.refusedForget.stillReadable,
      detail: `reached ${SERVICE_NAMES.map((s) => `${s} ${p.reachedMs[s] ?? '—'} ms`).join(', ')}; fields left ${SERVICE_NAMES.map((s) => p.after.fieldsLeft[s]?.length ?? '—').join('/')}; others read ${SERVICE_NAMES.map((s) => `${p.after.othersReadable[s] ?? '—'}/${n - 1}`).join(', ')}; written again → ${p.after.rewrite.status} ${p.after.rewrite.code ?? ''}; payments' forget → ${p.refusedForget.status} ${p.refusedForget.code ?? ''}${p.error ? `; ${p.error}` : ''}`,
    },
    offlineInvariant(p),
    {
      name: "privacy: no service's folder opens the forgotten fields (every stored record dumped once stopped)",
      ok: dump !== null && all(dump, (d) => d.records > 0 && d.forgottenOpened === 0 && d.othersOpened > 0),
      detail:
        dump === null
          ? 'not dumped'
          : SERVICE_NAMES.map(
              (s) =>
                `${s}: forgotten email in ${dump[s]?.forgottenOpened ?? '—'} of ${dump[s]?.records ?? '—'} records, others' in ${dump[s]?.othersOpened ?? '—'}`,
            ).join('; '),
    },
  ]
}

/**
 * The reader stopped before the forget and restarted on the same folder after it: its stopped
 * folder still opened the forgotten email (it held the key), and once back its get() lost the
 * email and its folder, dumped at the end, opens it nowhere. (The byte search of its folder after
 * it came back is in the invariant of every folder's search.)
 */
function offlineInvariant(p: PrivacyResult): Invariant {
  const name = 'privacy: a service offline during the forget destroyed the key when it came back'
  const o = p.offline
  if (o === null) return { name, ok: false, detail: 'no service was stopped during the forget' }
  const held = o.heldWhileDown
  const dump = p.dump?.[o.service]
  return {
    name,
    ok:
      held !== null &&
      held.forgottenOpened > 0 &&
      o.pids.after !== null &&
      o.forgotMs !== null &&
      p.after.fieldsLeft[o.service]?.length === 0 &&
      dump !== undefined &&
      dump.records > 0 &&
      dump.forgottenOpened === 0,
    detail: `${o.service} stopped before the forget (pid ${o.pids.before}); its folder while down opened the forgotten email in ${held === null ? '—' : `${held.forgottenOpened} of ${held.records}`} records; ${
      o.pids.after === null
        ? 'NOT restarted'
        : `restarted on the same folder (pid ${o.pids.after}): email gone from get() ${o.forgotMs === null ? 'NEVER' : `${o.forgotMs} ms after it came back`}`
    }; its folder dumped once stopped opens it in ${dump === undefined ? '—' : `${dump.forgottenOpened} of ${dump.records}`} records`,
  }
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
    ...privacyInvariants(r),
    ...trustInvariants(r),
    {
      name: 'no process left behind',
      ok: r.processesLeft.length === 0 && r.pids.length > 0,
      detail: r.processesLeft.length ? `still alive: ${r.processesLeft.join(', ')}` : `${r.pids.length} started, all exited`,
    },
  ]
  return list
}
