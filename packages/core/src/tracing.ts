import {
  isSpanContextValid,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Span,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api'
import { formatTraceparent, parseTraceparent } from './traceparent.js'

/**
 * Spans through the OpenTelemetry API only: without an SDK registered (or a tracerProvider
 * given) every span is the API's no-op, and nothing is carried on the wire unless the caller
 * already had a trace context.
 */
export const TRACER_NAME = '@convergent/core'
export const WRITE_SPAN = 'convergent.write'
export const APPLY_SPAN = 'convergent.apply'

/** The replica's tracer: its own provider, or the global one (resolved lazily by the API, so an SDK registered after open() is used). */
export function tracerOf(provider: TracerProvider | undefined): Tracer {
  return (provider ?? trace.getTracerProvider()).getTracer(TRACER_NAME)
}

/**
 * The span of one local write, from the call through commit and durable to the publish of its
 * delta. Publishing follows durability (and the write's promise), so the span is ended by
 * whoever lets go of it last: the write itself, and the pusher while the delta waits to go out.
 */
export class WriteSpan {
  private holders = 1

  constructor(private readonly span: Span) {}

  /** Another part (the pusher) needs the span open until it calls release(). */
  hold(): void {
    this.holders++
  }

  release(event?: string): void {
    if (event !== undefined) this.span.addEvent(event)
    if (--this.holders === 0) this.span.end()
  }

  event(name: string): void {
    this.span.addEvent(name)
  }

  fail(err: unknown): void {
    this.span.recordException(err instanceof Error ? err : String(err))
    this.span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) })
  }

  /** Its context as a W3C traceparent, for the push envelope (undefined when it has none). */
  traceparent(): string | undefined {
    return formatTraceparent(this.span.spanContext())
  }
}

/**
 * Starts the span of a local write, a child of the caller's active span if any. Undefined when
 * there is nothing to record or carry (the API's no-op without a caller's trace): the write
 * path then keeps no span at all.
 */
export function startWriteSpan(tracer: Tracer, collection: string, id: string, operation: string): WriteSpan | undefined {
  const span = tracer.startSpan(WRITE_SPAN, {
    kind: SpanKind.PRODUCER,
    attributes: { 'convergent.collection': collection, 'convergent.entity': id, 'convergent.operation': operation },
  })
  if (!span.isRecording() && !isSpanContextValid(span.spanContext())) return undefined
  return new WriteSpan(span)
}

/**
 * Starts the span of applying a peer's push: a child of the writer's span when the push carried
 * a valid traceparent, else a root span. Never a child of whatever context the network
 * callback happens to run in.
 */
export function startApplySpan(tracer: Tracer, traceparent: string | undefined, attributes: Attributes): Span {
  const remote = parseTraceparent(traceparent)
  const parent = remote === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, remote)
  return tracer.startSpan(APPLY_SPAN, { kind: SpanKind.CONSUMER, attributes }, parent)
}
