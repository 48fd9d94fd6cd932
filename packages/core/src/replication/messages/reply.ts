import { ConvergentError } from '../../errors.js'
import { encodeMessage, MessageType } from './envelope.js'

/**
 * Why a responder refused a request, machine-readable: where it dropped the request, its own
 * drop reason ('malformed', 'unsupportedVersion', 'tooLarge', 'rateLimited', 'forbidden');
 * 'unsupportedType': it does not serve requests of that type (an older responder);
 * 'failed': it could not answer (its store failed, it was closing). 'unknown' is the
 * requester's: a reply without a code (a responder older than codes) or with one not listed
 * here — a peer writes the field, so nothing outside this list is taken from it.
 */
export const REFUSAL_CODES = ['malformed', 'unsupportedVersion', 'unsupportedType', 'tooLarge', 'rateLimited', 'forbidden', 'failed', 'unknown'] as const
export type RefusalCode = (typeof REFUSAL_CODES)[number]

/**
 * Error reply (sync protocol): the responder refuses a request. Wire body: { m: message for
 * logs, u: the request's type when the responder does not serve that type at all, c: the
 * RefusalCode (absent from responders older than it) }.
 */
export interface ErrorReply {
  message: string
  unsupportedType?: number
  code: RefusalCode
}

export function encodeErrorReply(m: Omit<ErrorReply, 'code'> & { code?: RefusalCode }): Uint8Array {
  return encodeMessage(MessageType.Error, {
    m: m.message,
    ...(m.unsupportedType === undefined ? {} : { u: m.unsupportedType }),
    ...(m.code === undefined ? {} : { c: m.code }),
  })
}

/** Reads an Error reply leniently: it only ever feeds an error message, a type check and a bounded code. */
export function decodeErrorReply(body: unknown): ErrorReply {
  const r = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {}
  return {
    message: typeof r.m === 'string' ? r.m.slice(0, 1024) : 'unknown error',
    ...(typeof r.u === 'number' ? { unsupportedType: r.u } : {}),
    code: (REFUSAL_CODES as readonly unknown[]).includes(r.c) ? (r.c as RefusalCode) : 'unknown',
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
    super('ERR_NETWORK', `peer ${peer} refused a sync request (${reply.code}): ${reply.message}`)
  }

  /** Whether the peer does not serve requests of this message type. */
  unsupported(type: number): boolean {
    return this.reply.unsupportedType === type
  }
}

/** Log fields naming the peer's refusal code, when `err` is a peer's refusal. */
export function refusalOf(err: unknown): { refusal?: RefusalCode } {
  return err instanceof SyncRefusedError ? { refusal: err.reply.code } : {}
}
