/**
 * The request/response protocol anti-entropy runs on. One exchange per stream: the requester
 * writes one frame (the request) and closes its side; the responder answers with one frame
 * whose first byte is a status, then closes. Frames are length-prefixed (see framing.ts).
 */

/** Protocol id; a namespace keeps clusters apart (their nodes refuse each other's streams). */
export function syncProtocol(namespace?: string): string {
  return namespace === undefined ? '/convergent/sync/1.0.0' : `/convergent/${namespace}/sync/1.0.0`
}

export const Status = {
  /** The body is the handler's response. */
  Ok: 0,
  /** The handler failed; the body is a UTF-8 message. */
  Failed: 1,
  /** The request exceeded the responder's limit; the body is a UTF-8 message. */
  TooLarge: 2,
} as const

/** Longest error message sent back to a requester. */
export const MAX_ERROR_MESSAGE_BYTES = 1024

export function encodeMessage(message: string): Uint8Array {
  const bytes = new TextEncoder().encode(message)
  return bytes.byteLength > MAX_ERROR_MESSAGE_BYTES ? bytes.subarray(0, MAX_ERROR_MESSAGE_BYTES) : bytes
}

export function decodeMessage(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes)
}
