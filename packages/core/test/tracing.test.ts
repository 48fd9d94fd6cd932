// Tracing (tracing.ts): a write's span on one replica and its apply's span on another share one
// trace, through the traceparent the push carries; a peer's bad traceparent costs nothing.
import { expect } from 'chai'
import { context, SpanKind } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { LoopbackHub, type Network } from '../src/index.js'
import { decodeMessage, decodePush, encodeMessage, MessageType, topicOf, type PushMessage } from '../src/internal.js'
import { parseTraceparent } from '../src/traceparent.js'
import { closedAfterEach, memoryReplica, startRawPeer, waitFor, yjsDeltaOf } from './helpers.js'

function recording(): { provider: BasicTracerProvider; exporter: InMemorySpanExporter; spans(name: string): ReadableSpan[] } {
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  return { provider, exporter, spans: (name) => exporter.getFinishedSpans().filter((s) => s.name === name) }
}

describe('tracing: convergent.write and convergent.apply spans (OpenTelemetry API)', function () {
  this.timeout(30_000)
  const { replicas, nets } = closedAfterEach()

  before(() => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  })
  after(() => {
    context.disable()
  })

  it('a write on A and its apply on B are one trace: the apply span is a child of the write span', async () => {
    const hub = new LoopbackHub()
    const onA = recording()
    const onB = recording()
    const a = await memoryReplica({ network: hub.createNetwork('a'), tracerProvider: onA.provider })
    const b = await memoryReplica({ network: hub.createNetwork('b'), tracerProvider: onB.provider })
    replicas.push(a, b)
    // The collection exists on both first: a write that creates it is announced, and the round
    // that follows may bring it before its push does.
    await a.collection('inventory').put('sku-0', { stock: 1 })
    await waitFor(async () => (await b.collection('inventory').get('sku-0')) !== undefined, 'b has the collection')
    await waitFor(() => onA.spans('convergent.write').length === 1, 'first write span ended')
    // Rounds with a peer run one after another: these wait out any round still running (the
    // one the collection's announcement started, say), which could otherwise bring sku-1 first.
    await b.sync()
    await a.sync()
    onA.exporter.reset()
    onB.exporter.reset()
    await a.collection('inventory').put('sku-1', { stock: 3 })
    await waitFor(() => onB.spans('convergent.apply').length === 1 && onA.spans('convergent.write').length === 1, 'both spans ended')
    const [write] = onA.spans('convergent.write')
    const [apply] = onB.spans('convergent.apply')
    expect(write!.kind).to.equal(SpanKind.PRODUCER)
    expect(write!.attributes).to.deep.equal({ 'convergent.collection': 'inventory', 'convergent.entity': 'sku-1', 'convergent.operation': 'put' })
    // commit → durable → publish: the span ends once the push is out, not when put() resolves.
    expect(write!.events.map((e) => e.name)).to.deep.equal(['durable', 'published'])
    expect(apply!.kind).to.equal(SpanKind.CONSUMER)
    expect(apply!.spanContext().traceId).to.equal(write!.spanContext().traceId)
    expect(apply!.parentSpanContext?.spanId).to.equal(write!.spanContext().spanId)
    expect(apply!.attributes).to.include({
      'convergent.collection': 'inventory',
      'convergent.peer': 'a',
      'convergent.origin': 'a',
      'convergent.deltas': 1,
      'convergent.applied': 1,
      'convergent.dropped': 0,
    })
  })

  it("a write inside the caller's span is its child, and the trace goes on to the peer", async () => {
    const hub = new LoopbackHub()
    const traced = recording()
    const a = await memoryReplica({ network: hub.createNetwork('a'), tracerProvider: traced.provider })
    const b = await memoryReplica({ network: hub.createNetwork('b'), tracerProvider: traced.provider })
    replicas.push(a, b)
    b.collection('orders')
    const request = traced.provider.getTracer('test')
    const traceId = await request.startActiveSpan('POST /orders', async (span) => {
      await a.collection('orders').put('o-1', { total: 5 })
      span.end()
      return span.spanContext().traceId
    })
    await waitFor(() => traced.spans('convergent.apply').length === 1 && traced.spans('convergent.write').length === 1, 'spans ended')
    const [outer] = traced.spans('POST /orders')
    const [write] = traced.spans('convergent.write')
    const [apply] = traced.spans('convergent.apply')
    expect(write!.parentSpanContext?.spanId).to.equal(outer!.spanContext().spanId)
    expect(new Set([outer!, write!, apply!].map((s) => s.spanContext().traceId))).to.deep.equal(new Set([traceId]))
  })

  it('pushes carry the traceparent of a traced write, and none without an SDK (the API is a no-op)', async () => {
    const hub = new LoopbackHub()
    const traced = recording()
    const withSdk = await memoryReplica({ network: hub.createNetwork('with'), tracerProvider: traced.provider })
    const without = await memoryReplica({ network: hub.createNetwork('without') })
    replicas.push(withSdk, without)
    const pushes: PushMessage[] = []
    const spy = hub.createNetwork('spy')
    nets.push(spy)
    await spy.start({
      onMessage: (_topic, data) => {
        const m = decodeMessage(data, 1 << 20)
        pushes.push(decodePush(m.type, m.body))
      },
      onRequest: async () => new Uint8Array(),
      onPeerConnected: () => {},
      onPeerDisconnected: () => {},
    })
    spy.subscribe(topicOf('default', 'c'))
    await waitFor(() => withSdk.peers().includes('spy') && without.peers().includes('spy'), 'connected')
    await withSdk.collection('c').put('x', { v: 1 })
    await waitFor(() => pushes.some((p) => p.origin === 'with'), 'traced push seen')
    await without.collection('c').put('y', { v: 1 })
    await waitFor(() => pushes.some((p) => p.origin === 'without'), 'untraced push seen')
    const tracedPush = pushes.find((p) => p.origin === 'with')!
    const plainPush = pushes.find((p) => p.origin === 'without')!
    await waitFor(() => traced.spans('convergent.write').length === 1, 'write span ended')
    const [write] = traced.spans('convergent.write')
    expect(parseTraceparent(tracedPush.traceparent)).to.deep.include({ traceId: write!.spanContext().traceId, spanId: write!.spanContext().spanId })
    expect(plainPush.traceparent).to.equal(undefined)
    expect(plainPush.time).to.be.a('number') // the commit time travels either way (replication lag)
  })

  it("a peer's malformed or oversized traceparent is ignored: the delta still applies, under a root apply span", async () => {
    const hub = new LoopbackHub()
    const traced = recording()
    const victim = await memoryReplica({ network: hub.createNetwork('victim'), tracerProvider: traced.provider })
    replicas.push(victim)
    const evil: Network = hub.createNetwork('evil')
    nets.push(evil)
    await startRawPeer(evil, victim)
    victim.collection('c', { backend: 'yjs' })
    const bad: unknown[] = [
      `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01${'x'.repeat(100_000)}`, // oversized
      'x'.repeat(55),
      `ff-${'a'.repeat(32)}-${'b'.repeat(16)}-01`, // a version we do not speak
      `00-${'A'.repeat(32)}-${'b'.repeat(16)}-01`, // upper-case hex
      `00-${'0'.repeat(32)}-${'b'.repeat(16)}-01`, // all-zero trace id
      `00-${'a'.repeat(32)}-${'0'.repeat(16)}-01`, // all-zero span id
      42,
      { traceId: 'a'.repeat(32) },
      new Uint8Array(55),
      null,
    ]
    for (const [i, p] of bad.entries()) {
      const body = { c: 'c', b: 'yjs', o: 'evil', s: i + 1, e: [[`e${i}`, yjsDeltaOf({ i })]], p }
      await evil.publish(topicOf('default', 'c'), encodeMessage(MessageType.Push, body))
    }
    await waitFor(() => traced.spans('convergent.apply').length === bad.length, 'every push applied')
    for (let i = 0; i < bad.length; i++) expect(await victim.collection('c').get(`e${i}`)).to.deep.equal({ i })
    expect(victim.stats().droppedTotal).to.equal(0)
    for (const span of traced.spans('convergent.apply')) {
      expect(span.parentSpanContext).to.equal(undefined)
      expect(span.attributes['convergent.applied']).to.equal(1)
    }
  })
})
