import type { Libp2p, PeerId } from '@libp2p/interface'
import { ConvergentError, wrapError, type Clock } from '@convergent/core'
import { deadline } from './deadline.js'
import { FrameTooLargeError, readFrame, writeFrame } from './framing.js'
import { decodeMessage, Status } from './sync-protocol.js'

export interface RequestOptions {
  protocol: string
  /** Largest response body accepted. */
  maxBytes: number
  timeoutMs: number
  clock: Clock
  /** The caller's signal: ERR_ABORTED. */
  signal?: AbortSignal
  /** Fires when the network stops: ERR_CLOSED. */
  stopSignal: AbortSignal
}

/** One request/response exchange with a peer over a fresh sync stream. */
export async function sendSyncRequest(libp2p: Libp2p, peer: PeerId, data: Uint8Array, options: RequestOptions): Promise<Uint8Array> {
  const timer = deadline(options.clock, options.timeoutMs)
  const signal = AbortSignal.any([timer.signal, options.stopSignal, ...(options.signal === undefined ? [] : [options.signal])])
  try {
    const stream = await libp2p.dialProtocol(peer, options.protocol, { signal })
    // Listen before writing: a peer that refuses the request answers while we still upload.
    const response = readFrame(stream, options.maxBytes + 1, { signal })
    response.catch(() => {}) // awaited below; this only keeps it from counting as unhandled meanwhile
    try {
      await writeFrame(stream, [data], { signal })
      await stream.close({ signal })
    } catch {
      // The read below fails too, with the reason, unless an answer already arrived.
    }
    let frame: Uint8Array
    try {
      frame = await response
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      throw err
    }
    return decodeResponse(frame, peer)
  } catch (err) {
    throw classify(err, peer, options, timer.signal)
  } finally {
    timer.clear()
  }
}

function decodeResponse(frame: Uint8Array, peer: PeerId): Uint8Array {
  const body = frame.subarray(1)
  switch (frame[0]) {
    case Status.Ok:
      return body
    case Status.Failed:
      throw new ConvergentError('ERR_NETWORK', `peer ${peer.toString()} failed the request: ${decodeMessage(body)}`)
    case Status.TooLarge:
      throw new ConvergentError('ERR_TOO_LARGE', `peer ${peer.toString()} refused the request as too large: ${decodeMessage(body)}`)
    default:
      throw new ConvergentError('ERR_NETWORK', `peer ${peer.toString()} sent a response with unknown status ${frame[0]}`)
  }
}

/** Names the failure by its cause: our signals first, then the size limit, then the network. */
function classify(err: unknown, peer: PeerId, options: RequestOptions, timeout: AbortSignal): ConvergentError {
  if (options.signal?.aborted === true) return new ConvergentError('ERR_ABORTED', `request to ${peer.toString()} aborted through its signal`, { cause: err })
  if (options.stopSignal.aborted) return new ConvergentError('ERR_CLOSED', `the network stopped during the request to ${peer.toString()}`, { cause: err })
  if (timeout.aborted) return new ConvergentError('ERR_TIMEOUT', `no response from ${peer.toString()} within ${options.timeoutMs} ms`, { cause: err })
  if (err instanceof ConvergentError) return err
  if (err instanceof FrameTooLargeError) {
    return new ConvergentError('ERR_TOO_LARGE', `response from ${peer.toString()} exceeds maxBytes ${options.maxBytes}`, { cause: err })
  }
  return wrapError('ERR_NETWORK', `request to ${peer.toString()} failed`, err)
}
