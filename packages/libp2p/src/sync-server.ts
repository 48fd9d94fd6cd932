import type { Logger, Stream } from '@libp2p/interface'
import type { Clock } from '@convergent/core'
import { deadline } from './deadline.js'
import { discardIncoming, FrameTooLargeError, readFrame, writeFrame } from './framing.js'
import { encodeMessage, Status } from './sync-protocol.js'

export interface ServeOptions {
  /** Largest request accepted. */
  maxRequestBytes: number
  /** The whole exchange (read, handle, write) must finish within this. */
  timeoutMs: number
  clock: Clock
  log: Logger
}

/**
 * Answers one request on an inbound sync stream. Never rejects: bad input (garbage, an
 * oversized or truncated frame, a stalled peer) only ends that stream, never the node.
 */
export async function serveSyncStream(
  stream: Stream,
  from: string,
  handle: (from: string, request: Uint8Array) => Promise<Uint8Array>,
  options: ServeOptions,
): Promise<void> {
  const timer = deadline(options.clock, options.timeoutMs)
  const signal = timer.signal
  try {
    let request: Uint8Array
    try {
      request = await readFrame(stream, options.maxRequestBytes, { signal })
    } catch (err) {
      if (err instanceof FrameTooLargeError) {
        // Tell the requester why, then reset: the reset stops the rest of its upload.
        discardIncoming(stream)
        await writeFrame(stream, [Uint8Array.of(Status.TooLarge), encodeMessage(err.message)], { signal })
        await stream.close({ signal })
      }
      throw err
    }

    let response: Uint8Array[]
    try {
      response = [Uint8Array.of(Status.Ok), await handle(from, request)]
    } catch (err) {
      response = [Uint8Array.of(Status.Failed), encodeMessage(err instanceof Error ? err.message : String(err))]
    }
    await writeFrame(stream, response, { signal })
    await stream.close({ signal })
  } catch (err) {
    options.log('sync request from %s dropped: %s', from, err instanceof Error ? err.message : String(err))
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  } finally {
    timer.clear()
  }
}
