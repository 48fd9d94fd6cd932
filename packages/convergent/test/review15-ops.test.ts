// Review 15: the alert rules (ops/prometheus/convergent-alerts.yml) checked against the metric
// the code actually exports, with its real buckets, through `promtool test rules`.
import { expect } from 'chai'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LoopbackHub, Replica, silentLogger, type Store } from '@convergent/core'
import { automergeBackend } from '@convergent/automerge'
import { memoryLevelStore } from '@convergent/level'
import { createMetrics } from '../src/index.js'
import { encodeMessage, MessageType, topicOf } from '@convergent/core/internal'
import { yjsBackend } from '@convergent/yjs'
import { replicasAfterEach, waitFor } from './helpers.js'
import { parsePrometheusText } from './prometheus.js'

const RULES = resolve(fileURLToPath(import.meta.url), '../../../../../ops/prometheus/convergent-alerts.yml')

describe('review 15: alert rules against the exported metrics', function () {
  this.timeout(60_000)
  const suite = replicasAfterEach('convergent-review15-', { network: false })

  // HOLE (ConvergentReplicationLagHigh can never fire): the rule is
  // `histogram_quantile(0.99, … convergent_replication_lag_seconds_bucket …) > 60`, but the
  // histogram's highest finite bucket is 60 (LAG_BUCKETS in metrics.ts). When the 99th
  // percentile lies beyond it, histogram_quantile returns the highest finite bound — exactly
  // 60 — and `60 > 60` is false: with pushes arriving 5 minutes late, or never (only
  // anti-entropy), the alert stays silent. Its promtool unit test passes only because it feeds
  // a `le="120"` bucket the code does not export.
  // Fix: add buckets above 60 (120, 300, 600, 1800) and/or alert at `>= 60` / on the share of
  // samples above le="60"; build the promtool test's input from the real bucket list.
  it('with every change arriving 5 minutes late, ConvergentReplicationLagHigh fires', async function () {
    if (spawnSync('promtool', ['--version']).status !== 0) this.skip()
    const hub = new LoopbackHub()
    const victim = await suite.replica({ network: hub.createNetwork('victim'), logger: silentLogger })
    victim.collection('orders', { backend: 'yjs' })
    const evil = hub.createNetwork('evil')
    suite.first(() => evil.stop())
    await evil.start({ onMessage: () => {}, onRequest: async () => new Uint8Array(), onPeerConnected: () => {}, onPeerDisconnected: () => {} })
    await waitFor(() => victim.peers().includes('evil'), 'connected')
    const backend = yjsBackend()
    const delta = backend.put(backend.create(new Uint8Array(16).fill(3)), { total: 1 }).delta!
    await evil.publish(
      topicOf('default', 'orders'),
      encodeMessage(MessageType.Push, { c: 'orders', b: 'yjs', o: 'evil', s: 1, e: [['o1', delta]], t: Date.now() - 300_000 }),
    )
    let les: string[] = []
    await waitFor(async () => {
      const samples = parsePrometheusText(await victim.metrics.metrics())
      les = samples.filter((s) => s.name === 'convergent_replication_lag_seconds_bucket' && s.labels.collection === 'orders').map((s) => s.labels.le!)
      return les.length > 0
    }, 'a lag sample')
    // Every sample 300 s: each bucket from le=300 up grows, 10 a minute, for 20 minutes.
    const series = les
      .map(
        (le) =>
          `      - series: 'convergent_replication_lag_seconds_bucket{job="shop",instance="late:9464",collection="orders",le="${le}"}'\n        values: '${le === '+Inf' || Number(le) >= 300 ? '0+10x20' : '0x20'}'`,
      )
      .join('\n')
    const test = `rule_files:\n  - ${RULES}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n${series}\n    alert_rule_test:\n      - eval_time: 18m\n        alertname: ConvergentReplicationLagHigh\n        exp_alerts:\n          - exp_labels: { severity: warning, job: shop, instance: 'late:9464' }\n`
    const dir = mkdtempSync(join(tmpdir(), 'review15-promtool-'))
    try {
      writeFileSync(join(dir, 'lag.test.yml'), test)
      const r = spawnSync('promtool', ['test', 'rules', join(dir, 'lag.test.yml')], { encoding: 'utf8' })
      // The test names the labels only: promtool then reports the annotations as a mismatch, but
      // lists the alert under `got` only if it fired.
      const out = `${r.stdout}${r.stderr}`
      expect(out, `buckets exported: ${les.join(', ')}`).to.match(/got:\[\s*0:\s*Labels:\{alertname="ConvergentReplicationLagHigh", instance="late:9464"/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
  // HOLE (store damage found at open is invisible to metrics and alerts): when LevelDB drops
  // records while recovering its log at open (store.damage: data lost on this replica), the
  // replica logs an error and status().store.damage says so, but no metric moves:
  // convergent_store_corrupt_records_total counts only records failing their checksum later,
  // and ConvergentStoreCorruption (`increase(…[15m]) > 0`) cannot see a counter that is already
  // non-zero at its first scrape after a restart either. The one damage that loses data at a
  // restart pages no one. Fix: a gauge convergent_store_damaged (len(store.damage)) with an
  // alert `convergent_store_damaged > 0`, or count it into the corrupt-records counter and
  // alert on `> 0` with a `resets()`-aware expression.
  it('a store that reports damage at open shows in a metric', async () => {
    const inner = memoryLevelStore()
    const store = new Proxy(inner, {
      get: (t, p) => (p === 'damage' ? ['LevelDB dropped 3 records of its log'] : (Reflect.get(t, p, t) as unknown)),
    }) as unknown as Store
    const replica = await Replica.open({ store, backends: [yjsBackend(), automergeBackend()], logger: silentLogger, syncIntervalMs: 0 })
    suite.opened(replica)
    expect(replica.status().store.damage).to.have.length(1)
    const samples = parsePrometheusText(await createMetrics(replica, { processMetrics: false }).metrics())
    const damage = samples.filter((s) => /damage|corrupt/.test(s.name) && s.value > 0)
    expect(damage, `series about store damage: ${JSON.stringify(samples.filter((s) => /damage|corrupt/.test(s.name)))}`).to.have.length.greaterThan(0)
  })
})
