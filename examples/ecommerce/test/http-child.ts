// An HTTP server in a child process (so a stalled test process does not stall it too), sending
// its url over IPC and exiting when the parent disconnects. argv[2]:
// - 'service': a service's own server (serve(), its defaults): GET /ping, POST /echo;
// - 'closes-idle:<ms>': a bare HTTP/1.1 server with the same routes that closes a kept-alive
//   connection once it has been idle <ms>, without announcing it (no Keep-Alive header) — a
//   stand-in for any server that ends idle connections while a client may still reuse them.
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net'
import { HttpError, Router, serve } from '../src/services/http-server.js'

let posts = 0
const mode = process.argv[2] ?? 'service'

if (mode === 'service') {
  const router = new Router()
    .on('GET', '/ping', () => ({ status: 200, body: { ok: true, posts } }))
    .on('POST', '/echo', async (req) => {
      const body = await req.json()
      if (body === null || typeof body !== 'object') throw new HttpError(400, 'expected an object')
      posts++
      return { status: 200, body: { ...body, posts } }
    })
  const server = await serve(router, 0, (err) => process.stderr.write(`${String(err)}\n`))
  process.send!(server.url)
  process.on('disconnect', () => void server.close().then(() => process.exit(0)))
} else {
  const idleMs = Number(mode.split(':')[1])
  const sockets = new Set<Socket>()
  const server = createTcpServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => undefined)
    let buffered = ''
    let idle: NodeJS.Timeout | undefined
    socket.on('data', (chunk: Buffer) => {
      clearTimeout(idle)
      buffered += chunk.toString('utf8')
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n')
        if (end < 0) return
        const head = buffered.slice(0, end)
        const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0)
        if (buffered.length < end + 4 + length) return
        const body = buffered.slice(end + 4, end + 4 + length)
        buffered = buffered.slice(end + 4 + length)
        const post = head.startsWith('POST /echo')
        if (post) posts++
        const text = JSON.stringify(post ? { ...(JSON.parse(body) as object), posts } : { ok: true, posts })
        socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: keep-alive\r\n\r\n${text}`)
        idle = setTimeout(() => socket.destroy(), idleMs)
      }
    })
  })
  server.listen(0, '127.0.0.1', () => process.send!(`http://127.0.0.1:${(server.address() as AddressInfo).port}`))
  process.on('disconnect', () => {
    for (const socket of sockets) socket.destroy()
    server.close(() => process.exit(0))
  })
}
