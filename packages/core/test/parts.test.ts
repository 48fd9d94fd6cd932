// Deltas larger than a message holds travel in parts (replication/parts.ts): fetched by
// ticket from the responder, uploaded by the requester, checked against size and hash.
import { expect } from 'chai'
import { LoopbackHub, sha256 } from '../src/index.js'
import { decodeMessage, encodeMessage, encodeRangeRequest, MessageType } from '../src/internal.js'
import { Outbox, Uploads } from '../src/replication/parts.js'
import { closedAfterEach, hostile, ManualClock, memoryReplica, replicaWithRawPeer, spy, startRawPeer, waitFor, type Answer } from './helpers.js'

const SMALL = { maxChunkBytes: 2048 } // anything over 2 KiB goes in parts
/** ~20 KB that do not compress (Automerge deflates what it saves): hex of a hash chain. */
const big = (tag: string): { tag: string; blob: string } => {
  let blob = ''
  for (let h = sha256(tag); blob.length < 20_000; h = sha256(h)) blob += Buffer.from(h).toString('hex')
  return { tag, blob }
}

describe('parts: deltas too large for one message', function () {
  this.timeout(30_000)
  const { replicas, nets } = closedAfterEach()

  for (const backend of ['yjs', 'automerge'] as const) {
    it(`${backend}: go both ways in parts — fetched by ticket and uploaded — and arrive whole`, async () => {
      const hub = new LoopbackHub({ connectOnStart: false })
      const sent: number[] = []
      const a = await memoryReplica({ network: spy(hub.createNetwork('a'), { sent: (t) => void sent.push(t) }), syncOnConnect: false, limits: SMALL })
      const b = await memoryReplica({ network: hub.createNetwork('b'), syncOnConnect: false, limits: SMALL })
      replicas.push(a, b)
      await a.collection('p', { backend }).put('from-a', big('a'))
      await b.collection('p', { backend }).put('from-b', big('b'))
      hub.connect('a', 'b')
      await waitFor(() => a.peers().includes('b'), 'connected')
      await a.sync()
      for (const r of [a, b]) {
        expect(await r.collection('p').get('from-a')).to.deep.equal(big('a'))
        expect(await r.collection('p').get('from-b')).to.deep.equal(big('b'))
      }
      expect(sent.filter((t) => t === MessageType.FetchRequest).length).to.be.at.least(1)
      expect(sent.filter((t) => t === MessageType.UploadRequest).length).to.be.at.least(1)
      const [again] = await a.sync()
      expect(again!.messages).to.equal(1)
    })

    it(`${backend}: a large change to an entity both hold goes in parts through the exchange`, async () => {
      const hub = new LoopbackHub({ connectOnStart: false })
      const a = await memoryReplica({ network: hub.createNetwork('a'), syncOnConnect: false, limits: SMALL })
      const b = await memoryReplica({ network: hub.createNetwork('b'), syncOnConnect: false, limits: SMALL })
      replicas.push(a, b)
      hub.connect('a', 'b')
      await waitFor(() => a.peers().includes('b'), 'connected')
      await a.collection('p', { backend }).put('k', { v: 0 })
      await a.sync()
      hub.disconnect('a', 'b')
      await a.collection('p').update('k', (d) => void (d.a = big('a').blob))
      await b.collection('p').update('k', (d) => void (d.b = big('b').blob))
      hub.connect('a', 'b')
      await waitFor(() => a.peers().includes('b'), 'reconnected')
      await a.sync()
      const want = { v: 0, a: big('a').blob, b: big('b').blob }
      expect(await a.collection('p').get('k')).to.deep.equal(want)
      expect(await b.collection('p').get('k')).to.deep.equal(want)
    })
  }

  it('refuses parts that do not match their hash, and stores nothing of them', async () => {
    const hub = new LoopbackHub()
    const payload = new Uint8Array(5000).fill(7)
    nets.push(
      await hostile(
        hub,
        'evil',
        ticketing({ t: 1, n: payload.byteLength, h: sha256('something else') }, (type) =>
          type === MessageType.FetchRequest ? encodeMessage(MessageType.FetchResponse, { b: payload }) : undefined,
        ),
      ),
    )
    const r = await memoryReplica({ network: hub.createNetwork('victim'), syncOnConnect: false })
    replicas.push(r)
    await waitFor(() => r.peers().includes('evil'), 'connected')
    const [round] = await r.sync()
    expect(round!.failed[0]!.error).to.match(/do not match their hash/)
    expect(r.collections()).to.deep.equal([])
  })

  it('refuses a ticket announcing more than maxDeltaBytes before fetching anything', async () => {
    const hub = new LoopbackHub()
    let fetches = 0
    nets.push(
      await hostile(
        hub,
        'evil',
        ticketing({ t: 1, n: 2 ** 40, h: sha256('x') }, (type) => void (type === MessageType.FetchRequest && fetches++)),
      ),
    )
    const r = await memoryReplica({ network: hub.createNetwork('victim'), syncOnConnect: false })
    replicas.push(r)
    await waitFor(() => r.peers().includes('evil'), 'connected')
    const [round] = await r.sync()
    expect(round!.failed[0]!.error).to.match(/over maxDeltaBytes/)
    expect(fetches).to.equal(0)
  })

  it('counts a ticket at its full size in a response: one range answer hands out one large delta, not a budget of tickets', async () => {
    const hub = new LoopbackHub()
    const good = await memoryReplica({ network: hub.createNetwork('good'), limits: SMALL })
    const peer = hub.createNetwork('greedy')
    replicas.push(good)
    nets.push(peer)
    await Promise.all(Array.from({ length: 6 }, (_, i) => good.collection('p', { backend: 'yjs' }).put(`k${i}`, big(`k${i}`))))
    await startRawPeer(peer, good)
    const reply = await peer.request('good', encodeRangeRequest({ collection: 'p', backend: 'yjs', ranges: [[0, 65535]], skip: 0, parts: true }))
    const body = decodeMessage(reply, 1 << 20).body as { e: [string, unknown][]; n?: unknown }
    expect(body.e.length).to.equal(1) // a ticket of ~20 KB fills the 2 KiB response
    expect(body.e[0]![1]).to.not.be.instanceOf(Uint8Array)
    expect(body.n).to.not.equal(undefined) // the rest in the next request
  })

  it('answers uploads out of order, over the size bound or with a wrong hash with an Error, and applies none', async () => {
    const { good, peer } = await replicaWithRawPeer(replicas, 'evil', 'k')
    nets.push(peer)
    const bytes = new Uint8Array(3000).fill(1)
    const upload = (o: number, d: Uint8Array, h = sha256(bytes), n = bytes.byteLength): Promise<number> =>
      peer
        .request('good', encodeMessage(MessageType.UploadRequest, { c: 'p', b: 'yjs', i: 'x', n, h, o, d }))
        .then((reply) => decodeMessage(reply, 1 << 20).type)
    expect(await upload(1000, bytes.subarray(1000, 2000))).to.equal(MessageType.Error) // no upload started
    expect(await upload(0, bytes.subarray(0, 1000))).to.equal(MessageType.Ack)
    expect(await upload(2000, bytes.subarray(2000))).to.equal(MessageType.Error) // skips a part
    expect(await upload(0, bytes.subarray(0, 10), sha256(bytes), 2 ** 40)).to.equal(MessageType.Error)
    expect(await upload(0, bytes.subarray(0, 1500), sha256('other'))).to.equal(MessageType.Ack)
    expect(await upload(1500, bytes.subarray(1500), sha256('other'))).to.equal(MessageType.Error) // complete, hash differs
    expect(await good.collection('p').get('x')).to.equal(undefined)
    expect(good.stats().peers.evil!.dropped.malformed).to.be.at.least(4)
  })
})

describe('parts: Outbox and Uploads', function () {
  it('the outbox serves a ticket only to its peer, drops the oldest when over budget and expires idle ones', async () => {
    const clock = new ManualClock()
    const outbox = new Outbox(clock, 10_000, 1000)
    const t1 = outbox.put('p1', new Uint8Array(6000).fill(1))!
    expect(outbox.read('p2', t1.ticket, 0, 100)).to.equal(undefined)
    expect(outbox.read('p1', t1.ticket, 0, 100)!.byteLength).to.equal(100)
    const t2 = outbox.put('p1', new Uint8Array(6000).fill(2))! // over budget: t1 goes
    expect(outbox.read('p1', t1.ticket, 100, 100)).to.equal(undefined)
    await clock.advance(1001)
    outbox.put('p1', new Uint8Array(10).fill(3))
    expect(outbox.read('p1', t2.ticket, 0, 100)).to.equal(undefined) // expired
    expect(outbox.put('p1', new Uint8Array(20_000))).to.equal(undefined) // could never fit
  })

  it("the outbox makes room from whoever holds the most: one peer's requests cannot push out another's tickets", async () => {
    const clock = new ManualClock()
    const outbox = new Outbox(clock, 10_000)
    const honest = outbox.put('honest', new Uint8Array(4000).fill(1))!
    const greedy = Array.from({ length: 10 }, () => outbox.put('greedy', new Uint8Array(3000).fill(2)))
    expect(greedy.every((t) => t !== undefined)).to.equal(true) // each made room from greedy's own oldest
    expect(outbox.read('honest', honest.ticket, 0, 100)!.byteLength).to.equal(100)
    expect(outbox.read('greedy', greedy[0]!.ticket, 0, 100)).to.equal(undefined)
    expect(outbox.read('greedy', greedy[9]!.ticket, 0, 100)!.byteLength).to.equal(100)
    expect(outbox.size).to.be.at.most(10_000)
    // A third peer gets room from the largest holder, until it would be the largest itself.
    const third = outbox.put('third', new Uint8Array(2000).fill(3))!
    expect(outbox.read('third', third.ticket, 0, 100)!.byteLength).to.equal(100)
    expect(outbox.read('honest', honest.ticket, 100, 100)!.byteLength).to.equal(100)
    expect(outbox.put('third', new Uint8Array(9000))).to.equal(undefined)
    expect(outbox.read('honest', honest.ticket, 200, 100)!.byteLength).to.equal(100)
  })

  it('uploads keep one per peer within a budget over all peers; a new one pushes out the quietest', async () => {
    const clock = new ManualClock()
    const uploads = new Uploads(clock, 5000)
    const whole = new Uint8Array(3000).fill(9)
    const h = sha256(whole)
    const part = (peer: string, id: string, offset: number, end: number): Uint8Array | 'more' =>
      uploads.add(peer, { collection: 'p', backend: 'yjs', id, size: 3000, hash: h, offset, part: whole.subarray(offset, end) })
    expect(part('p1', 'x', 0, 1000)).to.equal('more') // p1 starts, then goes quiet
    await clock.advance(10)
    expect(part('p2', 'y', 0, 1000)).to.equal('more') // no room for both: p1's goes
    expect(() => part('p1', 'x', 1000, 3000)).to.throw(/out of order/)
    expect(part('p2', 'y', 1000, 3000)).to.deep.equal(whole)
    expect(() => uploads.add('p3', { collection: 'p', backend: 'yjs', id: 'z', size: 6000, hash: h, offset: 0, part: whole })).to.throw(/over the budget/)
  })
})

/** A peer claiming collection 'p', whose range answer is one entity as the given ticket; `other` answers the rest. */
function ticketing(ticket: { t: number; n: number; h: Uint8Array }, other: (type: number) => Uint8Array | undefined): Answer {
  return (type) => {
    if (type === MessageType.RootsRequest) return encodeMessage(MessageType.RootsResponse, { r: [['p', 'yjs', sha256('root')]], f: 1 })
    if (type === MessageType.RangeRequest) return encodeMessage(MessageType.RangeResponse, { e: [['k', ticket]] })
    return other(type) ?? encodeMessage(MessageType.Error, { m: 'no' })
  }
}
