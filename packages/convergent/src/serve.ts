import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Registry } from 'prom-client'
import { ConvergentError, type Replica } from '@convergent/core'
import { createMetrics } from './metrics.js'

export interface ServeOptions {
  /** Interface to listen on. Default '127.0.0.1' (this machine only). */
  host?: string
  /** Port; 0 (the default) = any free port (read it from `url`). */
  port?: number
}

export interface Served {
  /** Where it listens, e.g. http://127.0.0.1:9464 */
  readonly url: string
  /** Stops listening and closes every connection (keep-alive ones too). Idempotent. */
  close(): Promise<void>
}

/** How long /healthz waits for the store's answer. */
const STORE_CHECK_MS = 2_000

/** Replicas that got a registry from serve() (opened without open(), so without `metrics`). */
const registries = new WeakMap<Replica, Registry>()

/** The replica's registry: `replica.metrics` (open() makes it), else one made here once. */
function registryOf(replica: Replica & { metrics?: Registry }): Registry {
  if (replica.metrics !== undefined) return replica.metrics
  let registry = registries.get(replica)
  if (registry === undefined) registries.set(replica, (registry = createMetrics(replica)))
  return registry
}

/**
 * Serves a replica's health and metrics over HTTP (node:http, GET and HEAD, no request body read):
 *
 * - `GET /metrics`: `replica.metrics` in the Prometheus text format
 * - `GET /healthz`: 200 while the replica is open and its store answers a read; 503 and why otherwise
 * - `GET /readyz`: 200 once ready (see ReplicaStatus.ready), 503 and why before; JSON
 * - `GET /status`: `replica.status()` as JSON
 *
 * Other paths get 404, HEAD is GET without the body, other methods get 405. Listens on 127.0.0.1 unless told otherwise: the
 * endpoints have no authentication, and /status names the peers.
 */
export async function serve(replica: Replica & { metrics?: Registry }, options: ServeOptions = {}): Promise<Served> {
  const host = options.host ?? '127.0.0.1'
  const port = options.port ?? 0
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConvergentError('ERR_INVALID_ARGUMENT', `serve({ port }) is an integer from 0 to 65535 (0 = any free port), got ${String(port)}`)
  }
  const registry = registryOf(replica)
  let closing: Promise<void> | undefined

  // Timeouts checked every second (Node's default is every 30 s): sockets that never finish a
  // request are closed within ~5 s, so they cannot hold the connection slots probes need long.
  const server = createServer(
    { requestTimeout: 10_000, headersTimeout: 5_000, keepAliveTimeout: 5_000, connectionsCheckingInterval: 1_000, maxHeaderSize: 16_384 },
    (req, res) => {
      handle(req, res).catch((err: unknown) => send(res, 500, 'text/plain; charset=utf-8', `internal error: ${(err as Error).message}\n`))
    },
  )
  server.maxConnections = 256

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A body is never read: a request that has one gets its answer and the connection closes.
    if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) res.setHeader('Connection', 'close')
    // HEAD as GET without the body (Node leaves it out): some load balancers probe with it.
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD')
      return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed: GET or HEAD only\n')
    }
    const path = (req.url ?? '/').split('?', 1)[0]
    switch (path) {
      case '/metrics':
        return send(res, 200, registry.contentType, await registry.metrics())
      case '/healthz': {
        const problem = closing !== undefined ? 'the server is closing' : await storeProblem(replica)
        if (problem === undefined) return send(res, 200, 'text/plain; charset=utf-8', 'ok\n')
        return send(res, 503, 'text/plain; charset=utf-8', `unhealthy: ${problem}\n`)
      }
      case '/readyz': {
        const { ready } = replica.status()
        return sendJson(res, ready.ready ? 200 : 503, ready)
      }
      case '/status':
        return sendJson(res, 200, replica.status())
      default:
        return send(res, 404, 'text/plain; charset=utf-8', 'not found: GET /metrics, /healthz, /readyz or /status\n')
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
  return {
    url,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      return closing
    },
  }
}

/** Why the replica's store does not answer a small read now, or undefined if it does. */
async function storeProblem(replica: Replica): Promise<string | undefined> {
  if (replica.closed) return 'the replica is closed'
  let timer: NodeJS.Timeout | undefined
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the store did not answer within ${STORE_CHECK_MS} ms`)), STORE_CHECK_MS)
    })
    await Promise.race([replica.checkStore(), timeout])
    return undefined
  } catch (err) {
    return `store: ${(err as Error).message}`
  } finally {
    clearTimeout(timer)
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  if (res.headersSent) {
    res.end()
    return
  }
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' })
  res.end(body)
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(value, null, 2)}\n`)
}
