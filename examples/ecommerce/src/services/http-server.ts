import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/** A request as handlers see it: the path parameters, the query and a JSON body reader. */
export interface HttpRequest {
  method: string
  path: string
  params: Record<string, string>
  query: URLSearchParams
  json(): Promise<unknown>
}

export interface HttpReply {
  status: number
  body: unknown
}

export type Handler = (req: HttpRequest) => Promise<HttpReply> | HttpReply

/** Thrown by handlers for a client error: answered with its status and message as JSON. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** A convergent error code behind it, sent as `code` (e.g. ERR_FORBIDDEN, ERR_FORGOTTEN). */
    readonly code?: string,
  ) {
    super(message)
  }
}

const MAX_BODY_BYTES = 64 * 1024

interface Route {
  method: string
  parts: string[]
  handler: Handler
}

/** Routes like 'GET /orders/:id' to handlers; JSON in, JSON out. */
export class Router {
  private readonly routes: Route[] = []

  on(method: string, pattern: string, handler: Handler): this {
    this.routes.push({ method, parts: pattern.split('/').filter(Boolean), handler })
    return this
  }

  /** The handler for a request and its path parameters, or a 404/405 error. */
  match(method: string, path: string): { handler: Handler; params: Record<string, string> } {
    const parts = path.split('/').filter(Boolean)
    let pathMatched = false
    for (const route of this.routes) {
      const params = matchParts(route.parts, parts)
      if (params === undefined) continue
      pathMatched = true
      if (route.method === method) return { handler: route.handler, params }
    }
    throw pathMatched ? new HttpError(405, `${method} is not allowed on ${path}`) : new HttpError(404, `no route for ${path}`)
  }
}

function matchParts(pattern: string[], parts: string[]): Record<string, string> | undefined {
  if (pattern.length !== parts.length) return undefined
  const params: Record<string, string> = {}
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!
    if (p.startsWith(':')) params[p.slice(1)] = decodeURIComponent(parts[i]!)
    else if (p !== parts[i]) return undefined
  }
  return params
}

export interface RunningServer {
  url: string
  /** Stops accepting, drops idle keep-alive connections, resolves once closed. */
  close(): Promise<void>
}

/**
 * How long a service keeps an idle keep-alive connection open: far longer than the driver
 * keeps one (CLIENT_IDLE_MS in driver/http-client.ts, 1 s), so it is the client that closes
 * idle connections. Were it the other way round, a request sent on a connection at the moment
 * the service closes it meets a reset (ECONNRESET) and is never answered — what happened with
 * 2 s here and a client agent that never closes idle connections itself.
 */
export const SERVICE_KEEP_ALIVE_MS = 30_000

/** Serves the router on 127.0.0.1:port (0 = a free port). */
export async function serve(router: Router, port: number, onError: (err: unknown) => void, options: { keepAliveMs?: number } = {}): Promise<RunningServer> {
  const server: Server = createServer((req, res) => void handle(router, req, res, onError))
  server.keepAliveTimeout = options.keepAliveMs ?? SERVICE_KEEP_ALIVE_MS
  // Headers of a request must be allowed at least as long as a connection may idle before it.
  server.headersTimeout = Math.max(server.headersTimeout, server.keepAliveTimeout + 1_000)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const { port: actual } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${actual}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

async function handle(router: Router, req: IncomingMessage, res: ServerResponse, onError: (err: unknown) => void): Promise<void> {
  let reply: HttpReply
  try {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const { handler, params } = router.match(req.method ?? 'GET', url.pathname)
    reply = await handler({ method: req.method ?? 'GET', path: url.pathname, params, query: url.searchParams, json: () => readJson(req) })
  } catch (err) {
    if (err instanceof HttpError) reply = { status: err.status, body: { error: err.message, ...(err.code ? { code: err.code } : {}) } }
    else {
      onError(err)
      reply = { status: 500, body: { error: err instanceof Error ? err.message : String(err) } }
    }
  }
  const text = JSON.stringify(reply.body)
  res.writeHead(reply.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `request body over ${MAX_BODY_BYTES} bytes`)
    chunks.push(chunk as Buffer)
  }
  if (size === 0) return {}
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new HttpError(400, 'request body is not valid JSON')
  }
}
