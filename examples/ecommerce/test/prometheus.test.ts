/**
 * The demo's services scraped by a real Prometheus (Debian's `prometheus` binary, on
 * 127.0.0.1, a free port, a temp TSDB, scraping every second, with the repo's alert rules
 * loaded): a partition and a heal, then Prometheus's HTTP API shows what the services recorded.
 * Skipped, with a message, when the binary is missing (.ci/run installs it).
 */
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { isAlive, runScenario, type Milestone, type ScenarioResult, type ServiceHandle } from '../src/index.js'
import { httpGet, listening, promtool, PrometheusServer, which } from './prometheus-server.js'

const RULES = fileURLToPath(new URL('../../../../ops/prometheus/convergent-alerts.yml', import.meta.url))
const DASHBOARD = fileURLToPath(new URL('../../../../ops/grafana/convergent-dashboard.json', import.meta.url))
const LAG = 'convergent_replication_lag_seconds'

interface Dashboard {
  panels: { type: string; title: string; targets?: { expr: string }[] }[]
}

describe('e-commerce services scraped by a real Prometheus', function () {
  this.timeout(60_000)
  let prometheus: PrometheusServer | undefined
  let r: ScenarioResult
  /** Epoch seconds at each milestone, once Prometheus had scraped every service after it. */
  const at: Partial<Record<Milestone, number>> = {}
  let alertsInPartition: { labels: Record<string, string>; state: string }[] = []
  let scrapeText = ''
  const probes: { service: string; path: string; status: number }[] = []

  before(async function () {
    if (which('prometheus') === undefined) {
      console.log("    (skipped: no `prometheus` binary on PATH — install Debian's prometheus package; .ci/run does)")
      this.skip()
    }
    this.timeout(55_000)
    const scraped = async (name: Milestone): Promise<void> => {
      await prometheus!.waitForScrape(Date.now())
      at[name] = Date.now() / 1000
    }
    r = await runScenario(
      { quick: true, orders: 40, seed: 11 },
      {
        milestone: async (name: Milestone, services: ServiceHandle[]) => {
          if (name === 'started') {
            prometheus = await PrometheusServer.start({ targets: services.map((s) => ({ service: s.name, url: s.metricsUrl })), ruleFiles: [RULES] })
          }
          await scraped(name)
          if (name === 'partition-ends') {
            // Rules are evaluated every second: give the partition's alert one evaluation.
            const seen = (): boolean => alertsInPartition.some((a) => a.labels.alertname === 'ConvergentPeersBelowBootstrap')
            for (let i = 0; i < 30 && !seen(); i++) {
              ;({ alerts: alertsInPartition } = await prometheus!.api<{ alerts: { labels: Record<string, string>; state: string }[] }>('alerts'))
              if (!seen()) await new Promise((resolve) => setTimeout(resolve, 100))
            }
          }
          if (name === 'done') {
            scrapeText = (await httpGet(`${services[0]!.metricsUrl}/metrics`)).body
            for (const s of services) {
              for (const path of ['/healthz', '/readyz']) probes.push({ service: s.name, path, status: (await httpGet(`${s.metricsUrl}${path}`)).status })
            }
          }
        },
      },
    )
    if (r.error !== null) throw new Error(`the scenario failed: ${r.error}\n${prometheus?.log ?? ''}`)
  })

  after(async () => {
    await prometheus?.close()
  })

  /** Per service: how much a counter expression grew between two milestones. */
  async function growth(expr: string, from: Milestone, to: Milestone): Promise<Record<string, number>> {
    const [a, b] = await Promise.all([prometheus!.queryBy('service', expr, at[from]), prometheus!.queryBy('service', expr, at[to])])
    return Object.fromEntries(Object.entries(b).map(([service, v]) => [service, v - (a[service] ?? 0)]))
  }

  it('the services expose /metrics, /healthz and /readyz, and Prometheus scraped all three', async () => {
    expect(r.services.map((s) => s.metricsUrl)).to.have.length(3)
    for (const s of r.services) expect(s.metricsUrl, s.name).to.match(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect(probes).to.have.length(6)
    for (const p of probes) expect(p.status, `${p.service} ${p.path}`).to.equal(200)
    const up = await prometheus!.queryBy('service', 'up{job="ecommerce"}', at.done)
    expect(up).to.deep.equal({ inventory: 1, orders: 1, payments: 1 })
  })

  it('recorded writes on both sides of the partition, and applies from peers on the side that stayed connected', async () => {
    const writes = await growth('sum by (service) (convergent_writes_total)', 'partition-begins', 'partition-ends')
    expect(writes.inventory, 'shop-counter orders written by inventory').to.be.greaterThan(0)
    expect(writes.orders, 'web orders written by the orders service').to.be.greaterThan(0)
    const applied = await growth('sum by (service) (convergent_deltas_applied_total{origin="remote"})', 'partition-begins', 'partition-ends')
    expect(applied.payments, "payments applied the orders service's web orders").to.be.greaterThan(0)
  })

  it('recorded the heal: inventory and orders applied what the other side wrote, payments paid for it', async () => {
    const applied = await growth('sum by (service) (convergent_deltas_applied_total{origin="remote"})', 'partition-ends', 'converged-after-heal')
    expect(applied.inventory, 'inventory applied changes it missed').to.be.greaterThan(0)
    expect(applied.orders, 'orders applied the shop-counter orders').to.be.greaterThan(0)
    const writes = await growth('sum by (service) (convergent_writes_total)', 'partition-ends', 'converged-after-heal')
    expect(writes.payments, "payments wrote the payments of inventory's orders").to.be.greaterThan(0)
  })

  it('recorded the replication lag of what gossip delivered, before and during the partition (convergent_replication_lag_seconds)', async function () {
    // The services export the histogram: no series would be a failure, not a skip.
    expect(await prometheus!.query(`${LAG}_count`, at.done), `${LAG} series`).to.not.have.length(0)
    // Lag samples come from gossip (pushes carry their commit time); what the heal delivers comes
    // by anti-entropy (no sample), and payments — readable by orders and inventory only — is
    // never gossiped. Orders and stock changes gossip between the services of each side.
    const count = await growth(`sum by (service) (${LAG}_count)`, 'started', 'partition-ends')
    const [busiest, samples] = Object.entries(count).sort((a, b) => b[1] - a[1])[0] ?? ['none', 0]
    expect(samples, `lag observations before and during the partition: ${JSON.stringify(count)}`).to.be.greaterThan(0)
    const window = Math.ceil(at['partition-ends']! - at.started!) + 1
    const p99 = await prometheus!.queryBy(
      'service',
      `histogram_quantile(0.99, sum by (service, le) (increase(${LAG}_bucket[${window}s])))`,
      at['partition-ends'],
    )
    expect(p99[busiest], `lag p99 at ${busiest}`).to.be.greaterThan(0)
  })

  it('loaded the alert rules, evaluated them on the live series without error, and saw the partition as a pending alert', async () => {
    const { groups } = await prometheus!.api<{ groups: { name: string; rules: { name: string; health: string; lastError?: string }[] }[] }>('rules')
    const rules = groups.flatMap((g) => g.rules)
    expect(rules.length).to.be.at.least(8)
    for (const rule of rules) expect([rule.name, rule.health, rule.lastError ?? '']).to.deep.equal([rule.name, 'ok', ''])
    // Payments has two bootstrap peers and reaches only orders while inventory is cut off.
    const below = alertsInPartition.filter((a) => a.labels.alertname === 'ConvergentPeersBelowBootstrap').map((a) => [a.labels.service, a.state])
    expect(below).to.deep.include(['payments', 'pending'])
    const { alerts } = await prometheus!.api<{ alerts: { labels: Record<string, string>; state: string }[] }>('alerts')
    expect(alerts.filter((a) => a.state === 'firing')).to.deep.equal([])
  })

  it("answers every Grafana dashboard panel's query, with data for the demo's writes, applies, peers and rounds", async () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard
    const empty: string[] = []
    for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) {
      for (const target of panel.targets ?? []) {
        const expr = target.expr.replaceAll('$__rate_interval', '20s').replaceAll('$job', '.*').replaceAll('$instance', '.*')
        const result = await prometheus!.query(expr, at['converged-after-heal'])
        if (result.length === 0) empty.push(panel.title)
      }
    }
    for (const title of ['Writes /s', 'Applies /s', 'Peers', 'Ready', 'Sync rounds /s', 'Store batch duration p50 / p99', 'Cache hit ratio']) {
      expect(empty, `${title} has data`).to.not.include(title)
    }
  })

  it('a scrape of /metrics passes `promtool check metrics`', function () {
    if (which('promtool') === undefined) {
      console.log('    (skipped: no `promtool` on PATH)')
      this.skip()
    }
    expect(scrapeText).to.include('convergent_writes_total')
    const { status, output } = promtool(['check', 'metrics'], scrapeText)
    expect(output.trim()).to.equal('')
    expect(status).to.equal(0)
  })

  it('the scenario held its invariants with Prometheus scraping', () => {
    expect(r.invariants.filter((i) => !i.ok)).to.deep.equal([])
    expect(r.metricSamples.length, "the demo's own /metrics samples").to.be.greaterThan(3)
  })

  it('stops Prometheus and the services: no process, port or temp folder left', async () => {
    const p = prometheus!
    const port = Number(new URL(p.url).port)
    await p.close()
    expect(p.running).to.equal(false)
    expect(isAlive(p.child.pid!)).to.equal(false)
    expect(await listening(port)).to.equal(false)
    expect(existsSync(p.dir)).to.equal(false)
    for (const pid of r.pids) expect(isAlive(pid), `service pid ${pid}`).to.equal(false)
    for (const s of r.services) expect(await listening(Number(new URL(s.metricsUrl).port)), `${s.name} metrics port`).to.equal(false)
    expect(existsSync(r.dataRoot)).to.equal(false)
  })
})
