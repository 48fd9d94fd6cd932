import { ConvergentError } from '../../errors.js'
import { encodeMessage, MessageType } from './envelope.js'

/**
 * Error reply (sync protocol): the responder refuses a request. Wire body: { m: message for
 * logs, u: the request's type when the responder does not serve that type at all }.
 */
export interface ErrorReply {
  message: string
  unsupportedType?: number
}

export function encodeErrorReply(m: ErrorReply): Uint8Array {
  return encodeMessage(MessageType.Error, m.unsupportedType === undefined ? { m: m.message } : { m: m.message, u: m.unsupportedType })
}

/** Reads an Error reply leniently: it only ever feeds an error message and a type check. */
export function decodeErrorReply(body: unknown): ErrorReply {
  const r = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {}
  return {
    message: typeof r.m === 'string' ? r.m.slice(0, 1024) : 'unknown error',
    ...(typeof r.u === 'number' ? { unsupportedType: r.u } : {}),
  }
}

/** A request of a type the responder does not serve (a newer requester talking to an older responder). */
export class UnsupportedTypeError extends ConvergentError {
  constructor(readonly type: number) {
    super('ERR_INVALID_MESSAGE', `invalid message: unexpected type ${type} on the sync protocol`)
  }
}

/** A peer's Error reply to a sync request. */
export class SyncRefusedError extends ConvergentError {
  constructor(
    peer: string,
    readonly reply: ErrorReply,
  ) {
    super('ERR_NETWORK', `peer ${peer} refused a sync request: ${reply.message}`)
  }

  /** Whether the peer does not serve requests of this message type. */
  unsupported(type: number): boolean {
    return this.reply.unsupportedType === type
  }
}
