import { Agent, request } from 'node:http'

export interface JsonResponse<T = unknown> {
  status: number
  body: T
}

/**
 * A JSON-over-HTTP client for the services with its own keep-alive pool, so the driver can
 * drop every socket at the end (destroy) and leave nothing open behind it.
 */
export class HttpClient {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 32 })

  constructor(private readonly timeoutMs = 10_000) {}

  get<T>(url: string, signal?: AbortSignal): Promise<JsonResponse<T>> {
    return this.send<T>('GET', url, undefined, signal)
  }

  post<T>(url: string, body: unknown, signal?: AbortSignal): Promise<JsonResponse<T>> {
    return this.send<T>('POST', url, body, signal)
  }

  /** GET that must answer 2xx; anything else throws with the service's error text. */
  async getOk<T>(url: string, signal?: AbortSignal): Promise<T> {
    const res = await this.get<T>(url, signal)
    if (res.status >= 300) throw new Error(`GET ${url} → ${res.status} ${JSON.stringify(res.body)}`)
    return res.body
  }

  async postOk<T>(url: string, body: unknown, signal?: AbortSignal): Promise<T> {
    const res = await this.post<T>(url, body, signal)
    if (res.status >= 300) throw new Error(`POST ${url} → ${res.status} ${JSON.stringify(res.body)}`)
    return res.body
  }

  destroy(): void {
    this.agent.destroy()
  }

  private send<T>(method: string, url: string, body: unknown, signal?: AbortSignal): Promise<JsonResponse<T>> {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    return new Promise((resolve, reject) => {
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
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('error', reject)
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8')
            try {
              resolve({ status: res.statusCode ?? 0, body: (text ? JSON.parse(text) : null) as T })
            } catch {
              reject(new Error(`${method} ${url} → ${res.statusCode}: not JSON: ${text.slice(0, 200)}`))
            }
          })
        },
      )
      req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out after ${this.timeoutMs} ms`)))
      req.on('error', reject)
      req.end(payload)
    })
  }
}
