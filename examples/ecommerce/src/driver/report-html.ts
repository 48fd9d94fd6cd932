import type { ServiceName } from '../shared/protocol.js'
import { quantileBetween, type MetricsSample } from './metrics-sampler.js'
import type { StockSample } from './monitor.js'
import { formatSkus } from './format.js'
import type { ScenarioResult } from './scenario.js'
import { headlines, phaseRows } from './summary.js'
import { describePrivacy, type FolderSearch } from './privacy.js'
import { describeTrust } from './trust.js'

const COLORS: Record<ServiceName, string> = { inventory: '#2563eb', orders: '#d97706', payments: '#059669' }
const W = 860
const H = 220
const PAD = { left: 48, right: 16, top: 22, bottom: 28 }

/** A self-contained HTML page: the summary, the invariants, and timelines of what each replica saw. */
export function renderReport(r: ScenarioResult): string {
  const endMs = Math.max(r.durationMs, ...r.samples.map((s) => s.t), 1)
  const startMs = Math.min(...r.samples.map((s) => s.t), r.phases[0]?.startMs ?? 0)
  const stockChart = lineChart(r, (s) => Object.values(s.skus).reduce((x, y) => x + y, 0), 'Stock (all SKUs) as each replica sees it', startMs, endMs)
  const rightsChart = lineChart(r, (s) => s.rights, 'Rights held by each replica (all SKUs)', startMs, endMs)
  const ordersChart = orderStrip(r, startMs, endMs)
  const rates = ratesChart(r, startMs, endMs)
  const lag = lagChart(r, startMs, endMs)
  const passed = r.invariants.every((i) => i.ok)
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Convergent e-commerce demo — report</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:920px;color:#111;padding:0 1rem}
h1{font-size:1.4rem;margin-bottom:.2rem} h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}
td.n{text-align:right} .ok{color:#059669} .bad{color:#dc2626;font-weight:600}
.verdict{display:inline-block;padding:.2rem .6rem;border-radius:4px;color:#fff;background:${passed ? '#059669' : '#dc2626'}}
pre{background:#f6f6f6;padding:.6rem;overflow:auto;font-size:12px} .muted{color:#666} svg{display:block;margin:.4rem 0 1rem}
.legend span{margin-right:1rem}
</style></head><body>
<h1>Convergent e-commerce demo</h1>
<p class="muted">${esc(r.startedAt)} · ${r.settings.orders} orders · seed ${r.settings.seed} · stock ${r.settings.stockPerSku} per SKU · ${(r.durationMs / 1000).toFixed(1)} s${r.settings.quick ? ' · quick mode' : ''}</p>
<p><span class="verdict">${passed ? 'all invariants hold' : 'INVARIANT FAILED'}</span></p>
<h2>Summary</h2>
<table>${headlines(r)
    .map((h) => `<tr><th>${esc(h.label)}</th><td>${esc(h.value)}</td></tr>`)
    .join('')}</table>
<table>${phaseRows(r)
    .map((row, i) => `<tr>${row.map((c, j) => (i === 0 ? `<th>${esc(c)}</th>` : `<td${j > 0 ? ' class="n"' : ''}>${esc(c)}</td>`)).join('')}</tr>`)
    .join('')}</table>
<h2>Invariants</h2>
<table>${r.invariants.map((i) => `<tr><td class="${i.ok ? 'ok' : 'bad'}">${i.ok ? '✓' : '✗'}</td><th>${esc(i.name)}</th><td>${esc(i.detail)}</td></tr>`).join('')}</table>
<h2>What happened</h2>
<p>Inventory created the stock, so it held every right to decrement it. The orders service got rights from inventory on
demand (and kept a reserve of ≥ ${r.settings.lowWater} per SKU). When the partition cut inventory off from orders and payments, each side
could sell only within the rights it held: ${r.rightsAtCut ? `orders ${esc(formatSkus(r.rightsAtCut.orders))}; inventory ${esc(formatSkus(r.rightsAtCut.inventory))}` : 'n/a'}.
Web orders went to the orders service, shop-counter orders to inventory; a side out of rights answered 409. After the heal the replicas
exchanged what they missed, payments paid the orders taken on the other side, and every service ended with the same state.</p>
<div class="legend">${(Object.keys(COLORS) as ServiceName[]).map((s) => `<span style="color:${COLORS[s]}">■ ${s}</span>`).join('')}<span style="color:#dc2626">▒ partition</span><span style="color:#d97706">▒ converging</span></div>
${stockChart}
${rightsChart}
${ordersChart}
<h2>From the services' /metrics</h2>
<p class="muted">Each service's replica metrics (convergent's <code>serve()</code>: ${r.services.map((s) => `${s.name} <code>${esc(s.metricsUrl)}/metrics</code>`).join(', ')}), scraped by the demo once a second, as Prometheus would.</p>
${rates}
${lag}
<h2>An order taken across the partition, as another service serves it</h2>
<pre>${esc(JSON.stringify(r.exampleView, null, 2))}</pre>
${privacySection(r)}
${trustSection(r)}
<h2>Services</h2>
<table><tr><th>service</th><th>pid</th><th>HTTP</th><th>peer id</th></tr>${r.services
    .map((s) => `<tr><td>${s.name}</td><td>${s.pid}</td><td>${esc(s.url)}</td><td><code>${esc(s.peerId)}</code></td></tr>`)
    .join('')}</table>
${r.error ? `<h2>Error</h2><pre>${esc(r.error)}</pre>` : ''}
</body></html>
`
}

/** The forgotten customer: what each service's get(), files and stored records showed. */
function privacySection(r: ScenarioResult): string {
  const p = r.privacy
  if (p === null || p.forgotten === null) return `<h2>Personal data</h2><p class="bad">The forget did not run${p?.error ? `: ${esc(p.error)}` : ''}.</p>`
  const n = p.customers.length
  const search = (s: FolderSearch | undefined): string =>
    s === undefined
      ? '—'
      : `${s.found.length === 0 ? '<span class="ok">0</span>' : `<span class="bad">${s.found.length}</span>`} in ${s.files} files (${(s.bytes / 1024).toFixed(0)} KiB); id ${s.idFound ? 'found' : '<span class="bad">NOT found</span>'}`
  const o = p.offline
  const offline = (s: ServiceName): string => {
    if (o?.service !== s) return '<span class="muted">online</span>'
    const held =
      o.heldWhileDown === null
        ? 'not dumped'
        : `its stopped folder opened the email in ${o.heldWhileDown.forgottenOpened} of ${o.heldWhileDown.records} records`
    const back =
      o.pids.after === null
        ? '<span class="bad">not restarted</span>'
        : o.forgotMs === null
          ? '<span class="bad">came back, still returned the email</span>'
          : `<span class="ok">came back (pid ${o.pids.before} → ${o.pids.after}), key destroyed ${o.forgotMs} ms later</span>`
    return `stopped before the forget; ${esc(held)}; ${back}`
  }
  const rows = (['inventory', 'orders', 'payments'] as const)
    .map((s) => {
      const d = p.dump?.[s]
      const left = p.after.fieldsLeft[s]
      return `<tr><th>${s}</th><td class="n">${p.before.readable[s] ?? '—'}/${n}</td><td>${search(p.before.search[s])}</td><td>${offline(s)}</td><td class="n">${p.reachedMs[s] === undefined ? '<span class="bad">never</span>' : `${p.reachedMs[s]} ms`}</td><td>${left === undefined ? '—' : left.length === 0 ? '<span class="ok">none</span>' : `<span class="bad">${esc(left.join(', '))}</span>`}</td><td class="n">${p.after.othersReadable[s] ?? '—'}/${n - 1}</td><td>${search(p.after.search[s])}</td><td>${d === undefined ? '—' : `${d.forgottenOpened} of ${d.records} (others ${d.othersOpened})`}</td></tr>`
    })
    .join('')
  return `<h2>Personal data: a customer forgotten</h2>
<p>The orders service (the only writer of <code>customers</code>; every member reads them) stores each customer under a keyed pseudonym of
the email (<code>pseudonym(key, email)</code>, the key given to orders alone), with <code>email</code> and <code>address</code> declared
personal: the replica seals them per customer (AES-256-GCM under the customer's key) before they enter the CRDT, and hands the key only to
members that may read the collection. After the heal, the orders service called <code>replica.forget(${esc(p.forgotten.id)})</code> for
<b>${esc(p.forgotten.email)}</b>: a signed tombstone went to every member, and each destroyed the key and compacted its store.${
    o === null
      ? ''
      : ` The ${esc(o.service)} service was stopped (cleanly) before the forget and started again on the same folder after it: it missed the tombstone, and had to
take it from its peers once it reconnected and destroy the key then; the byte search and the dump after the forget read its folder after it came back.`
  }</p>
<table><tr><th>service</th><th>customers read in plain before</th><th>byte search before: emails/addresses in plain</th><th>offline during the forget</th><th>forget reached after</th><th>fields left in get()</th><th>others read after</th><th>byte search after</th><th>dump once stopped: records opening the forgotten email</th></tr>${rows}</table>
<ul>${describePrivacy(p)
    .map((line) => `<li>${esc(line)}</li>`)
    .join('')}</ul>
<p class="muted">The byte search reads every file of the service's folder (LevelDB's log, tables, manifest; the peer key) and its log file,
looking for every customer's email, the email's local part and address; finding the customer's id (stored in plain: ids are visible metadata)
shows it reads what is stored. LevelDB compresses its tables (Snappy), which could split a repeated string; the log it writes first is not
compressed, and the dump, which decodes every stored record, backs the search up. What <code>forget</code> cannot undo: values copied out
of the system (this report holds the email), and copies of a folder made before the forget, which hold the key.</p>`
}

/** The policy in force and what the trust checks saw. */
function trustSection(r: ScenarioResult): string {
  const t = r.trust
  if (t === null) return '<h2>Trust boundary</h2><p class="bad">The trust checks did not run.</p>'
  const who = (ids: string[]): string => ids.map((id) => t.names[id] ?? id.slice(-8)).join(', ')
  const roles = Object.entries(t.policy.roles)
    .map(([role, ids]) => `<tr><th>${esc(role)}</th><td>${esc(who(ids))}</td></tr>`)
    .join('')
  const rules = Object.entries(t.policy.collections)
    .map(([name, rule]) => `<tr><th>${esc(name)}</th><td>${esc(rule.read.join(', '))}</td><td>${esc(rule.write.join(', '))}</td></tr>`)
    .join('')
  return `<h2>Trust boundary</h2>
<p>Every service ran with one cluster key (a libp2p private network: a process without it cannot complete a connection) and
<code>open({ cluster: { admins } })</code> with inventory as the admin. Inventory signed the policy below on its first start; every
service verified it before enforcing it. After the final convergence, the demo started a <b>support</b> replica, a tampered support
client (the support role's identity, opened without the admins so it checks nothing itself) and two outsiders.</p>
<table><tr><th>role</th><th>members</th></tr>${roles}</table>
<table><tr><th>collection</th><th>read</th><th>write</th></tr>${rules}</table>
<p class="muted">A writer may also read; <code>*</code> = every member. Payments, not readable by every member, is never gossiped: it moves by anti-entropy only.</p>
<ul>${describeTrust(t)
    .map((line) => `<li>${esc(line)}</li>`)
    .join('')}</ul>
<p class="muted">Prometheus on each service: <code>convergent_deltas_dropped_total{reason="forbidden"}</code> = ${esc(
    Object.entries(t.forged.metric)
      .map(([s, n]) => `${s} ${n}`)
      .join(', '),
  )}.</p>`
}

function scaleX(t: number, startMs: number, endMs: number): number {
  return PAD.left + ((t - startMs) / Math.max(1, endMs - startMs)) * (W - PAD.left - PAD.right)
}

function phaseBands(r: ScenarioResult, startMs: number, endMs: number, height: number): string {
  return r.phases
    .filter((p) => p.name === 'partition' || p.name === 'converging')
    .map((p) => {
      const x1 = scaleX(p.startMs, startMs, endMs)
      const x2 = scaleX(p.endMs, startMs, endMs)
      return `<rect x="${x1.toFixed(1)}" y="${PAD.top}" width="${Math.max(1, x2 - x1).toFixed(1)}" height="${height - PAD.top - PAD.bottom}" fill="${p.name === 'partition' ? '#fee2e2' : '#fef3c7'}"/>`
    })
    .join('')
}

function axes(startMs: number, endMs: number, height: number, maxY: number | string, title: string): string {
  const ticks = 5
  const xTicks = Array.from({ length: ticks + 1 }, (_, i) => startMs + ((endMs - startMs) * i) / ticks)
    .map(
      (t) =>
        `<text x="${scaleX(t, startMs, endMs).toFixed(1)}" y="${height - 8}" font-size="10" text-anchor="middle">${((t - startMs) / 1000).toFixed(1)} s</text>`,
    )
    .join('')
  return `<text x="${PAD.left}" y="${PAD.top - 8}" font-size="12" font-weight="600">${esc(title)}</text>
<line x1="${PAD.left}" y1="${height - PAD.bottom}" x2="${W - PAD.right}" y2="${height - PAD.bottom}" stroke="#999"/>
<line x1="${PAD.left}" y1="${PAD.top}" x2="${PAD.left}" y2="${height - PAD.bottom}" stroke="#999"/>
<text x="${PAD.left - 6}" y="${PAD.top + 10}" font-size="10" text-anchor="end">${maxY}</text>
<text x="${PAD.left - 6}" y="${height - PAD.bottom}" font-size="10" text-anchor="end">0</text>${xTicks}`
}

function lineChart(r: ScenarioResult, value: (s: StockSample) => number, title: string, startMs: number, endMs: number): string {
  const maxY = Math.max(1, ...r.samples.map(value))
  const y = (v: number): number => H - PAD.bottom - (v / maxY) * (H - PAD.top - PAD.bottom)
  const lines = (Object.keys(COLORS) as ServiceName[])
    .map((service) => {
      const pts = r.samples.filter((s) => s.service === service).map((s) => `${scaleX(s.t, startMs, endMs).toFixed(1)},${y(value(s)).toFixed(1)}`)
      return pts.length ? `<polyline fill="none" stroke="${COLORS[service]}" stroke-width="1.6" points="${pts.join(' ')}"/>` : ''
    })
    .join('')
  return `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">${phaseBands(r, startMs, endMs, H)}${axes(startMs, endMs, H, maxY, title)}${lines}</svg>`
}

type Point = [t: number, v: number]

/** Per second between consecutive samples of one service. */
function perSecond(samples: MetricsSample[], value: (s: MetricsSample) => number): Point[] {
  const points: Point[] = []
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!
    const b = samples[i]!
    if (b.t > a.t) points.push([b.t, Math.max(0, (value(b) - value(a)) / ((b.t - a.t) / 1000))])
  }
  return points
}

function samplesOf(r: ScenarioResult, service: ServiceName): MetricsSample[] {
  return r.metricSamples.filter((s) => s.service === service).sort((a, b) => a.t - b.t)
}

/** Writes and applies of changes from peers, per second, per service. */
function ratesChart(r: ScenarioResult, startMs: number, endMs: number): string {
  const lines = (Object.keys(COLORS) as ServiceName[]).flatMap((service) => {
    const samples = samplesOf(r, service)
    return [
      { service, dashed: false, points: perSecond(samples, (s) => s.appliedRemote) },
      { service, dashed: true, points: perSecond(samples, (s) => s.writes) },
    ]
  })
  if (lines.every((l) => l.points.length === 0)) return '<p>Writes and applies: n/a (no /metrics sample).</p>'
  return seriesChart(r, lines, 'Changes from peers applied /s (solid) and local writes /s (dashed), per replica', startMs, endMs, (v) => v.toFixed(0))
}

/**
 * Replication lag p99 (origin commit → durable here) over each interval between two samples,
 * per service; "n/a" when the services export no convergent_replication_lag_seconds.
 */
function lagChart(r: ScenarioResult, startMs: number, endMs: number): string {
  if (!r.metricSamples.some((s) => s.lag !== null)) {
    return "<p><strong>Replication lag:</strong> n/a — the services' /metrics have no <code>convergent_replication_lag_seconds</code> histogram (this build does not export it).</p>"
  }
  const lines = (Object.keys(COLORS) as ServiceName[]).map((service) => {
    const samples = samplesOf(r, service)
    const points: Point[] = []
    for (let i = 1; i < samples.length; i++) {
      const after = samples[i]!.lag
      if (after === null) continue
      const q = quantileBetween(samples[i - 1]!.lag, after, 0.99)
      if (q !== null) points.push([samples[i]!.t, q])
    }
    return { service, dashed: false, points }
  })
  const converging = r.phases.find((p) => p.name === 'converging')
  const healP99 = (Object.keys(COLORS) as ServiceName[]).map((service) => {
    const samples = samplesOf(r, service).filter((s) => s.lag !== null)
    const before = converging ? samples.filter((s) => s.t <= converging.startMs).at(-1) : undefined
    const after = converging ? samples.find((s) => s.t >= converging.endMs) : undefined
    const q = after?.lag ? quantileBetween(before?.lag ?? null, after.lag, 0.99) : null
    return `${service} ${q === null ? 'n/a' : `${q.toFixed(2)} s`}`
  })
  return `${seriesChart(r, lines, 'Replication lag p99 per second, per replica (s, from convergent_replication_lag_seconds)', startMs, endMs, (v) => v.toFixed(2))}
<p class="muted">Lag p99 of the changes applied while converging after the heal: ${esc(healP99.join(', '))}. Lag is measured with the origin's clock (here one machine).</p>`
}

function seriesChart(
  r: ScenarioResult,
  lines: { service: ServiceName; dashed: boolean; points: Point[] }[],
  title: string,
  startMs: number,
  endMs: number,
  label: (v: number) => string,
): string {
  const maxY = Math.max(1e-9, ...lines.flatMap((l) => l.points.map(([, v]) => v)))
  const y = (v: number): number => H - PAD.bottom - (v / maxY) * (H - PAD.top - PAD.bottom)
  const polylines = lines
    .filter((l) => l.points.length > 0)
    .map(
      (l) =>
        `<polyline fill="none" stroke="${COLORS[l.service]}" stroke-width="1.6"${l.dashed ? ' stroke-dasharray="4 3"' : ''} points="${l.points.map(([t, v]) => `${scaleX(t, startMs, endMs).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"/>`,
    )
    .join('')
  return `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">${phaseBands(r, startMs, endMs, H)}${axes(startMs, endMs, H, label(maxY), title)}${polylines}</svg>`
}

/** One tick per order: top row web, bottom row shop counter; green accepted, red rejected. */
function orderStrip(r: ScenarioResult, startMs: number, endMs: number): string {
  const h = 90
  const rowY = { web: 30, store: 55 }
  const ticks = r.attempts
    .map((a) => {
      const x = scaleX(a.at, startMs, endMs).toFixed(1)
      const color = a.outcome === 'accepted' ? '#059669' : a.outcome === 'rejected' ? '#dc2626' : '#111'
      return `<line x1="${x}" x2="${x}" y1="${rowY[a.channel] - 8}" y2="${rowY[a.channel] + 8}" stroke="${color}" stroke-width="1.2"><title>${esc(`${a.id ?? a.reason ?? a.error ?? ''} ${a.sku}×${a.qty}`)}</title></line>`
    })
    .join('')
  return `<svg width="${W}" height="${h}" viewBox="0 0 ${W} ${h}" role="img" aria-label="orders">${phaseBands(r, startMs, endMs, h)}
<text x="${PAD.left}" y="10" font-size="12" font-weight="600">Orders (green accepted, red rejected)</text>
<text x="${PAD.left - 6}" y="${rowY.web + 4}" font-size="10" text-anchor="end">web</text><text x="${PAD.left - 6}" y="${rowY.store + 4}" font-size="10" text-anchor="end">counter</text>${ticks}</svg>`
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)
}
