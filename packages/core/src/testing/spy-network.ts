import type { Network, NetworkEvents } from '../network.js'

/**
 * Wraps a network to see (and optionally answer) the requests a replica sends and serves;
 * `received` sees every byte that reaches it: gossip, requests it serves, responses it gets.
 */
export function spyNetwork(
  net: Network,
  hooks: {
    sent?: (type: number) => void
    serve?: (type: number, data: Uint8Array) => Uint8Array | undefined
    received?: (data: Uint8Array) => void
    /** Gossip goes through what this makes of the delivery (to drop it, or rewrite who it names). */
    gossip?: (deliver: NetworkEvents['onMessage']) => NetworkEvents['onMessage']
  } = {},
): Network {
  return {
    get peerId() {
      return net.peerId
    },
    get multiaddrs() {
      return net.multiaddrs
    },
    start: (events: NetworkEvents) => {
      const onMessage: NetworkEvents['onMessage'] = (topic, data, from, via) => events.onMessage(topic, data, from, via)
      const deliver = hooks.gossip?.(onMessage) ?? onMessage
      return net.start({
        ...events,
        onMessage: (topic, data, from, via) => {
          hooks.received?.(data)
          deliver(topic, data, from, via)
        },
        onRequest: async (from, data) => {
          hooks.received?.(data)
          return hooks.serve?.(data[2]!, data) ?? events.onRequest(from, data)
        },
      })
    },
    stop: () => net.stop(),
    subscribe: (t) => net.subscribe(t),
    unsubscribe: (t) => net.unsubscribe(t),
    publish: (t, d) => net.publish(t, d),
    peers: () => net.peers(),
    request: async (peer, data, options) => {
      hooks.sent?.(data[2]!)
      const response = await net.request(peer, data, options)
      hooks.received?.(response)
      return response
    },
  }
}
