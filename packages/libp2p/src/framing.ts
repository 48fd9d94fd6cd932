import type { AbortOptions, MessageStream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'

/**
 * Length-prefixed frames (unsigned LEB128 varint length, then the bytes) over a libp2p 3
 * message stream. The reader parses as data arrives, inside the 'message' event: the length
 * is checked the moment the prefix is complete, and the body is kept as it arrives (never a
 * buffer of the announced length up front), so a peer can never make us hold more than the
 * limit, nor more than it really sent.
 */

/** 8 varint bytes carry 56 bits: every safe length, so an oversized frame reads as too large, not invalid. */
const MAX_PREFIX_BYTES = 8

/** The frame announces more bytes than the reader accepts. */
export class FrameTooLargeError extends Error {
  override readonly name = 'FrameTooLargeError'
}

/** The bytes are not a frame: a length prefix that does not end. */
export class InvalidFrameError extends Error {
  override readonly name = 'InvalidFrameError'
}

/** The stream ended before a whole frame arrived. */
export class TruncatedFrameError extends Error {
  override readonly name = 'TruncatedFrameError'
}

/**
 * Reads one frame of at most maxBytes. Attach it before writing anything, so an early answer
 * (or a refusal) is caught even while we are still sending. Bytes after the frame are ignored.
 */
export function readFrame(stream: MessageStream, maxBytes: number, options: AbortOptions = {}): Promise<Uint8Array> {
  const { signal } = options
  return new Promise<Uint8Array>((resolve, reject) => {
    let length = 0
    let prefixBytes = 0
    let sized = false
    const parts: Uint8Array[] = []
    let filled = 0

    const finish = (err: Error | undefined, frame?: Uint8Array): void => {
      stream.removeEventListener('message', onMessage)
      stream.removeEventListener('end', onEnd)
      stream.removeEventListener('close', onClose)
      signal?.removeEventListener('abort', onAbort)
      if (err !== undefined) reject(err)
      else resolve(frame!)
    }

    const onMessage = (event: StreamMessageEvent): void => {
      const chunk = event.data.subarray()
      let offset = 0
      while (!sized && offset < chunk.byteLength) {
        const byte = chunk[offset++]!
        length += (byte & 0x7f) * 2 ** (7 * prefixBytes++)
        if (byte < 0x80) {
          if (length > maxBytes) return finish(new FrameTooLargeError(`frame of ${length} bytes exceeds the limit of ${maxBytes}`))
          sized = true
        } else if (prefixBytes >= MAX_PREFIX_BYTES) {
          return finish(new InvalidFrameError(`length prefix longer than ${MAX_PREFIX_BYTES} bytes`))
        }
      }
      if (!sized) return
      // Kept as it arrives (a copy: the stream may reuse its buffers): what a frame holds in
      // memory is what the peer really sent, never what its prefix announced.
      const take = Math.min(length - filled, chunk.byteLength - offset)
      if (take > 0) parts.push(chunk.slice(offset, offset + take))
      filled += take
      if (filled === length) finish(undefined, parts.length === 1 ? parts[0]! : concat(parts, length))
    }
    const onEnd = (): void => finish(new TruncatedFrameError(`stream ended after ${prefixBytes + filled} bytes, before a whole frame`))
    const onClose = (event: StreamCloseEvent): void => finish(event.error ?? new TruncatedFrameError('stream closed before a whole frame'))
    const onAbort = (): void => finish(signal?.reason instanceof Error ? signal.reason : new Error('aborted'))

    if (signal?.aborted === true) return onAbort()
    if (stream.readableEnded || stream.status !== 'open') return onEnd()
    stream.addEventListener('message', onMessage)
    stream.addEventListener('end', onEnd)
    stream.addEventListener('close', onClose)
    signal?.addEventListener('abort', onAbort)
  })
}

function concat(parts: readonly Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length)
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.byteLength
  }
  return out
}

/** Writes one frame whose body is the parts, in order (one copy, one send), waiting out backpressure. */
export async function writeFrame(stream: MessageStream, parts: Uint8Array[], options?: AbortOptions): Promise<void> {
  const length = parts.reduce((sum, p) => sum + p.byteLength, 0)
  const prefix = encodeVarint(length)
  const frame = new Uint8Array(prefix.byteLength + length)
  frame.set(prefix, 0)
  let offset = prefix.byteLength
  for (const part of parts) {
    frame.set(part, offset)
    offset += part.byteLength
  }
  if (!stream.send(frame)) await stream.onDrain(options)
}

/** Drops whatever else the peer sends, so it neither piles up nor trips the stream's buffer limit. */
export function discardIncoming(stream: MessageStream): void {
  stream.addEventListener('message', () => {})
}

function encodeVarint(n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80)
    n = Math.floor(n / 0x80)
  }
  out.push(n)
  return Uint8Array.from(out)
}
