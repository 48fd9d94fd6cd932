// serve(): /metrics, /healthz, /readyz, /status over node:http, with real LevelDB folders and
// real libp2p nodes on 127.0.0.1. The test process must exit on its own (mocha runs with
// exit: false): close() may leave no socket or server behind.
import { request, Agent, type IncomingHttpHeaders } from 'node:http'
import { connect } from 'node:net'
import { expect } from 'chai'
import { Replica, silentLogger } from '@convergent/core'
import { memoryLevelStore } from '@convergent/level'
import { yjsBackend } from '@convergent/yjs'
import { serve, type ReplicaStatus, type ReplicaWithMetrics, type Served } from '../src/index.js'
import { replicasAfterEach, waitFor } from './helpers.js'
import { parsePrometheusText, valueOf } from './prometheus.js'

interface Reply {
  status: number
  headers: IncomingHttpHeaders
  body: string
}

/** One HTTP request; a fresh connection closed after it unless an agent is given. */
function http(url: string, path: string, options: { method?: string; body?: string; agent?: Agent } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}${path}`,
      {
        method: options.method ?? 'GET',
        agent: options.agent ?? false,
        headers: options.body !== undefined ? { 'content-length': Buffer.byteLength(options.body) } : {},
      },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => (body += d))
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(options.body)
  })
}

/** Open servers, sockets and timers of this process, by kind. */
function handles(): Map<string, number> {
  const counts = new Map<string, number>()
  for (const kind of process.getActiveResourcesInfo()) counts.set(kind, (counts.get(kind) ?? 0) + 1)
  return counts
}

describe('serve(replica)', function () {
  this.timeout(30_000)
  const suite = replicasAfterEach('convergent-serve-')
  const replica = suite.replica

  async function serving(r: Replica): Promise<Served> {
    const s = await serve(r)
    suite.first(() => s.close())
    return s
  }

  describe('two replicas over libp2p', function () {
    let a: ReplicaWithMetrics
    let b: ReplicaWithMetrics
    let url: string

    beforeEach(async function () {
      // No automatic rounds: the test decides when b syncs. a holds a write b lacks, made
      // before b connects (a collection created later is announced, and b would sync at once).
      a = await replica({ syncOnConnect: false })
      await a.collection('orders').put('o1', { total: 1 })
      b = await replica({ syncOnConnect: false, peers: [a.multiaddrs[0]!] })
      url = (await serving(b)).url
    })

    it('GET /metrics: the registry in Prometheus text format, with its content type', async () => {
      await waitFor(() => b.peers().length === 1, 'connected')
      await b.sync()
      const reply = await http(url, '/metrics')
      expect(reply.status).to.equal(200)
      expect(reply.headers['content-type']).to.equal(b.metrics.contentType)
      expect(reply.headers['content-type']).to.match(/^text\/plain; version=0\.0\.4/)
      const samples = parsePrometheusText(reply.body)
      expect(valueOf(samples, 'convergent_deltas_applied_total', { collection: 'orders', origin: 'remote' })).to.equal(1)
      expect(valueOf(samples, 'convergent_sync_rounds_total', { result: 'ok' })).to.equal(1)
      expect(valueOf(samples, 'convergent_sync_round_duration_seconds_count')).to.equal(1)
      expect(valueOf(samples, 'convergent_peers')).to.equal(1)
      expect(valueOf(samples, 'convergent_divergent_entities', { peer: a.peerId })).to.equal(0)
      expect(valueOf(samples, 'convergent_ready')).to.equal(0) // that round received what b lacked
      expect(valueOf(samples, 'process_resident_memory_bytes')).to.be.greaterThan(0)
      expect(url).to.match(/^http:\/\/127\.0\.0\.1:\d+$/)
    })

    it('GET /readyz: 503 with the reason before a round and after one that found something missing, 200 after a clean round', async () => {
      const before = await http(url, '/readyz')
      expect(before.status).to.equal(503)
      expect(before.headers['content-type']).to.match(/^application\/json/)
      expect(JSON.parse(before.body)).to.have.property('ready', false)
      await waitFor(() => b.peers().includes(a.peerId), 'connected')
      expect(JSON.parse((await http(url, '/readyz')).body).reason).to.match(/waiting for the first anti-entropy round/)
      await b.sync()
      const behind = await http(url, '/readyz')
      expect(behind.status).to.equal(503)
      expect(JSON.parse(behind.body).reason).to.match(/received 1 delta/)
      await b.sync()
      const ready = await http(url, '/readyz')
      expect(ready.status).to.equal(200)
      expect(JSON.parse(ready.body)).to.include({ ready: true })
      expect(JSON.parse(ready.body).reason).to.include(a.peerId)
    })

    it('GET /status: replica.status() as JSON — peers with their last round, collections, pending writes, store damage', async () => {
      await waitFor(() => b.peers().includes(a.peerId), 'connected')
      await b.sync()
      await b.collection('stock').put('s1', { n: 3 })
      const reply = await http(url, '/status')
      expect(reply.status).to.equal(200)
      const status = JSON.parse(reply.body) as ReplicaStatus
      expect(status).to.deep.equal(JSON.parse(JSON.stringify(b.status())))
      expect(status.peerId).to.equal(b.peerId)
      expect(status.bootstrapPeers).to.equal(1)
      expect(status.peers).to.have.length(1)
      expect(status.peers[0]!.id).to.equal(a.peerId)
      expect(status.peers[0]!.lastRound).to.include({ startedBy: 'us', ok: true, entitiesDiffering: 1, divergent: 0, deltasReceived: 1, deltasSent: 0 })
      expect(Date.parse(status.peers[0]!.lastRound!.at)).to.be.closeTo(Date.now(), 60_000)
      expect(status.collections.map((c) => c.name)).to.deep.equal(['orders', 'stock'])
      expect(status.pendingWrites).to.equal(0)
      expect(status.store).to.deep.equal({ corruptRecords: 0, damage: [] })
      expect(status.ready.ready).to.equal(false)
    })
  })

  it('GET /healthz: 200 while the store answers, 503 with the reason once the replica is closed', async () => {
    const r = await replica({ network: false })
    const { url } = await serving(r)
    const ok = await http(url, '/healthz')
    expect([ok.status, ok.body]).to.deep.equal([200, 'ok\n'])
    await r.close()
    const closed = await http(url, '/healthz')
    expect(closed.status).to.equal(503)
    expect(closed.body).to.match(/closed/)
    expect((await http(url, '/readyz')).status).to.equal(503)
  })

  it('GET /healthz: 503 when the store fails a read', async () => {
    const inner = memoryLevelStore()
    let broken = false
    const store = new Proxy(inner, {
      get(target, prop) {
        if (prop === 'getMeta' && broken) return () => Promise.reject(new Error('disk on fire'))
        const value: unknown = Reflect.get(target, prop, target)
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
      },
    })
    const r = await Replica.open({ store, backends: [yjsBackend()], logger: silentLogger })
    suite.opened(r)
    const { url } = await serving(r) // a core Replica: serve() makes its registry
    expect((await http(url, '/healthz')).status).to.equal(200)
    broken = true
    const reply = await http(url, '/healthz')
    expect(reply.status).to.equal(503)
    expect(reply.body).to.match(/disk on fire/)
    await r.collection('c').put('x', { v: 1 })
    expect(valueOf(parsePrometheusText((await http(url, '/metrics')).body), 'convergent_writes_total', { collection: 'c' })).to.equal(1)
  })

  it('404 for other paths, HEAD as GET, 405 for other methods (a body is not read: the connection closes)', async () => {
    const r = await replica({ network: false })
    const { url } = await serving(r)
    expect((await http(url, '/')).status).to.equal(404)
    expect((await http(url, '/metrics/x')).status).to.equal(404)
    expect((await http(url, '/metrics?name=x')).status).to.equal(200)
    const post = await http(url, '/metrics', { method: 'POST', body: 'x'.repeat(100_000) })
    expect(post.status).to.equal(405)
    expect(post.headers['allow']).to.equal('GET, HEAD')
    expect(post.headers['connection']).to.equal('close')
    expect((await http(url, '/healthz', { method: 'DELETE' })).status).to.equal(405)
    const head = await http(url, '/healthz', { method: 'HEAD' }) // as GET, without a body
    expect(head.status).to.equal(200)
    expect(head.body).to.equal('')
  })

  it('close() stops listening and closes keep-alive connections: nothing is left open', async () => {
    const r = await replica({ network: false })
    const before = handles()
    const s = await serve(r, { port: 0 })
    const agent = new Agent({ keepAlive: true })
    const reply = await http(s.url, '/healthz', { agent })
    expect(reply.status).to.equal(200)
    const sockets = Object.values(agent.sockets).flat().concat(Object.values(agent.freeSockets).flat())
    expect(sockets).to.have.length(1) // kept alive
    // And one in the middle of a request (headers half sent): server.close() alone waits for it.
    const busy = connect(Number(new URL(s.url).port), '127.0.0.1')
    busy.on('error', () => undefined) // reset by the server's close: expected
    await new Promise<void>((resolve) => busy.once('connect', () => resolve()))
    busy.write('GET /metrics HTTP/1.1\r\nHost: x\r\n')
    const closed = Promise.all([sockets[0]!, busy].map((socket) => new Promise<void>((resolve) => socket.once('close', () => resolve()))))
    const t0 = Date.now()
    await s.close()
    await closed
    expect(Date.now() - t0).to.be.below(2_000) // not the 10 s headers timeout
    await s.close() // idempotent
    agent.destroy()
    await waitFor(() => ['TCPServerWrap', 'TCPSocketWrap'].every((kind) => handles().get(kind) === before.get(kind)), 'server and sockets gone')
    let refused: unknown
    await http(s.url, '/healthz').catch((err: unknown) => (refused = err))
    expect((refused as { code?: string }).code).to.equal('ECONNREFUSED')
  })

  it('refuses a bad port', async () => {
    const r = await replica({ network: false })
    let error: unknown
    await serve(r, { port: 70_000 }).catch((err: unknown) => (error = err))
    expect((error as { code?: string }).code).to.equal('ERR_INVALID_ARGUMENT')
  })
})
