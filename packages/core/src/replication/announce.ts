import { codeOf } from '../logger.js'
import type { Backend } from '../backend.js'
import { checkId } from '../json.js'
import type { ReplicationContext } from './context.js'
import type { PeerRateLimiter } from './rate-limit.js'
import { admit, drop } from './receiver.js'
import { decodeAnnounce, encodeAnnounce } from './messages/index.js'

/** The namespace's topic on which replicas tell each other of collections they create. */
export function announceTopic(namespace: string): string {
  return `/convergent/${namespace}/announce`
}

/**
 * Gossip reaches only peers subscribed to a collection's topic, and a peer subscribes to a
 * collection once it has it: a collection created after two replicas connected would reach
 * the other only at the next periodic round (30 s by default). So a replica that creates a
 * collection says so on the namespace's announce topic ({c, b}); a peer that does not have
 * it starts a round with the announcer, which pulls it (and subscribes).
 */
export class Announcer {
  private readonly topic: string

  constructor(
    private readonly ctx: ReplicationContext,
    private readonly limiter: PeerRateLimiter,
    private readonly syncWith: (peer: string) => void,
  ) {
    this.topic = announceTopic(ctx.namespace)
  }

  start(): void {
    this.ctx.network.subscribe(this.topic)
  }

  owns(topic: string): boolean {
    return topic === this.topic
  }

  announce(collection: string, backend: Backend): void {
    const message = encodeAnnounce({ collection, backend: backend.name })
    this.ctx.network.publish(this.topic, message).catch((err: unknown) => {
      this.ctx.logger.warn(`could not announce collection '${collection}' (peers learn of it at their next round): ${(err as Error).message}`, {
        collection,
        ...codeOf(err),
      })
    })
  }

  receive(data: Uint8Array, from: string): void {
    const msg = admit(this.ctx, this.limiter, from, data)
    if (msg === undefined) return
    let collection: string
    try {
      collection = checkId(decodeAnnounce(msg.type, msg.body).collection, 'collection name', this.ctx.limits)
    } catch (err) {
      drop(this.ctx, from, 'malformed', (err as Error).message)
      return
    }
    const col = this.ctx.entities.collections.get(collection)
    if (col !== undefined && col.persisted) return // we have it: its pushes reach us
    this.syncWith(from)
  }
}
