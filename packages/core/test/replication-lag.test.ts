// Replication lag: a push carries its origin commit time; observers get lagMs for the remote
// changes it made durable (and none for anti-entropy, which carries no time).
import { expect } from 'chai'
import { LoopbackHub, type ObservedChange } from '../src/index.js'
import { decodePush, encodeMessage, MessageType, topicOf } from '../src/internal.js'
import { closedAfterEach, memoryReplica, victimAndRawPeer, waitFor, yjsDeltaOf } from './helpers.js'

describe('replication lag: origin commit time → durable here', function () {
  this.timeout(30_000)
  const { replicas, nets } = closedAfterEach()

  async function victimAndEvil() {
    const { victim, evil } = await victimAndRawPeer({ replicas, nets })
    const seen = new Map<string, ObservedChange>()
    victim.observe({ change: (c) => void seen.set(c.id, { collection: c.collection, id: c.id, peer: c.peer, lagMs: c.lagMs }) })
    const send = (id: string, t: unknown): Promise<void> =>
      evil.publish(
        topicOf('default', 'c'),
        encodeMessage(MessageType.Push, { c: 'c', b: 'yjs', o: 'evil', s: 1, e: [[id, yjsDeltaOf({ v: 1 })]], ...(t === undefined ? {} : { t }) }),
      )
    return { victim, seen, send }
  }

  it('a push with a known origin time gives the remote change its lag; a clock ahead of ours gives a negative one', async () => {
    const { seen, send } = await victimAndEvil()
    const sentAt = Date.now()
    await send('past', sentAt - 1_500)
    await send('future', sentAt + 60_000)
    await waitFor(() => seen.has('past') && seen.has('future'), 'both applied')
    const past = seen.get('past')!.lagMs!
    expect(past)
      .to.be.at.least(1_500)
      .and.below(1_500 + 10_000)
    const future = seen.get('future')!.lagMs!
    expect(future).to.be.below(-50_000)
  })

  it('status().lag: percentiles over recent remote changes and the last sample per peer (negative counted as 0)', async () => {
    const { victim, seen, send } = await victimAndEvil()
    expect(victim.status().lag).to.deep.include({ samples: 0, p50Ms: null, p99Ms: null, maxMs: null })
    const sentAt = Date.now()
    await send('l1', sentAt - 2_000)
    await send('l2', sentAt + 60_000)
    await waitFor(() => seen.has('l1') && seen.has('l2'), 'both applied')
    const lag = victim.status().lag
    expect(lag.samples).to.equal(2)
    expect(lag.p50Ms).to.equal(0) // the clamped future sample is the lower one
    expect(lag.maxMs).to.be.at.least(2_000)
    expect(lag.byPeer.map((p) => [p.peer, p.lastMs])).to.deep.equal([['evil', 0]])
  })

  it('no time, or a malformed one, gives no lag and still applies the delta', async () => {
    const { victim, seen, send } = await victimAndEvil()
    const cases: [string, unknown][] = [
      ['absent', undefined],
      ['string', '1700000000000'],
      ['negative', -5],
      ['fraction', 1.5],
      ['huge', 1e300],
    ]
    for (const [id, t] of cases) await send(id, t)
    await waitFor(() => cases.every(([id]) => seen.has(id)), 'all applied')
    for (const [id] of cases) expect(seen.get(id)!.lagMs, id).to.equal(undefined)
    expect(victim.stats().droppedTotal).to.equal(0)
  })

  it('decodes a push without the optional fields (an older replica) and ignores unknown values', () => {
    const e = [['x', new Uint8Array([1])]]
    const old = decodePush(MessageType.Push, { c: 'c', b: 'yjs', o: 'a', s: 1, e })
    expect(old).to.not.have.property('time')
    expect(old).to.not.have.property('traceparent')
    const bad = decodePush(MessageType.Push, { c: 'c', b: 'yjs', o: 'a', s: 1, e, t: 'soon', p: 'x'.repeat(1000) })
    expect(bad).to.not.have.property('time')
    expect(bad).to.not.have.property('traceparent')
  })

  it("a replica's own pushes carry their commit time; anti-entropy brings changes without a lag", async () => {
    const hub = new LoopbackHub({ connectOnStart: false })
    const a = await memoryReplica({ network: hub.createNetwork('a'), syncOnConnect: false })
    const b = await memoryReplica({ network: hub.createNetwork('b'), syncOnConnect: false })
    replicas.push(a, b)
    const seen = new Map<string, number | undefined>()
    b.observe({ change: (c) => void seen.set(c.id, c.lagMs) })
    await a.collection('c').put('before', { v: 1 }) // not connected: only a round brings it
    hub.connect('a', 'b')
    await waitFor(() => b.peers().includes('a'), 'connected')
    await b.sync()
    expect(seen.has('before')).to.equal(true)
    expect(seen.get('before')).to.equal(undefined)
    await a.collection('c').put('pushed', { v: 1 })
    await waitFor(() => seen.has('pushed'), 'pushed change applied')
    expect(seen.get('pushed')).to.be.a('number').and.at.least(0).and.below(10_000)
  })
})
