import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import type { Agent } from 'node:http'
import { expect } from 'chai'
import { HttpClient } from '../src/driver/http-client.js'

const CHILD = fileURLToPath(new URL('./http-child.js', import.meta.url))

/** An HTTP server in a child process (see http-child.ts for the modes); resolves with its url. */
async function startServer(mode: string): Promise<{ url: string; child: ChildProcess }> {
  const child = fork(CHILD, [mode], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const [url] = (await once(child, 'message')) as [string]
  return { url, child }
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.disconnect()
  await exited
}

/** Blocks this process's event loop, as a busy machine that does not schedule it would. */
function stall(ms: number): void {
  const until = Date.now() + ms
  while (Date.now() < until) {
    // nothing runs: no timer, no socket event
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const idleConnections = (client: HttpClient): number =>
  Object.values((client as unknown as { agent: Agent }).agent.freeSockets).reduce((n, sockets) => n + (sockets?.length ?? 0), 0)

/**
 * `npm start` once lost an order request to `read ECONNRESET`: the driver reused a kept-alive
 * connection just as the service closed it (the service closed idle connections after 2 s —
 * 3 s with Node's 1 s grace — and the driver's agent never closed any itself).
 */
describe('e-commerce HTTP: no request lost to a closed keep-alive connection', function () {
  this.timeout(30_000)
  const children: ChildProcess[] = []
  const clients: HttpClient[] = []

  afterEach(async function () {
    for (const client of clients.splice(0)) client.destroy()
    await Promise.all(children.splice(0).map(stopServer))
  })

  async function setup(mode: string): Promise<{ url: string; client: HttpClient }> {
    const { url, child } = await startServer(mode)
    children.push(child)
    const client = new HttpClient()
    clients.push(client)
    return { url, client }
  }

  it('a service keeps an idle connection open longer than the driver does; the driver closes its idle ones itself', async function () {
    const { url, client } = await setup('service')
    // A raw keep-alive connection: the service must not close it while a client may still reuse it.
    const socket: Socket = connect(Number(new URL(url).port), '127.0.0.1')
    let closedAt: number | undefined
    const t0 = Date.now()
    socket.on('end', () => (closedAt = Date.now() - t0))
    socket.on('error', () => undefined)
    socket.write('GET /ping HTTP/1.1\r\nHost: test\r\nConnection: keep-alive\r\n\r\n')
    const [head] = (await once(socket, 'data')) as [Buffer]
    expect(head.toString()).to.match(/^HTTP\/1\.1 200/)

    // The driver: one request, then its idle connection goes away on the driver's side.
    expect((await client.get<{ ok: boolean }>(`${url}/ping`)).body.ok).to.equal(true)
    await sleep(50)
    expect(idleConnections(client)).to.equal(1)
    const deadline = Date.now() + 2_500
    while (idleConnections(client) > 0 && Date.now() < deadline) await sleep(50)
    expect(idleConnections(client), 'the driver closed its idle connection within 2.5 s').to.equal(0)

    // The service still holds the raw one, idle longer than it used to allow (3 s).
    await sleep(Math.max(0, 3_500 - (Date.now() - t0)))
    expect(closedAt, 'the service closed an idle keep-alive connection').to.equal(undefined)
    socket.destroy()
  })

  it('a GET whose kept-alive connection the service closed meanwhile is sent again on a new one', async function () {
    // A server that closes idle connections after 200 ms, and a driver that is not scheduled
    // for 1 s: it wakes with a pooled connection the server has closed meanwhile.
    const { url, client } = await setup('closes-idle:200')
    for (let round = 0; round < 2; round++) {
      await client.get(`${url}/ping`)
      await sleep(50) // the connection is back in the pool
      stall(1_000)
      const res = await client.get<{ ok: boolean }>(`${url}/ping`)
      expect(res.status).to.equal(200)
    }
    expect(client.retries, 'each went out on the closed connection first').to.equal(2)
  })

  it('a POST marked idempotent is sent again the same way; one not marked is not (it fails, and the service never saw it)', async function () {
    const { url, client } = await setup('closes-idle:200')
    await client.get(`${url}/ping`)
    await sleep(50)
    stall(1_000)
    const res = await client.post<{ n: number; posts: number }>(`${url}/echo`, { n: 1 }, { idempotent: true })
    expect(res.body).to.deep.equal({ n: 1, posts: 1 })
    expect(client.retries).to.equal(1)

    await client.get(`${url}/ping`)
    await sleep(50)
    stall(1_000)
    let error: NodeJS.ErrnoException | undefined
    await client.post(`${url}/echo`, { n: 2 }).catch((err: NodeJS.ErrnoException) => (error = err))
    expect(error?.code).to.equal('ECONNRESET')
    expect((await client.getOk<{ posts: number }>(`${url}/ping`)).posts).to.equal(1)
  })
})
