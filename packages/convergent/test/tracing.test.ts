// One trace across two real nodes (libp2p over TCP on 127.0.0.1, LevelDB on disk): the write's
// span on A and the apply's span on B, joined by the traceparent the gossip push carries.
import { expect } from 'chai'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { replicasAfterEach, waitFor } from './helpers.js'

describe('tracing over libp2p', function () {
  this.timeout(60_000)
  const suite = replicasAfterEach('convergent-tracing-')

  it('the apply span on B is a child of the write span on A (same trace id)', async () => {
    const exporter = new InMemorySpanExporter()
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
    const a = await suite.replica({ syncOnConnect: false, tracerProvider })
    const b = await suite.replica({ syncOnConnect: false, tracerProvider, peers: [a.multiaddrs[0]!] })
    b.collection('orders', { backend: 'yjs' })
    a.collection('orders', { backend: 'yjs' })
    await waitFor(() => b.peers().includes(a.peerId), 'connected')
    // Gossip needs B's subscription to reach A before a push gets through: write until one does.
    let n = 0
    await waitFor(
      async () => {
        await a.collection('orders').put(`o-${n++}`, { total: n })
        return exporter.getFinishedSpans().some((s) => s.name === 'convergent.apply')
      },
      'a push applied on B',
      30_000,
    )
    const spans = exporter.getFinishedSpans()
    const apply = spans.find((s) => s.name === 'convergent.apply')!
    const write = spans.find((s) => s.name === 'convergent.write' && s.spanContext().spanId === apply.parentSpanContext?.spanId)
    expect(write, 'the write span the apply points to').to.not.equal(undefined)
    expect(apply.spanContext().traceId).to.equal(write!.spanContext().traceId)
    expect(apply.attributes['convergent.peer']).to.equal(a.peerId)
    expect(write!.events.map((e) => e.name)).to.include('published')
  })
})
