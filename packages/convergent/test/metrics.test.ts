// replica.metrics: the convergent_* metrics move when they should, labels stay bounded.
// LevelDB in temp folders; replicas joined by the in-process LoopbackHub (serve.test.ts uses libp2p).
import { expect } from 'chai'
import { LoopbackHub, silentLogger } from '@convergent/core'
import { encodeMessage, MessageType, topicOf } from '@convergent/core/internal'
import { yjsBackend } from '@convergent/yjs'
import { open, OTHER_COLLECTIONS, type ReplicaWithMetrics } from '../src/index.js'
import { replicasAfterEach, waitFor } from './helpers.js'
import { parsePrometheusText, valueOf, type Sample } from './prometheus.js'

function yjsDelta(value: Record<string, number>): Uint8Array {
  const backend = yjsBackend()
  return backend.put(backend.create(new Uint8Array(16).fill(3)), value).delta!
}

async function scrape(replica: ReplicaWithMetrics): Promise<Sample[]> {
  return parsePrometheusText(await replica.metrics.metrics())
}

async function metric(replica: ReplicaWithMetrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  return valueOf(await scrape(replica), name, labels)
}

describe('replica.metrics (prom-client)', function () {
  this.timeout(30_000)
  const suite = replicasAfterEach('convergent-metrics-', { network: false })
  const replica = suite.replica

  it('a local write counts in writes_total and deltas_applied_total{origin="local"} of its collection, and times its store batch', async () => {
    const r = await replica()
    expect(await metric(r, 'convergent_writes_total', { collection: 'orders' })).to.equal(undefined)
    const batches = (await metric(r, 'convergent_store_batch_duration_seconds_count')) ?? 0
    await r.collection('orders').put('o1', { total: 1 })
    await r.collection('orders').put('o2', { total: 2 })
    await r.collection('stock').put('s1', { n: 1 })
    const samples = await scrape(r)
    expect(valueOf(samples, 'convergent_writes_total', { collection: 'orders' })).to.equal(2)
    expect(valueOf(samples, 'convergent_writes_total', { collection: 'stock' })).to.equal(1)
    expect(valueOf(samples, 'convergent_deltas_applied_total', { collection: 'orders', origin: 'local' })).to.equal(2)
    expect(valueOf(samples, 'convergent_deltas_applied_total', { collection: 'orders', origin: 'remote' })).to.equal(0)
    expect(valueOf(samples, 'convergent_store_batch_duration_seconds_count')! - batches).to.equal(3)
    expect(valueOf(samples, 'convergent_store_batch_duration_seconds_sum')).to.be.greaterThan(0)
    expect(valueOf(samples, 'convergent_collections')).to.equal(2)
    expect(valueOf(samples, 'convergent_bootstrap_peers'), 'no network, no bootstrap peers').to.equal(0)
  })

  it('a delta from a peer counts as origin="remote" (no peer id in the labels); a round counts in sync_rounds_total and its histogram', async () => {
    const hub = new LoopbackHub({ connectOnStart: false })
    const a = await replica({ network: hub.createNetwork('a'), syncOnConnect: false })
    const b = await replica({ network: hub.createNetwork('b'), syncOnConnect: false })
    await a.collection('orders').put('o1', { total: 1 })
    expect(await metric(b, 'convergent_sync_rounds_total', { result: 'ok' })).to.equal(0)
    expect(await metric(b, 'convergent_sync_round_duration_seconds_count')).to.equal(0)
    hub.connect('a', 'b')
    await waitFor(() => b.peers().includes('a'), 'connected')
    expect(await metric(b, 'convergent_peers')).to.equal(1)
    await b.sync()
    const samples = await scrape(b)
    expect(valueOf(samples, 'convergent_deltas_applied_total', { collection: 'orders', origin: 'remote' })).to.equal(1)
    expect(valueOf(samples, 'convergent_writes_total', { collection: 'orders' })).to.equal(0)
    expect(valueOf(samples, 'convergent_sync_rounds_total', { result: 'ok' })).to.equal(1)
    expect(valueOf(samples, 'convergent_sync_rounds_total', { result: 'failed' })).to.equal(0)
    expect(valueOf(samples, 'convergent_sync_round_duration_seconds_count')).to.equal(1)
    expect(valueOf(samples, 'convergent_sync_round_duration_seconds_bucket', { le: '+Inf' })).to.equal(1)
    expect(samples.filter((s) => s.labels['origin'] !== undefined).every((s) => ['local', 'remote'].includes(s.labels['origin']!))).to.equal(true)
    // Pushed, not synced: a live write of a is applied on b as remote too.
    await a.collection('orders').put('o2', { total: 2 })
    await waitFor(async () => (await metric(b, 'convergent_deltas_applied_total', { collection: 'orders', origin: 'remote' })) === 2, 'pushed change counted')
  })

  it('divergent_entities has one series per connected peer after a round, removed when the peer disconnects', async () => {
    const hub = new LoopbackHub({ connectOnStart: false })
    const a = await replica({ network: hub.createNetwork('a'), syncOnConnect: false })
    const b = await replica({ network: hub.createNetwork('b'), syncOnConnect: false })
    hub.connect('a', 'b')
    await waitFor(() => b.peers().includes('a'), 'connected')
    expect((await scrape(b)).filter((s) => s.name === 'convergent_divergent_entities')).to.deep.equal([])
    await b.sync()
    expect(await metric(b, 'convergent_divergent_entities', { peer: 'a' })).to.equal(0)
    hub.disconnect('a', 'b')
    await waitFor(() => b.peers().length === 0, 'disconnected')
    const after = await scrape(b)
    expect(after.filter((s) => s.name === 'convergent_divergent_entities')).to.deep.equal([])
    expect(valueOf(after, 'convergent_peers')).to.equal(0)
    expect(a.closed).to.equal(false)
  })

  it('a malformed message from a peer counts in deltas_dropped_total{reason="malformed"}', async () => {
    const hub = new LoopbackHub()
    const victim = await replica({ network: hub.createNetwork('victim') })
    victim.collection('orders')
    const evil = hub.createNetwork('evil')
    suite.first(() => evil.stop())
    await evil.start({ onMessage: () => {}, onRequest: async () => new Uint8Array(), onPeerConnected: () => {}, onPeerDisconnected: () => {} })
    await waitFor(() => victim.peers().includes('evil'), 'connected')
    expect(await metric(victim, 'convergent_deltas_dropped_total', { reason: 'malformed' })).to.equal(0)
    expect(await metric(victim, 'convergent_deltas_dropped_total', { reason: 'tooLarge' })).to.equal(0)
    await evil.publish(topicOf('default', 'orders'), new Uint8Array([0xff, 0x00, 0x13, 0x37]))
    await waitFor(async () => (await metric(victim, 'convergent_deltas_dropped_total', { reason: 'malformed' })) === 1, 'the drop counted')
  })

  it('replication_lag_seconds: a pushed change with a known origin time is one sample; a time ahead of ours is clamped to 0 and counted', async () => {
    const hub = new LoopbackHub()
    const victim = await replica({ network: hub.createNetwork('victim') })
    victim.collection('orders', { backend: 'yjs' })
    const evil = hub.createNetwork('evil')
    suite.first(() => evil.stop())
    await evil.start({ onMessage: () => {}, onRequest: async () => new Uint8Array(), onPeerConnected: () => {}, onPeerDisconnected: () => {} })
    await waitFor(() => victim.peers().includes('evil'), 'connected')
    const lagCount = (): Promise<number | undefined> => metric(victim, 'convergent_replication_lag_seconds_count', { collection: 'orders' })
    expect(await lagCount()).to.equal(undefined)
    expect(await metric(victim, 'convergent_replication_lag_negative_total')).to.equal(0)
    const push = (id: string, t: number): Uint8Array =>
      encodeMessage(MessageType.Push, { c: 'orders', b: 'yjs', o: 'evil', s: 1, e: [[id, yjsDelta({ total: 1 })]], t })

    await evil.publish(topicOf('default', 'orders'), push('o1', Date.now() - 2_000))
    await waitFor(async () => (await lagCount()) === 1, 'one lag sample')
    let samples = await scrape(victim)
    const sum = valueOf(samples, 'convergent_replication_lag_seconds_sum', { collection: 'orders' })!
    expect(sum).to.be.at.least(2).and.below(12)
    expect(valueOf(samples, 'convergent_replication_lag_seconds_bucket', { collection: 'orders', le: '1' })).to.equal(0)
    expect(valueOf(samples, 'convergent_replication_lag_seconds_bucket', { collection: 'orders', le: '30' })).to.equal(1)

    // The sender's clock is an hour ahead: lag would be negative.
    await evil.publish(topicOf('default', 'orders'), push('o2', Date.now() + 3_600_000))
    await waitFor(async () => (await lagCount()) === 2, 'second lag sample')
    samples = await scrape(victim)
    expect(valueOf(samples, 'convergent_replication_lag_negative_total')).to.equal(1)
    expect(valueOf(samples, 'convergent_replication_lag_seconds_sum', { collection: 'orders' })).to.equal(sum) // counted as 0
    expect(valueOf(samples, 'convergent_replication_lag_seconds_bucket', { collection: 'orders', le: '0.001' })).to.equal(1)
  })

  it(`bounds the collection label: past maxCollectionLabels, collections are counted under ${OTHER_COLLECTIONS}`, async () => {
    const r = await replica({ metrics: { maxCollectionLabels: 3 } })
    for (let i = 0; i < 7; i++) await r.collection(`c${i}`).put('x', { v: i })
    await r.collection('c5').put('y', { v: 1 })
    await r.collection('c0').put('y', { v: 1 })
    const samples = await scrape(r)
    const labelled = (name: string): string[] =>
      samples
        .filter((s) => s.name === name)
        .map((s) => s.labels['collection']!)
        .sort()
    expect(labelled('convergent_writes_total')).to.deep.equal(['_other', 'c0', 'c1', 'c2'])
    expect(valueOf(samples, 'convergent_writes_total', { collection: 'c0' })).to.equal(2)
    expect(valueOf(samples, 'convergent_writes_total', { collection: OTHER_COLLECTIONS })).to.equal(5) // c3..c6 and c5 again
    expect(new Set(labelled('convergent_cached_entities'))).to.deep.equal(new Set(['_other', 'c0', 'c1', 'c2']))
    expect(valueOf(samples, 'convergent_cached_entities', { collection: OTHER_COLLECTIONS })).to.equal(5)
    const series = new Set(samples.filter((s) => s.labels['collection'] !== undefined).map((s) => s.labels['collection']))
    expect(series.size).to.equal(4)
  })

  it('counts cache hits and evictions', async () => {
    const r = await replica({ cacheSize: 2 })
    const col = r.collection('c')
    for (const id of ['a', 'b', 'c', 'd']) await col.put(id, { v: 1 })
    const hits = (await metric(r, 'convergent_cache_hits_total'))!
    await col.get('d')
    await col.get('d')
    const samples = await scrape(r)
    expect(valueOf(samples, 'convergent_cache_hits_total')).to.equal(hits + 2)
    expect(valueOf(samples, 'convergent_cache_evictions_total')).to.equal(2)
    expect(valueOf(samples, 'convergent_cache_misses_total')).to.equal(4)
  })

  it('entity_largest_bytes follows the largest entity written; max_delta_bytes is the limit; entities_not_sent_total starts at 0', async () => {
    const r = await replica({ limits: { maxDeltaBytes: 1024 * 1024 } })
    expect(await metric(r, 'convergent_entity_largest_bytes')).to.equal(0)
    const col = r.collection('c')
    await col.put('a', { v: 1 })
    await col.put('b', { v: 'x'.repeat(4000) })
    await col.put('a', { v: 2 })
    const samples = await scrape(r)
    expect(valueOf(samples, 'convergent_entity_largest_bytes')).to.equal(r.stats().entitySize.largest!.bytes).and.be.above(4000)
    expect(r.stats().entitySize.largest).to.include({ collection: 'c', id: 'b' })
    expect(valueOf(samples, 'convergent_max_delta_bytes')).to.equal(1024 * 1024)
    expect(valueOf(samples, 'convergent_entities_not_sent_total')).to.equal(0)
  })

  it("registers prom-client's default process metrics, one set per process, less its gauges named like counters; metrics: false gives an empty registry", async () => {
    const a = await replica()
    const b = await replica()
    const names = (await scrape(a)).map((s) => s.name)
    expect(names).to.include('process_cpu_user_seconds_total')
    expect(names).to.include('nodejs_eventloop_lag_seconds')
    // `promtool check metrics` rejects gauges ending in _total; the per-type gauges stay.
    expect(names).to.include('nodejs_active_handles')
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) expect(names).to.not.include(name)
    expect(b.metrics.getSingleMetric('process_cpu_user_seconds_total')).to.equal(a.metrics.getSingleMetric('process_cpu_user_seconds_total'))
    const quiet = await replica({ metrics: false })
    await quiet.collection('c').put('x', { v: 1 })
    expect((await quiet.metrics.metrics()).trim()).to.equal('')
    const noProcess = await replica({ metrics: { processMetrics: false } })
    expect((await scrape(noProcess)).every((s) => s.name.startsWith('convergent_'))).to.equal(true)
  })

  it('refuses a bad label bound before opening anything', async () => {
    const dir = await suite.folder()
    let error: unknown
    await open({ dir, network: false, logger: silentLogger, metrics: { maxCollectionLabels: -1 } }).catch((err: unknown) => (error = err))
    expect((error as { code?: string }).code).to.equal('ERR_INVALID_ARGUMENT')
    const r = await open({ dir, network: false, logger: silentLogger }) // not locked
    await r.close()
  })
})
