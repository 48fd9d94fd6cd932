import { expect } from 'chai'
import {
  parsePrometheusText,
  quantileBetween,
  renderReport,
  resolveSettings,
  type LagHistogram,
  type MetricsSample,
  type ScenarioResult,
} from '../src/index.js'

describe("the demo's own /metrics samples and the report's metrics charts", () => {
  it('reads the Prometheus text format: names, escaped label values, values', () => {
    const series = parsePrometheusText(
      [
        '# HELP convergent_writes_total Local writes.',
        '# TYPE convergent_writes_total counter',
        'convergent_writes_total{collection="orders"} 3',
        'convergent_writes_total{collection="a \\"b\\" \\\\ c"} 1',
        'convergent_peers 2',
        '',
        'convergent_replication_lag_seconds_bucket{le="+Inf",origin="x"} 5 1700000000000',
      ].join('\n'),
    )
    expect(series).to.deep.equal([
      { name: 'convergent_writes_total', labels: { collection: 'orders' }, value: 3 },
      { name: 'convergent_writes_total', labels: { collection: 'a "b" \\ c' }, value: 1 },
      { name: 'convergent_peers', labels: {}, value: 2 },
      { name: 'convergent_replication_lag_seconds_bucket', labels: { le: '+Inf', origin: 'x' }, value: 5 },
    ])
  })

  it('takes a quantile of the observations between two histogram samples as histogram_quantile does', () => {
    const h = (counts: number[]): LagHistogram => ({ buckets: [0.1, 1, 10, Infinity].map((le, i) => [le, counts[i]!]), count: counts.at(-1)!, sum: 0 })
    // 100 observations in between: 90 up to 0.1 s, 10 in (1, 10]. p50 interpolates in the first
    // bucket; p99 at rank 99 is 9/10 of the way through (1, 10].
    const before = h([10, 10, 10, 10])
    const after = h([100, 100, 110, 110])
    expect(quantileBetween(before, after, 0.5)).to.be.closeTo((0.1 * 50) / 90, 1e-9)
    expect(quantileBetween(before, after, 0.99)).to.be.closeTo(1 + 9 * 0.9, 1e-9)
    expect(quantileBetween(after, after, 0.99), 'nothing observed in between').to.equal(null)
    expect(quantileBetween(null, h([0, 0, 0, 4]), 0.99), 'only in +Inf: the highest finite bound').to.equal(10)
  })

  function result(metricSamples: MetricsSample[]): ScenarioResult {
    return {
      settings: resolveSettings({ quick: true }),
      startedAt: '',
      durationMs: 4000,
      dataRoot: '/nowhere',
      kept: false,
      services: [{ name: 'orders', pid: 1, url: 'http://127.0.0.1:1', metricsUrl: 'http://127.0.0.1:2', peerId: 'p', logFile: '' }],
      phases: [{ name: 'converging', startMs: 1000, endMs: 3000 }],
      attempts: [],
      initialStock: {},
      rightsAtCut: null,
      convergence: { afterHealMs: 5, afterHealOk: true, finalMs: 1, finalOk: true },
      finalStates: [],
      lowestStock: { polled: 1, watched: {}, overall: 1 },
      samples: [],
      metricSamples,
      lost: { checked: 0, missing: [] },
      exampleView: null,
      privacy: null,
      trust: null,
      processesLeft: [],
      httpRetries: 0,
      pids: [],
      interrupted: false,
      error: null,
      invariants: [],
    }
  }

  it('charts writes and applies per second; lag is n/a without the histogram', () => {
    const samples: MetricsSample[] = [0, 1000, 2000, 3000].map((t, i) => ({ t, service: 'orders', writes: i * 10, appliedRemote: i * 5, lag: null }))
    const html = renderReport(result(samples))
    expect(html).to.include('Changes from peers applied /s (solid) and local writes /s (dashed)')
    expect(html).to.include('http://127.0.0.1:2/metrics')
    expect(html).to.match(/<strong>Replication lag:<\/strong> n\/a/)
  })

  it('charts the lag p99 per interval and reports it over the heal when the services export the histogram', () => {
    const lag = (fast: number, slow: number): LagHistogram => ({
      buckets: [
        [0.1, fast],
        [1, fast],
        [10, fast + slow],
        [Infinity, fast + slow],
      ],
      count: fast + slow,
      sum: 0,
    })
    const samples: MetricsSample[] = [
      { t: 0, service: 'orders', writes: 0, appliedRemote: 0, lag: lag(0, 0) },
      { t: 1000, service: 'orders', writes: 1, appliedRemote: 1, lag: lag(10, 0) },
      { t: 3000, service: 'orders', writes: 2, appliedRemote: 9, lag: lag(10, 10) },
    ]
    const html = renderReport(result(samples))
    expect(html).to.include('Replication lag p99 per second')
    // Over the heal (1000 → 3000 ms): 10 observations in (1, 10]: p99 = 1 + 9 × 0.99.
    expect(html).to.include(`orders ${(1 + 9 * 0.99).toFixed(2)} s`)
    expect(html).to.not.include('n/a —')
  })
})
