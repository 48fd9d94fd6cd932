import type { Libp2pNetwork } from '@convergent/libp2p'
import type { Metrics } from '../report/metrics.js'
import { CONTROL_ENTRY, FRAME_OVERHEAD, idListBytes, messageBytes } from '../net/sizes.js'

interface Rpc {
  subscriptions?: { topic?: string }[]
  messages?: { topic?: string; data?: Uint8Array }[]
  control?: {
    ihave?: { topicID?: string; messageIDs?: unknown[] }[]
    iwant?: { messageIDs?: unknown[] }[]
    graft?: { topicID?: string }[]
    prune?: { topicID?: string }[]
    idontwant?: { messageIDs?: unknown[] }[]
  }
}

/**
 * Counts the gossipsub RPCs a live node sends, with the same categories and byte estimates
 * as the simulator, by wrapping gossipsub's (internal) sendRpc. Returns false if this
 * gossipsub version has no such method: the gossip counts of the live report are then zero.
 */
export function countRpcs(net: Libp2pNetwork, metrics: Metrics): boolean {
  const pubsub = net.libp2p.services.pubsub as unknown as { sendRpc?: (id: string, rpc: Rpc) => boolean }
  const original = pubsub.sendRpc
  if (typeof original !== 'function') return false
  pubsub.sendRpc = function (this: unknown, id: string, rpc: Rpc): boolean {
    const sent = original.call(this, id, rpc)
    if (sent) record(rpc, metrics)
    return sent
  }
  return true
}

function record(rpc: Rpc, metrics: Metrics): void {
  const g = metrics.gossip
  let bytes = FRAME_OVERHEAD
  for (const s of rpc.subscriptions ?? []) {
    g.subscriptions++
    bytes += CONTROL_ENTRY + (s.topic?.length ?? 0)
  }
  const messages = rpc.messages ?? []
  for (const m of messages) {
    g.messageCopies++
    bytes += messageBytes(m.topic ?? '', m.data?.byteLength ?? 0)
  }
  const c = rpc.control
  for (const x of c?.ihave ?? []) {
    g.ihave++
    bytes += (x.topicID?.length ?? 0) + idListBytes(x.messageIDs?.length ?? 0)
  }
  for (const x of c?.iwant ?? []) {
    g.iwant++
    bytes += idListBytes(x.messageIDs?.length ?? 0)
  }
  for (const x of c?.graft ?? []) {
    g.graft++
    bytes += CONTROL_ENTRY + (x.topicID?.length ?? 0)
  }
  for (const x of c?.prune ?? []) {
    g.prune++
    bytes += CONTROL_ENTRY + (x.topicID?.length ?? 0)
  }
  for (const x of c?.idontwant ?? []) {
    g.idontwant++
    bytes += idListBytes(x.messageIDs?.length ?? 0)
  }
  metrics.gossipFrame(bytes, messages.length > 0)
}
