import { Agent, request } from 'node:http'

export interface JsonResponse<T = unknown> {
  status: number
  body: T
}

/**
 * How long the driver keeps an idle connection before closing it itself. The services keep
 * theirs open far longer (SERVICE_KEEP_ALIVE_MS in services/http-server.ts), so the driver is
 * always the side that ends an idle connection, and never sends a request on one a service is
 * closing at that moment. (Node's agent has no idle limit of its own: without `timeout` it
 * keeps a socket until the server closes it, whatever Keep-Alive hint the server sends.)
 */
export const CLIENT_IDLE_MS = 1_000

/** Attempts of an idempotent request whose kept-alive connection turned out to be closed. */
const MAX_ATTEMPTS = 3

export interface SendOptions {
  signal?: AbortSignal
  /**
   * Safe to send again (GET always is): a request that fails because the kept-alive
   * connection it went out on had been closed by the service is then retried on a new one.
   */
  idempotent?: boolean
}

/**
 * A JSON-over-HTTP client for the services with its own keep-alive pool, so the driver can
 * drop every socket at the end (destroy) and leave nothing open behind it.
 */
export class HttpClient {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 32, timeout: CLIENT_IDLE_MS })
  /** Requests sent again after their reused connection was found closed (for the report and tests). */
  retries = 0

  constructor(private readonly timeoutMs = 10_000) {}

  /** Connections kept open for reuse right now. */
  get idleConnections(): number {
    return Object.values(this.agent.freeSockets).reduce((n, sockets) => n + (sockets?.length ?? 0), 0)
  }

  get<T>(url: string, signal?: AbortSignal): Promise<JsonResponse<T>> {
    return this.send<T>('GET', url, undefined, { ...(signal ? { signal } : {}), idempotent: true })
  }

  post<T>(url: string, body: unknown, options: SendOptions = {}): Promise<JsonResponse<T>> {
    return this.send<T>('POST', url, body, options)
  }

  /** GET that must answer 2xx; anything else throws with the service's error text. */
  async getOk<T>(url: string, signal?: AbortSignal): Promise<T> {
    const res = await this.get<T>(url, signal)
    if (res.status >= 300) throw new Error(`GET ${url} → ${res.status} ${JSON.stringify(res.body)}`)
    return res.body
  }

  async postOk<T>(url: string, body: unknown, options: SendOptions = {}): Promise<T> {
    const res = await this.post<T>(url, body, options)
    if (res.status >= 300) throw new Error(`POST ${url} → ${res.status} ${JSON.stringify(res.body)}`)
    return res.body
  }

  destroy(): void {
    this.agent.destroy()
  }

  private async send<T>(method: string, url: string, body: unknown, options: SendOptions): Promise<JsonResponse<T>> {
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.sendOnce<T>(method, url, body, options.signal)
      if ('response' in outcome) return outcome.response
      if (!outcome.staleConnection || options.idempotent !== true || attempt >= MAX_ATTEMPTS || options.signal?.aborted === true) throw outcome.error
      this.retries++
    }
  }

  /**
   * One attempt. `staleConnection`: it failed with a reset on a reused keep-alive connection
   * before any response — the service had closed that connection, so it never handled the
   * request (Node's documented case for retrying: request.reusedSocket and ECONNRESET).
   */
  private sendOnce<T>(
    method: string,
    url: string,
    body: unknown,
    signal?: AbortSignal,
  ): Promise<{ response: JsonResponse<T> } | { error: Error; staleConnection: boolean }> {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    return new Promise((resolve) => {
      let responded = false
      const req = request(
        url,
        {
          method,
          agent: this.agent,
          timeout: this.timeoutMs,
          ...(signal ? { signal } : {}),
          headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        },
        (res) => {
          responded = true
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('error', (error) => resolve({ error, staleConnection: false }))
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8')
            try {
              resolve({ response: { status: res.statusCode ?? 0, body: (text ? JSON.parse(text) : null) as T } })
            } catch {
              resolve({ error: new Error(`${method} ${url} → ${res.statusCode}: not JSON: ${text.slice(0, 200)}`), staleConnection: false })
            }
          })
        },
      )
      req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out after ${this.timeoutMs} ms`)))
      req.on('error', (error: NodeJS.ErrnoException) => {
        const reset = error.code === 'ECONNRESET' || error.code === 'EPIPE'
        resolve({ error, staleConnection: reset && req.reusedSocket && !responded })
      })
      req.end(payload)
    })
  }
}
