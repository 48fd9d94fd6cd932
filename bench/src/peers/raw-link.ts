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
 * identify (Convergent's stack, without gossipsub) and the least protocol that moves deltas:
 * a joining node pulls everything its peer stores in one stream, and each durable tick is
 * pushed to every connected peer in one stream. No digests, versions, validation, limits,
 * chunking or repair of lost pushes: what any replication over this stack must at least do.
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
    await libp2p.handle(PUSH, async (stream: Stream) => {
      const bytes = await receive(stream)
      // Closed before applying: an open stream counts against libp2p's inbound stream limit.
      await stream.close()
      await link.onEntries(decodeEntries(bytes))
    })
    return link
  }

  get port(): number {
    const tcpPart = this.libp2p.getMultiaddrs()[0]?.toString().match(/\/tcp\/(\d+)/)
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

  private queued: Entries = []
  private sending: Promise<void> | undefined

  /**
   * Sends durable deltas to every connected peer: one stream per push, one push in flight at
   * a time, the deltas made meanwhile gathered into the next (a stream per tick would run into
   * libp2p's limit of inbound streams per protocol and connection).
   */
  push(entries: Entries): Promise<void> {
    this.queued.push(...entries)
    this.sending ??= this.drain()
    return this.sending
  }

  private async drain(): Promise<void> {
    try {
      while (this.queued.length > 0) {
        const bytes = encodeEntries(this.queued)
        this.queued = []
        await Promise.all(
          this.libp2p.getConnections().map(async (connection: Connection) => {
            const stream = await connection.newStream(PUSH)
            await send(stream, bytes)
          }),
        )
      }
    } finally {
      this.sending = undefined
    }
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
  for (let at = 0; at < buf.byteLength; ) {
    const idLength = buf.readUInt32BE(at)
    const id = buf.toString('utf8', at + 4, at + 4 + idLength)
    at += 4 + idLength
    const length = buf.readUInt32BE(at)
    entries.push([id, buf.subarray(at + 4, at + 4 + length)])
    at += 4 + length
  }
  return entries
}
