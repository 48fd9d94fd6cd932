import { get } from 'node:http'
import type { ServiceName } from '../shared/protocol.js'
import type { ServiceHandle } from './cluster.js'
import { Repeater } from './repeater.js'

/** The replication lag histogram (convergent_replication_lag_seconds), summed over its labels. */
export interface LagHistogram {
  /** Cumulative counts per upper bound in seconds, ascending; the last is +Inf. */
  buckets: [le: number, count: number][]
  count: number
  sum: number
}

/** One scrape of a service's /metrics: the counters the report charts. */
export interface MetricsSample {
  /** ms since the scenario began */
  t: number
  service: ServiceName
  /** convergent_writes_total, all collections */
  writes: number
  /** convergent_deltas_applied_total{origin="remote"}, all collections: changes from peers */
  appliedRemote: number
  /** null when the service does not export convergent_replication_lag_seconds */
  lag: LagHistogram | null
}

const LAG = 'convergent_replication_lag_seconds'
const SCRAPE_TIMEOUT_MS = 2_000

/**
 * Scrapes every service's /metrics (convergent's serve()) once a second while the scenario
 * runs, as Prometheus would, for the report's charts: writes and applies over time, and the
 * replication lag where the services export it.
 */
export class MetricsSampler {
  readonly samples: MetricsSample[] = []
  private readonly repeater: Repeater

  constructor(
    private readonly services: () => ServiceHandle[],
    private readonly now: () => number,
    intervalMs = 1_000,
  ) {
    this.repeater = new Repeater(() => this.sampleOnce(), intervalMs)
  }

  start(): void {
    this.repeater.start()
  }

  stop(): Promise<void> {
    return this.repeater.stop()
  }

  async sampleOnce(): Promise<void> {
    await Promise.all(
      this.services().map(async (s) => {
        try {
          const t = this.now()
          const text = await getText(`${s.metricsUrl}/metrics`)
          this.samples.push({ t, service: s.name, ...readSample(parsePrometheusText(text)) })
        } catch {
          // A service that is stopping or busy: the next sample will tell.
        }
      }),
    )
  }
}

/** One line of the Prometheus text format: name, labels, value. */
export interface PromSeries {
  name: string
  labels: Record<string, string>
  value: number
}

/** Parses the Prometheus text exposition format (comments skipped; timestamps ignored). */
export function parsePrometheusText(text: string): PromSeries[] {
  const series: PromSeries[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line)
    if (m === null) continue
    const labels: Record<string, string> = {}
    for (const [, key, raw] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key!] = raw!.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c))
    }
    series.push({ name: m[1]!, labels, value: Number(m[3]) })
  }
  return series
}

function readSample(series: PromSeries[]): Omit<MetricsSample, 't' | 'service'> {
  let writes = 0
  let appliedRemote = 0
  const buckets = new Map<number, number>()
  let count = 0
  let sum = 0
  let hasLag = false
  for (const s of series) {
    if (s.name === 'convergent_writes_total') writes += s.value
    else if (s.name === 'convergent_deltas_applied_total' && s.labels.origin === 'remote') appliedRemote += s.value
    else if (s.name === `${LAG}_bucket`) {
      hasLag = true
      const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le)
      buckets.set(le, (buckets.get(le) ?? 0) + s.value)
    } else if (s.name === `${LAG}_count`) count += s.value
    else if (s.name === `${LAG}_sum`) sum += s.value
  }
  const lag = hasLag ? { buckets: [...buckets].sort((a, b) => a[0] - b[0]), count, sum } : null
  return { writes, appliedRemote, lag }
}

/**
 * The q-quantile of the observations between two cumulative histograms (`before` may be null:
 * from the start), interpolated within its bucket as Prometheus's histogram_quantile does.
 * null when nothing was observed in between.
 */
export function quantileBetween(before: LagHistogram | null, after: LagHistogram, q: number): number | null {
  const prior = new Map(before?.buckets ?? [])
  const counts = after.buckets.map(([le, n]) => [le, n - (prior.get(le) ?? 0)] as const)
  const total = counts.at(-1)?.[1] ?? 0
  if (total <= 0) return null
  const rank = q * total
  let lowerLe = 0
  let lowerCount = 0
  for (const [le, n] of counts) {
    if (n >= rank) {
      // In the +Inf bucket: the highest finite bound, as Prometheus answers.
      if (le === Infinity) return lowerLe
      return lowerLe + ((le - lowerLe) * (rank - lowerCount)) / Math.max(1e-12, n - lowerCount)
    }
    lowerLe = le
    lowerCount = n
  }
  return lowerLe
}

/** GET a text body on a connection of its own (closed after), or throw. */
export function getText(url: string, timeoutMs = SCRAPE_TIMEOUT_MS): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('error', reject)
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8')
        if (res.statusCode !== 200) reject(new Error(`GET ${url} → ${res.statusCode} ${body.slice(0, 200)}`))
        else resolve(body)
      })
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)))
    req.on('error', reject)
  })
}
