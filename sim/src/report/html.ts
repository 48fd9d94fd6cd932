import type { Report } from './report.js'
import type { Summary } from './stats.js'

/**
 * report.html: one self-contained page (inline CSS and SVG, no scripts, no network) with the
 * verdicts, the headline metrics and a timeline of faults, divergence, message rates and
 * propagation latency on a shared virtual-time axis.
 */
export function renderHtml(report: Report): string {
  const s = report.scenario
  const verdict = report.passed ? '<span class="ok">PASSED</span>' : '<span class="bad">FAILED</span>'
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>convergent-sim · ${esc(s.name)} · seed ${report.seed}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #1d232a; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.ok { color: #0a7a32; font-weight: 600; } .bad { color: #b3261e; font-weight: 600; }
.muted { color: #5f6b76; } code { background: #f1f3f5; padding: 1px 4px; border-radius: 3px; }
table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e6e9; vertical-align: top; }
th { font-weight: 600; background: #f7f8f9; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
svg text { font: 11px system-ui, sans-serif; fill: #3b4650; }
</style>
</head>
<body>
<h1>${esc(s.name)} ${verdict}</h1>
<div class="muted">${esc(s.description)}</div>
<p>${report.mode === 'live' ? 'Live run on real libp2p nodes' : 'Simulated run'} · seed ${report.seed} · ${report.nodes.initial} nodes (${report.nodes.created} created, ${report.nodes.liveAtEnd} live at the end) ·
${fmtMs(report.virtualTimeMs.end)} virtual · ${fmtMs(report.wall.elapsedMs)} wall<br>
Replay: <code>${esc(report.replay)}</code></p>

<h2>Checks</h2>
<table><tr><th>check</th><th>result</th><th>summary</th></tr>
${report.checks.map((c) => `<tr><td>${esc(c.name)}</td><td>${c.ok ? '<span class="ok">ok</span>' : '<span class="bad">failed</span>'}</td><td>${esc(c.summary)}${c.details === undefined ? '' : `<br><code>${esc(JSON.stringify(c.details).slice(0, 600))}</code>`}</td></tr>`).join('\n')}
</table>
${
  report.targets.length === 0
    ? ''
    : `<h2>Targets</h2><table><tr><th>target</th><th>limit</th><th>measured</th><th></th></tr>
${report.targets.map((t) => `<tr><td>${esc(t.name)}</td><td class="num">&lt; ${t.limit}</td><td class="num">${t.value ?? '—'}</td><td>${t.met ? '<span class="ok">met</span>' : '<span class="bad">missed</span>'}</td></tr>`).join('\n')}</table>`
}

<h2>Timeline</h2>
${timelineSvg(report)}

<h2>Metrics</h2>
<div class="grid">
<table>
<tr><th colspan="2">updates and traffic</th></tr>
${row('updates acknowledged', `${report.updates.acknowledged} of ${report.updates.issued} issued`)}
${row('messages per update', report.messages.perUpdate)}
${row('· gossip data / control / sync per update', `${report.messages.gossipDataPerUpdate} / ${report.messages.gossipControlPerUpdate} / ${report.messages.syncPerUpdate}`)}
${row('bytes per update', report.bytes.perUpdate === null ? null : Math.round(report.bytes.perUpdate))}
${row('messages total (lost)', `${report.messages.total} (${report.messages.lost})`)}
${row('duplicate gossip copies received', report.gossip.duplicatesReceived ?? 0)}
${row('sync rounds (failed)', `${report.replicas.syncRounds} (${report.replicas.syncFailures})`)}
</table>
<table>
<tr><th colspan="2">latency and convergence</th></tr>
${latencyRows('propagation, all writes', report.propagationLatencyMs.allWrites)}
${latencyRows('propagation, healthy writes', report.propagationLatencyMs.healthyWrites)}
${row('writes never fully propagated', report.propagationLatencyMs.neverFullyPropagated)}
${row('converge after the last heal', report.convergence.timeToConvergeAfterHealMs === null ? '—' : fmtMs(report.convergence.timeToConvergeAfterHealMs))}
${row('equal states after quiescence', report.convergence.timeToEqualStatesAfterQuiescenceMs === null ? 'never' : fmtMs(report.convergence.timeToEqualStatesAfterQuiescenceMs))}
${row('peak RSS / heap', `${mb(report.memory.peakRssBytes)} / ${mb(report.memory.peakHeapUsedBytes)}`)}
</table>
</div>
${clusterSection(report)}
${counterSection(report)}

<h2>Trace (last events)</h2>
<table><tr><th>virtual time</th><th>event</th></tr>
${report.trace
  .slice(-60)
  .map((e) => `<tr><td class="num">${fmtMs(e.at)}</td><td>${esc(e.event)}</td></tr>`)
  .join('\n')}
</table>
</body>
</html>
`
}

/** The trust boundary (replica.cluster): the policy, signatures, signed pushes and their proofs. */
function clusterSection(r: Report): string {
  const c = r.cluster
  if (c === null) return ''
  return `<h2>Cluster (trust boundary on, admin ${esc(c.admin)})</h2>
<div class="grid">
<table>
<tr><th colspan="2">policy and signatures</th></tr>
${row('policy set', c.policy === null ? 'never' : `version ${c.policy.version}, ${c.policy.members} members, at ${fmtMs(c.policy.setAtMs)}`)}
${row('signatures made / checked / failed', `${c.signatures.made} / ${c.signatures.verified} / ${c.signatures.failed}`)}
${row('signed deltas applied (duplicates)', `${c.signedDeltas.applied} (${c.signedDeltas.duplicate}) from ${c.authors} authors`)}
${row('feed entries: signed / by anti-entropy / local', `${c.feed.signed} / ${c.feed.antiEntropy} / ${c.feed.local}`)}
${row('stored proofs re-verified (failed)', `${c.proofs.checked} (${c.proofs.failed})`)}
${row('dropped as badSignature / forbidden', `${c.dropped.badSignature} / ${c.dropped.forbidden}`)}
</table>
<table>
<tr><th>replica</th><th>holds the policy from</th><th>signed deltas applied</th></tr>
${Object.entries(c.adoptedAtMs)
  .map(
    ([n, at]) =>
      `<tr><td>${esc(n)}</td><td class="num">${at === null ? 'never' : fmtMs(at)}</td><td class="num">${c.signedDeltas.appliedByNode[n] ?? 0}</td></tr>`,
  )
  .join('\n')}
</table>
</div>`
}

/** The bounded-counter workload: operations, rights requests, lowest values, final values. */
function counterSection(r: Report): string {
  const c = r.counter
  if (c === null) return ''
  const d = c.decrements
  const lat = c.decrementLatencyMs
  const replicas = Object.keys(c.lowestValueSeen.byReplica)
  return `<h2>Bounded counter '${esc(c.name)}' (min ${c.min}, ${c.ids} id(s), ${c.initialPerId} initial each)</h2>
<div class="grid">
<table>
<tr><th colspan="2">operations</th></tr>
${row('decrements accepted / rejected (no rights) / issued', `${d.accepted} / ${d.rejected} / ${d.issued}`)}
${row('amount sold (accepted decrements)', d.amountAccepted)}
${row('decrements failed otherwise / never settled (crash)', `${d.failed} / ${d.neverSettled}`)}
${row('increments acknowledged (amount)', `${c.increments.acknowledged} of ${c.increments.issued} (${c.increments.amountAcknowledged})`)}
${row('transfers acknowledged (amount)', `${c.transfers.acknowledged} of ${c.transfers.issued} (${c.transfers.amountAcknowledged})`)}
${row('accepted decrement latency', lat.accepted.count === 0 ? '—' : `median ${lat.accepted.median} · p99 ${lat.accepted.p99} · max ${lat.accepted.max} ms`)}
${row('rights requests sent (answered, failed)', `${c.rightsRequests.sent} (${c.rightsRequests.answered}, ${c.rightsRequests.failed})`)}
${row('rights granted (empty answers)', `${c.rightsRequests.rightsGranted} (${c.rightsRequests.emptyAnswers})`)}
</table>
<table>
<tr><th>replica</th><th>lowest value seen</th><th>sales accepted</th><th>rejected</th></tr>
${replicas
  .map(
    (n) =>
      `<tr><td>${esc(n)}</td><td class="num">${c.lowestValueSeen.byReplica[n] ?? '—'}</td><td class="num">${d.byReplica[n]?.accepted ?? 0}</td><td class="num">${d.byReplica[n]?.rejected ?? 0}</td></tr>`,
  )
  .join('\n')}
<tr><th>id</th><th>final value</th><th colspan="2">expected (acked increments − acked decrements)</th></tr>
${Object.entries(c.final)
  .map(
    ([id, f]) =>
      `<tr><td>${esc(id)}</td><td class="num">${f.value ?? 'replicas differ'}</td><td colspan="2" class="num">${f.expectedLow === f.expectedHigh ? f.expected : `${f.expected} (${f.expectedLow}…${f.expectedHigh})`} = ${c.min} + ${f.ackedIncrements} − ${f.ackedDecrements}</td></tr>`,
  )
  .join('\n')}
</table>
</div>`
}

const W = 1040
const LEFT = 110
const RIGHT = 20
const PLOT = W - LEFT - RIGHT

const COLORS: Record<string, string> = {
  partition: '#d9480f',
  isolate: '#e8590c',
  flap: '#f08c00',
  crash: '#c92a2a',
  down: '#e03131',
  churn: '#9c36b5',
  leave: '#5f3dc4',
  join: '#1971c2',
}

function timelineSvg(r: Report): string {
  const end = Math.max(1, r.virtualTimeMs.end)
  const x = (t: number): number => LEFT + (Math.min(t, end) / end) * PLOT
  const t = r.timeline
  const lanes: string[] = []
  let y = 10

  // Fault bands across everything, drawn first.
  const faultRows = new Map<string, number>()
  for (const f of r.faults) if (!faultRows.has(f.kind)) faultRows.set(f.kind, faultRows.size)
  const faultHeight = Math.max(1, faultRows.size) * 16 + 10
  // Lane: faults, one row per kind.
  lanes.push(`<text x="8" y="${y + 11}" font-weight="600">faults</text>`)
  for (const [kind, rowIndex] of faultRows) {
    const ry = y + rowIndex * 16
    lanes.push(`<text x="${LEFT - 6}" y="${ry + 11}" text-anchor="end">${esc(kind)}</text>`)
    for (const f of r.faults.filter((g) => g.kind === kind)) {
      const x0 = x(f.fromMs)
      const x1 = Number.isNaN(f.toMs) ? x(end) : x(f.toMs)
      lanes.push(
        `<rect x="${x0.toFixed(1)}" y="${ry}" width="${Math.max(2, x1 - x0).toFixed(1)}" height="12" rx="2" fill="${COLORS[kind] ?? '#868e96'}"><title>${esc(`${f.kind} ${f.label}: ${fmtMs(f.fromMs)} → ${Number.isNaN(f.toMs) ? 'end' : fmtMs(f.toMs)}`)}</title></rect>`,
      )
    }
  }
  if (faultRows.size === 0) lanes.push(`<text x="${LEFT}" y="${y + 12}" class="muted">no faults</text>`)
  y += faultHeight

  const bucket = t.bucketMs
  const series = (values: number[], height: number, top: number, max: number, color: string, fill: boolean, label: string, opacity = 0.35): string => {
    if (values.length === 0) return ''
    const pts = values.map((v, i) => `${x((i + 0.5) * bucket).toFixed(1)},${(top + height - (v / max) * height).toFixed(1)}`)
    const path = fill
      ? `<path d="M${x(0.5 * bucket).toFixed(1)},${top + height} L${pts.join(' L')} L${x((values.length - 0.5) * bucket).toFixed(1)},${top + height} Z" fill="${color}" fill-opacity="${opacity}" stroke="${color}" stroke-width="1"><title>${esc(label)}</title></path>`
      : `<polyline points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="1.5"><title>${esc(label)}</title></polyline>`
    return path
  }
  /** A plot lane 100 px high at the current y; `body(top)` draws inside it. */
  const lane = (title: string, unit: string, max: number, body: (top: number) => string): void => {
    const h = 100
    y += 16 // room for the title above the plot
    lanes.push(`<text x="${LEFT}" y="${y - 5}" font-weight="600">${esc(title)}</text>`)
    lanes.push(`<line x1="${LEFT}" y1="${y + h}" x2="${W - RIGHT}" y2="${y + h}" stroke="#adb5bd"/>`)
    lanes.push(`<line x1="${LEFT}" y1="${y}" x2="${LEFT}" y2="${y + h}" stroke="#adb5bd"/>`)
    lanes.push(`<text x="${LEFT - 6}" y="${y + 10}" text-anchor="end">${fmtNum(max)}</text><text x="${LEFT - 6}" y="${y + h}" text-anchor="end">0</text>`)
    lanes.push(`<text x="${LEFT - 6}" y="${y + 55}" text-anchor="end">${esc(unit)}</text>`)
    lanes.push(body(y))
    y += h + 30
  }

  // Divergence: updates missing (area) and replicas behind (line, scaled to the same height).
  const maxMissing = niceMax(Math.max(1, ...t.missingUpdates))
  const maxLive = Math.max(1, ...t.liveReplicas)
  lane(
    'divergence',
    'updates missing',
    maxMissing,
    (top) =>
      series(t.missingUpdates, 100, top, maxMissing, '#c92a2a', true, 'acknowledged updates not yet shown by live replicas') +
      series(
        t.replicasBehind.map((v) => (v / maxLive) * maxMissing),
        100,
        top,
        maxMissing,
        '#1971c2',
        false,
        `replicas behind (full height = ${maxLive} replicas)`,
      ),
  )

  // Message rates, stacked: data, then control, then sync on top.
  const m = t.messagesPerSec
  const withControl = m.gossipData.map((v, i) => v + (m.gossipControl[i] ?? 0))
  const withSync = withControl.map((v, i) => v + (m.sync[i] ?? 0))
  const maxRate = niceMax(Math.max(1, ...withSync))
  lane(
    'messages / s',
    'frames/s',
    maxRate,
    (top) =>
      // Opaque, largest first: each band shows its own colour.
      series(withSync, 100, top, maxRate, '#69db7c', true, 'sync requests + responses', 1) +
      series(withControl, 100, top, maxRate, '#ffc078', true, 'gossip control (IHAVE, IWANT, GRAFT, PRUNE, SUBSCRIBE)', 1) +
      series(m.gossipData, 100, top, maxRate, '#74c0fc', true, 'gossip data', 1),
  )

  // Counter workload: total stock (sum over ids), lowest and highest live replica at each sample.
  if (t.stock !== undefined) {
    const low = t.stock.low
    const high = t.stock.high
    const maxStock = niceMax(Math.max(1, ...high.map((v) => v ?? 0)))
    const line = (values: (number | null)[], top: number, color: string, label: string): string => {
      const pts = values.flatMap((v, i) =>
        v === null ? [] : [`${x((i + 0.5) * bucket).toFixed(1)},${(top + 100 - (Math.max(0, v) / maxStock) * 100).toFixed(1)}`],
      )
      return pts.length === 0
        ? ''
        : `<polyline points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="1.5"><title>${esc(label)}</title></polyline>`
    }
    lane(
      'stock',
      'sum over ids',
      maxStock,
      (top) => line(high, top, '#2b8a3e', 'highest total stock on a live replica') + line(low, top, '#e67700', 'lowest total stock on a live replica'),
    )
  }

  // Propagation latency of (a sample of) the writes, at their issue time.
  const maxLat = niceMax(Math.max(1, ...t.latencySamples.map((p) => p[1])))
  lane('propagation', 'latency, ms', maxLat, (top) =>
    t.latencySamples
      .map(([at, lat]) => `<circle cx="${x(at).toFixed(1)}" cy="${(top + 100 - (lat / maxLat) * 100).toFixed(1)}" r="1.6" fill="#5f3dc4" fill-opacity="0.6"/>`)
      .join(''),
  )

  // Time axis.
  const ticks: string[] = []
  const step = niceStep(end / 10)
  for (let v = 0; v <= end; v += step) {
    ticks.push(
      `<line x1="${x(v).toFixed(1)}" y1="${y - 30}" x2="${x(v).toFixed(1)}" y2="${y - 25}" stroke="#868e96"/><text x="${x(v).toFixed(1)}" y="${y - 12}" text-anchor="middle">${fmtMs(v)}</text>`,
    )
  }
  const bandHeight = y - 30
  const bands = r.faults
    .filter((f) => f.toMs > f.fromMs || Number.isNaN(f.toMs))
    .map(
      (f) =>
        `<rect x="${x(f.fromMs).toFixed(1)}" y="0" width="${Math.max(1, x(Number.isNaN(f.toMs) ? end : f.toMs) - x(f.fromMs)).toFixed(1)}" height="${bandHeight}" fill="${COLORS[f.kind] ?? '#868e96'}" opacity="0.07"/>`,
    )
    .join('')
  const legend = `<text x="${LEFT}" y="${y + 8}"><tspan fill="#c92a2a">■</tspan> updates missing on live replicas  <tspan fill="#1971c2">━</tspan> replicas behind  <tspan fill="#74c0fc">■</tspan> gossip data  <tspan fill="#ffc078">■</tspan> gossip control  <tspan fill="#69db7c">■</tspan> sync  <tspan fill="#5f3dc4">●</tspan> write → last replica${t.stock === undefined ? '' : '  <tspan fill="#2b8a3e">━</tspan>/<tspan fill="#e67700">━</tspan> stock, highest/lowest replica'}</text>`
  return `<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y + 20}" viewBox="0 0 ${W} ${y + 20}" role="img" aria-label="timeline of faults, divergence, message rates and latency">
${bands}
${lanes.join('\n')}
${ticks.join('')}
${legend}
</svg>`
}

function row(label: string, value: string | number | null | undefined): string {
  return `<tr><td>${esc(label)}</td><td class="num">${esc(value === null || value === undefined ? '—' : String(value))}</td></tr>`
}

function latencyRows(label: string, s: Summary): string {
  if (s.count === 0) return row(label, 'no writes')
  return row(`${label} (n=${s.count})`, `median ${s.median} · p99 ${s.p99} · max ${s.max} ms`)
}

function niceMax(v: number): number {
  const exp = 10 ** Math.floor(Math.log10(v))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= v) return m * exp
  return 10 * exp
}

function niceStep(v: number): number {
  return niceMax(Math.max(1, v))
}

function fmtMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 120_000) return `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)} s`
  return `${(ms / 60_000).toFixed(1)} min`
}

function fmtNum(v: number): string {
  return v >= 10_000 ? `${Math.round(v / 1000)}k` : String(v)
}

function mb(bytes: number): string {
  return `${Math.round(bytes / 1024 / 1024)} MiB`
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)
}
