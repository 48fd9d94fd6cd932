import { jittered, type Clock, type TimerHandle } from '@convergent/core'

export interface RedialOptions {
  clock: Clock
  /** First retry delay; doubles per failure up to maxMs, jittered ±20 %. */
  minMs: number
  maxMs: number
  /** Dials the address and resolves with the remote peer id. */
  dial: (address: string) => Promise<string>
  isConnected: (peerId: string) => boolean
  log: (message: string, ...args: unknown[]) => void
}

interface Target {
  readonly address: string
  /** Known from the address's /p2p/ part, or learned on the first successful dial. */
  peerId: string | undefined
  delayMs: number
  timer: TimerHandle | undefined
  dialing: boolean
}

/**
 * Keeps us connected to the bootstrap peers: dials each on start, and whenever the
 * connection to one goes away, redials with exponential backoff until it is back or we stop.
 */
export class Redialer {
  private readonly targets: Target[]
  private stopped = false

  constructor(
    addresses: string[],
    private readonly options: RedialOptions,
  ) {
    this.targets = addresses.map((address) => ({
      address,
      peerId: peerIdOf(address),
      delayMs: options.minMs,
      timer: undefined,
      dialing: false,
    }))
  }

  start(): void {
    for (const target of this.targets) void this.attempt(target)
  }

  /** Call on every peer disconnect; redials if that peer is one of ours. */
  peerDisconnected(peerId: string): void {
    for (const target of this.targets) if (target.peerId === peerId) this.schedule(target)
  }

  stop(): void {
    this.stopped = true
    for (const target of this.targets) {
      if (target.timer !== undefined) this.options.clock.clearTimeout(target.timer)
      target.timer = undefined
    }
  }

  /** Never rejects: it runs from timers, where a rejection would end the process. */
  private async attempt(target: Target): Promise<void> {
    if (this.stopped || target.dialing) return
    target.dialing = true
    try {
      if (target.peerId !== undefined && this.options.isConnected(target.peerId)) {
        target.delayMs = this.options.minMs
        return
      }
      target.peerId = await this.options.dial(target.address)
      target.delayMs = this.options.minMs
    } catch (err) {
      this.options.log('dial %s failed, retrying: %s', target.address, err instanceof Error ? err.message : String(err))
      this.schedule(target)
    } finally {
      target.dialing = false
    }
  }

  private schedule(target: Target): void {
    if (this.stopped || target.timer !== undefined) return
    const ms = jittered(this.options.clock, target.delayMs)
    target.delayMs = Math.min(target.delayMs * 2, this.options.maxMs)
    target.timer = this.options.clock.setTimeout(() => {
      target.timer = undefined
      void this.attempt(target)
    }, ms)
  }
}

/** The last /p2p/ component: the peer we end up talking to (relay addresses have two). */
function peerIdOf(address: string): string | undefined {
  const parts = address.split('/')
  const at = parts.lastIndexOf('p2p')
  return at >= 0 ? parts[at + 1] : undefined
}
