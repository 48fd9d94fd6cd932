import '@convergent/libp2p/polyfill'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import { createLibp2p } from 'libp2p'

/** [id, delta] pairs, as the raw ceiling moves them. */
export type Entries = [string, Uint8Array][]

const CATCH_UP = '/convergent-bench/raw-catch-up/1.0.0'
const PUSH = '/convergent-bench/raw-push/1.0.0'

/**
 * The network half of the raw replication ceiling: libp2p 3 over TCP with Noise, Yamux and
 * identify (Convergent's stack, without gossipsub) and a minimal protocol that moves deltas:
 * a joining node pulls everything its peer stores in one stream, and each durable batch goes
 * to every connected peer as one frame on a stream kept open per peer. No digests, versions,
 * validation, limits, chunking or repair of lost pushes.
 */
export class RawLink {
  private constructor(
    readonly libp2p: Libp2p,
    private readonly onEntries: (entries: Entries) => Promise<void>,
  ) {}

  static async start(stored: () => Promise<Entries>, onEntries: (entries: Entries) => Promise<void>): Promise<RawLink> {
    const libp2p = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() },
    })
    const link = new RawLink(libp2p, onEntries)
    await libp2p.handle(CATCH_UP, async (stream: Stream) => {
      await send(stream, encodeEntries(await stored()))
    })
    await libp2p.handle(PUSH, (stream: Stream) => {
      // Frames of [u32 length][entries], applied one after another as they complete.
      let buffered = Buffer.alloc(0)
      let applying = Promise.resolve()
      stream.addEventListener('message', (event) => {
        buffered = Buffer.concat([buffered, event.data.subarray()])
        while (buffered.byteLength >= 4 && buffered.byteLength >= 4 + buffered.readUInt32BE(0)) {
          const end = 4 + buffered.readUInt32BE(0)
          const entries = decodeEntries(buffered.subarray(4, end))
          buffered = buffered.subarray(end)
          applying = applying.then(() => link.onEntries(entries))
        }
      })
    })
    return link
  }

  get port(): number {
    const tcpPart = this.libp2p
      .getMultiaddrs()[0]
      ?.toString()
      .match(/\/tcp\/(\d+)/)
    if (!tcpPart) throw new Error('the raw ceiling node has no TCP listen address')
    return Number(tcpPart[1])
  }

  get token(): string {
    return this.libp2p.peerId.toString()
  }

  /** Dials a peer (through the given port) and applies everything it stores. */
  async join(port: number, token: string): Promise<void> {
    const own = this.libp2p.getMultiaddrs()[0]!
    const connection = await this.libp2p.dial(own.decapsulate('/tcp').encapsulate(`/tcp/${port}/p2p/${token}`))
    const stream = await connection.newStream(CATCH_UP)
    const reply = receive(stream) // listening before anything can arrive
    await stream.close() // nothing to ask: the protocol is the request
    await this.onEntries(decodeEntries(await reply))
  }

  /** The open push stream to each peer, by connection. */
  private readonly outgoing = new Map<string, Promise<Stream>>()

  /** Sends durable deltas to every connected peer: one frame on each peer's push stream. */
  async push(entries: Entries): Promise<void> {
    const body = encodeEntries(entries)
    const frame = Buffer.allocUnsafe(4 + body.byteLength)
    frame.writeUInt32BE(body.byteLength, 0)
    frame.set(body, 4)
    await Promise.all(
      this.libp2p.getConnections().map(async (connection: Connection) => {
        let stream = this.outgoing.get(connection.id)
        if (stream === undefined) {
          stream = connection.newStream(PUSH)
          this.outgoing.set(connection.id, stream)
          stream.catch(() => this.outgoing.delete(connection.id))
        }
        const open = await stream
        if (!open.send(frame)) await open.onDrain()
      }),
    )
  }

  async stop(): Promise<void> {
    await this.libp2p.stop()
  }
}

async function send(stream: Stream, bytes: Uint8Array): Promise<void> {
  if (!stream.send(bytes)) await stream.onDrain()
  await stream.close()
}

/** Everything the peer writes until it closes its side. */
function receive(stream: Stream): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = []
    stream.addEventListener('message', (event) => {
      chunks.push(event.data.subarray())
    })
    const done = (): void => resolve(Buffer.concat(chunks))
    stream.addEventListener('end', done)
    stream.addEventListener('close', (event) => (event.error ? reject(event.error) : done()))
  })
}

/** [u32 id length][id][u32 delta length][delta] per entry. */
function encodeEntries(entries: Entries): Uint8Array {
  const ids = entries.map(([id]) => Buffer.from(id))
  const size = entries.reduce((sum, [, delta], i) => sum + 8 + ids[i]!.byteLength + delta.byteLength, 0)
  const out = Buffer.allocUnsafe(size)
  let at = 0
  entries.forEach(([, delta], i) => {
    at = out.writeUInt32BE(ids[i]!.byteLength, at)
    at += ids[i]!.copy(out, at)
    at = out.writeUInt32BE(delta.byteLength, at)
    out.set(delta, at)
    at += delta.byteLength
  })
  return out
}

function decodeEntries(bytes: Uint8Array): Entries {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const entries: Entries = []
  for (let at = 0; at < buf.byteLength;) {
    const idLength = buf.readUInt32BE(at)
    const id = buf.toString('utf8', at + 4, at + 4 + idLength)
    at += 4 + idLength
    const length = buf.readUInt32BE(at)
    entries.push([id, buf.subarray(at + 4, at + 4 + length)])
    at += 4 + length
  }
  return entries
}
