/**
 * A real Prometheus server for tests (Debian's `prometheus` binary): spawned on 127.0.0.1 on a
 * free port, with a config and a TSDB in a temp folder, static scrape targets; close() stops
 * it and removes the folder.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { connect, createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'

/** The full path of an executable on PATH, or undefined. */
export function which(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    const file = join(dir, command)
    try {
      accessSync(file, constants.X_OK)
      return file
    } catch {
      // not here
    }
  }
  return undefined
}

export interface ScrapeTarget {
  /** Becomes the `service` label of its series. */
  service: string
  /** Base URL, e.g. http://127.0.0.1:40123 (scraped at /metrics). */
  url: string
}

export interface PrometheusOptions {
  targets: ScrapeTarget[]
  /** Rule files to load (absolute paths). */
  ruleFiles?: string[]
  /** Scrape and rule evaluation interval, seconds. Default 1. */
  intervalS?: number
  /** The binary. Default: `prometheus` on PATH. */
  binary?: string
}

export interface InstantVector {
  metric: Record<string, string>
  value: [number, string]
}

const JOB = 'ecommerce'
const START_TIMEOUT_MS = 20_000

export class PrometheusServer {
  private output = ''
  private exited: Promise<void>

  private constructor(
    readonly url: string,
    readonly dir: string,
    readonly child: ChildProcess,
    readonly targets: ScrapeTarget[],
  ) {
    child.stdout?.on('data', (c: Buffer) => this.append(c))
    child.stderr?.on('data', (c: Buffer) => this.append(c))
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve()
      child.once('exit', () => resolve())
      // Could not be spawned at all: no 'exit' follows.
      child.once('error', (err) => {
        this.append(Buffer.from(`spawn failed: ${err.message}\n`))
        resolve()
      })
    })
  }

  /** Starts Prometheus and resolves once it answers /-/ready; everything is cleaned up if it does not. */
  static async start(options: PrometheusOptions): Promise<PrometheusServer> {
    const binary = options.binary ?? which('prometheus')
    if (binary === undefined) throw new Error('prometheus is not on PATH')
    const interval = `${options.intervalS ?? 1}s`
    const dir = await mkdtemp(join(tmpdir(), 'convergent-prometheus-'))
    const config = [
      'global:',
      `  scrape_interval: ${interval}`,
      `  scrape_timeout: ${interval}`,
      `  evaluation_interval: ${interval}`,
      ...(options.ruleFiles?.length ? ['rule_files:', ...options.ruleFiles.map((f) => `  - ${JSON.stringify(f)}`)] : []),
      'scrape_configs:',
      `  - job_name: ${JOB}`,
      '    static_configs:',
      ...options.targets.flatMap((t) => [
        `      - targets: [${JSON.stringify(new URL(t.url).host)}]`,
        `        labels: { service: ${JSON.stringify(t.service)} }`,
      ]),
      '',
    ].join('\n')
    await writeFile(join(dir, 'prometheus.yml'), config)
    let server: PrometheusServer | undefined
    try {
      const port = await freePort()
      const child = spawn(
        binary,
        [
          `--config.file=${join(dir, 'prometheus.yml')}`,
          `--storage.tsdb.path=${join(dir, 'data')}`,
          `--web.listen-address=127.0.0.1:${port}`,
          '--log.level=warn',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      )
      server = new PrometheusServer(`http://127.0.0.1:${port}`, dir, child, options.targets)
      await server.waitReady()
      return server
    } catch (err) {
      if (server) await server.close()
      else await rm(dir, { recursive: true, force: true })
      throw err
    }
  }

  get running(): boolean {
    return this.child.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  /** What Prometheus wrote on stdout and stderr (its last 8 KB). */
  get log(): string {
    return this.output
  }

  /** SIGTERM (SIGKILL after 5 s), then removes the temp folder. Idempotent. */
  async close(): Promise<void> {
    if (this.running) {
      this.child.kill('SIGTERM')
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000)
      await this.exited
      clearTimeout(timer)
    }
    await rm(this.dir, { recursive: true, force: true })
  }

  /** GET /api/v1/<path>; throws with Prometheus's error unless it answers success. */
  async api<T>(path: string, params: Record<string, string> = {}): Promise<T> {
    const url = `${this.url}/api/v1/${path}${Object.keys(params).length ? `?${new URLSearchParams(params).toString()}` : ''}`
    const { status, body } = await httpGet(url)
    let parsed: { status?: string; data?: T; error?: string }
    try {
      parsed = JSON.parse(body) as typeof parsed
    } catch {
      throw new Error(`GET ${url} → ${status}: ${body.slice(0, 300)}`)
    }
    if (parsed.status !== 'success') throw new Error(`GET ${url} → ${status}: ${parsed.error ?? body.slice(0, 300)}`)
    return parsed.data as T
  }

  /** An instant query (at `time`, seconds since epoch; default now): its vector result. */
  async query(expr: string, time?: number): Promise<InstantVector[]> {
    const data = await this.api<{ resultType: string; result: InstantVector[] }>('query', {
      query: expr,
      ...(time !== undefined ? { time: String(time) } : {}),
    })
    if (data.resultType !== 'vector') throw new Error(`${expr}: a ${data.resultType}, not a vector`)
    return data.result
  }

  /** An instant query's values by one label. */
  async queryBy(label: string, expr: string, time?: number): Promise<Record<string, number>> {
    const out: Record<string, number> = {}
    for (const v of await this.query(expr, time)) out[v.metric[label] ?? ''] = Number(v.value[1])
    return out
  }

  /**
   * Resolves once every target has been scraped since `sinceMs` (epoch ms) and the scrape is
   * queryable: the `up` sample of each target (written after its scrape's samples) is that new.
   */
  async waitForScrape(sinceMs = Date.now(), timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const up = await this.query(`timestamp(up{job="${JOB}"})`)
      const fresh = up.filter((v) => Number(v.value[1]) * 1000 > sinceMs).length
      if (fresh === this.targets.length) return
      if (Date.now() > deadline) throw new Error(`no scrape of every target within ${timeoutMs} ms (${fresh} of ${this.targets.length} fresh)\n${this.log}`)
      if (!this.running) throw new Error(`prometheus exited\n${this.log}`)
      await sleep(100)
    }
  }

  private async waitReady(): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS
    for (;;) {
      if (!this.running) throw new Error(`prometheus exited before it was ready (${this.child.exitCode ?? this.child.signalCode})\n${this.log}`)
      const ready = await httpGet(`${this.url}/-/ready`).then(
        (r) => r.status === 200,
        () => false,
      )
      if (ready) return
      if (Date.now() > deadline) throw new Error(`prometheus not ready within ${START_TIMEOUT_MS} ms\n${this.log}`)
      await sleep(100)
    }
  }

  private append(chunk: Buffer): void {
    this.output = (this.output + chunk.toString('utf8')).slice(-8192)
  }
}

/** Runs promtool with stdin; its exit code and output. */
export function promtool(args: string[], input?: string): { status: number | null; output: string } {
  const r = spawnSync(which('promtool') ?? 'promtool', args, { input, encoding: 'utf8', timeout: 20_000 })
  return { status: r.status, output: `${r.stdout}${r.stderr}` }
}

/** GET on a connection of its own; status and body whatever the status. */
export function httpGet(url: string, timeoutMs = 5_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('error', reject)
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end()
  })
}

/** A port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** True if something accepts connections on 127.0.0.1:port. */
export function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
