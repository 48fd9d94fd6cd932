import { isSpanContextValid, type SpanContext } from '@opentelemetry/api'

/**
 * The W3C Trace Context `traceparent` header a push carries (version 00 only):
 * `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, exactly 55 characters. A peer writes
 * it, so it is parsed strictly and anything else is ignored: a bad trace context must never
 * cost the deltas it came with. tracestate is not carried.
 */
export const TRACEPARENT_LENGTH = 55
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

export function formatTraceparent(sc: SpanContext): string | undefined {
  if (!isSpanContextValid(sc)) return undefined
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`
}

/** The remote span context of a well-formed traceparent; undefined for anything else. */
export function parseTraceparent(v: unknown): SpanContext | undefined {
  // The length check first: the regex never sees a long string.
  if (typeof v !== 'string' || v.length !== TRACEPARENT_LENGTH) return undefined
  const m = TRACEPARENT.exec(v)
  if (m === null) return undefined
  const sc: SpanContext = { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16), isRemote: true }
  // All-zero ids are invalid by the spec.
  return isSpanContextValid(sc) ? sc : undefined
}
