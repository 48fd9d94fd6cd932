import { createConnection, createServer, type Server, type Socket } from 'node:net'

/**
 * A TCP proxy on 127.0.0.1 that counts every byte both ways: the real bytes on the wire
 * (transport encryption, muxing and protocol framing included), for any system, without
 * touching its code. Dial the meter's port instead of the target's.
 */
export class TcpMeter {
  /** Bytes from the dialer to the target, and back. */
  bytesUp = 0
  bytesDown = 0
  private readonly sockets = new Set<Socket>()
  private cut = false

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number): Promise<TcpMeter> {
    let meter!: TcpMeter
    const server = createServer((client) => meter.pipe(client, targetPort))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve())
    })
    const address = server.address()
    if (address === null || typeof address === 'string') throw new Error('TcpMeter: no TCP address')
    meter = new TcpMeter(server, address.port)
    return meter
  }

  get total(): number {
    return this.bytesUp + this.bytesDown
  }

  reset(): void {
    this.bytesUp = 0
    this.bytesDown = 0
  }

  /** Drops every connection and refuses new ones until heal(): a network partition. */
  partition(): void {
    this.cut = true
    for (const s of this.sockets) s.destroy()
  }

  heal(): void {
    this.cut = false
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private pipe(client: Socket, targetPort: number): void {
    if (this.cut) {
      client.destroy()
      return
    }
    const target = createConnection({ host: '127.0.0.1', port: targetPort })
    for (const s of [client, target]) {
      this.sockets.add(s)
      s.setNoDelay(true)
      s.on('close', () => this.sockets.delete(s))
      // A reset on one side just ends the pair; the systems under test handle reconnects.
      s.on('error', () => undefined)
    }
    client.on('data', (chunk: Buffer) => {
      this.bytesUp += chunk.byteLength
    })
    target.on('data', (chunk: Buffer) => {
      this.bytesDown += chunk.byteLength
    })
    client.pipe(target)
    target.pipe(client)
    client.on('close', () => target.destroy())
    target.on('close', () => client.destroy())
  }
}
