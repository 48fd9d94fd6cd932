/**
 * Approximate bytes on the wire, so byte counts are comparable with the libp2p stack
 * (TCP + Noise + Yamux + gossipsub protobuf). IP/TCP headers are not counted.
 */

/** Length prefix + Yamux header (12) + Noise tag (16). */
export const FRAME_OVERHEAD = 32
/** A gossipsub message id: author peer id (~38 bytes) + 8-byte seqno. */
export const MESSAGE_ID_BYTES = 46
/** A signed gossipsub message around the payload: from, seqno, signature (64), field tags. */
export const MESSAGE_ENVELOPE = 124
/** A new request stream: Yamux open + multistream-select of the sync protocol. */
export const REQUEST_STREAM_OVERHEAD = 64
/** A control entry's own tags and topic length prefix. */
export const CONTROL_ENTRY = 4

export function messageBytes(topic: string, dataBytes: number): number {
  return MESSAGE_ENVELOPE + topic.length + dataBytes
}

export function idListBytes(ids: number): number {
  return CONTROL_ENTRY + ids * (MESSAGE_ID_BYTES + 2)
}
