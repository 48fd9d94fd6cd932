// Deltas larger than a message holds travel in parts (replication/parts.ts): fetched by
// ticket from the responder, uploaded by the requester, checked against size and hash.
import { expect } from 'chai'
import { LoopbackHub, sha256, type Network } from '../src/index.js'
import { decodeMessage, encodeMessage, encodeRangeRequest, MessageType } from '../src/internal.js'
import { Outbox, Uploads } from '../src/replication/parts.js'
import { closedAfterEach, dump, hostile, ManualClock, memoryReplica, replicaWithRawPeer, spy, startRawPeer, waitFor, type Answer } from './helpers.js'

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

  it("a peer with a larger maxDeltaBytes: the entity over this replica's limit is dropped (tooLarge, counted, never fetched); every other entity of the same answers still arrives", async () => {
    const hub = new LoopbackHub({ connectOnStart: false })
    let fetches = 0
    const a = await memoryReplica({ network: hub.createNetwork('a'), syncOnConnect: false, limits: SMALL })
    const b = await memoryReplica({
      network: spy(hub.createNetwork('b'), { sent: (t) => void (t === MessageType.FetchRequest && fetches++) }),
      syncOnConnect: false,
      limits: { ...SMALL, maxDeltaBytes: 8 * 1024 },
    })
    replicas.push(a, b)
    const col = a.collection('p', { backend: 'yjs' })
    await col.put('huge', big('h'))
    for (let i = 0; i < 5; i++) await col.put(`s${i}`, { v: i })
    hub.connect('a', 'b')
    await waitFor(() => b.peers().includes('a'), 'connected')
    const [round] = await b.sync()
    expect(round!.failed, 'the round goes on past the entity it cannot take').to.deep.equal([])
    const onB = b.collection('p', { backend: 'yjs' })
    expect(await Promise.all([0, 1, 2, 3, 4].map((i) => onB.get(`s${i}`)))).to.deep.equal([0, 1, 2, 3, 4].map((v) => ({ v })))
    expect(await onB.get('huge')).to.equal(undefined)
    expect(fetches, 'nothing of it fetched').to.equal(0)
    expect(b.stats().droppedByReason.tooLarge).to.be.at.least(1)
  })

  it('a peer with a smaller maxDeltaBytes refuses the upload of an entity over it (tooLarge, not malformed); the uploader goes on with the rest of the collection', async () => {
    const hub = new LoopbackHub({ connectOnStart: false })
    const a = await memoryReplica({ network: hub.createNetwork('a'), syncOnConnect: false, limits: SMALL })
    const b = await memoryReplica({ network: hub.createNetwork('b'), syncOnConnect: false, limits: { ...SMALL, maxDeltaBytes: 8 * 1024 } })
    replicas.push(a, b)
    const col = a.collection('p', { backend: 'yjs' })
    // Ids whose digest leaves put 'huge' among them, so that the push meets it before the others.
    for (let i = 0; i < 20; i++) await col.put(`s${i}`, { v: i })
    await col.put('huge', big('h'))
    hub.connect('a', 'b')
    await waitFor(() => a.peers().includes('b'), 'connected')
    const [round] = await a.sync()
    expect(round!.failed, "a's round goes on past the entity b cannot take").to.deep.equal([])
    const onB = b.collection('p', { backend: 'yjs' })
    for (let i = 0; i < 20; i++) expect(await onB.get(`s${i}`)).to.deep.equal({ v: i })
    expect(await onB.get('huge')).to.equal(undefined)
    expect(b.stats().droppedByReason).to.deep.include({ malformed: 0 })
    expect(b.stats().droppedByReason.tooLarge).to.be.at.least(1)
  })

  it('after a refused upload, no other upload goes to that peer in the round (a refusal may be its rate bound or the policy: one request, not one per large entity)', async () => {
    const hub = new LoopbackHub({ connectOnStart: false })
    let uploads = 0
    const a = await memoryReplica({
      network: spy(hub.createNetwork('a'), { sent: (t) => void (t === MessageType.UploadRequest && uploads++) }),
      syncOnConnect: false,
      limits: SMALL,
    })
    const b = await memoryReplica({ network: hub.createNetwork('b'), syncOnConnect: false, limits: { ...SMALL, maxDeltaBytes: 8 * 1024 } })
    replicas.push(a, b)
    for (const id of ['h1', 'h2', 'h3']) await a.collection('p', { backend: 'yjs' }).put(id, big(id))
    hub.connect('a', 'b')
    await waitFor(() => a.peers().includes('b'), 'connected')
    const [round] = await a.sync()
    expect(round!.failed).to.deep.equal([])
    expect(uploads).to.equal(1)
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
    // Dropped unfetched as too large (a peer with a larger maxDeltaBytes sends such tickets honestly), the round goes on.
    expect(round!.failed).to.deep.equal([])
    expect(r.stats().peers.evil!.dropped.tooLarge).to.equal(1)
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

  it('a peer catching up many large entities through an outbox that holds one gets them all in one round (it fetches each ticket before asking on)', async () => {
    const hub = new LoopbackHub({ connectOnStart: false })
    const tight = { ...SMALL, maxDeltaBytes: 30_000, maxPartsBytes: 30_000 } // one ~20 KB ticket at a time
    const a = await memoryReplica({ network: hub.createNetwork('a'), syncOnConnect: false, limits: tight })
    const b = await memoryReplica({ network: hub.createNetwork('b'), syncOnConnect: false, limits: tight })
    replicas.push(a, b)
    for (let i = 0; i < 8; i++) await a.collection('p', { backend: 'yjs' }).put(`k${i}`, big(`k${i}`))
    hub.connect('a', 'b')
    await waitFor(() => b.peers().includes('a'), 'connected')
    await b.sync()
    expect(Object.keys(await dump(b, 'p'))).to.have.length(8)
    const [again] = await b.sync()
    expect(again!.collectionsDiffering).to.equal(0)
  })

  it('a full outbox refuses a new ticket while the held one is being downloaded (the range answer stops there), and gives its room to the next request once it is not', async () => {
    const hub = new LoopbackHub()
    const good = await memoryReplica({ network: hub.createNetwork('good'), limits: { ...SMALL, maxDeltaBytes: 30_000, maxPartsBytes: 30_000 } })
    replicas.push(good)
    for (let i = 0; i < 20; i++) await good.collection('p', { backend: 'yjs' }).put(`k${i}`, big(`k${i}`))
    const [first, second] = [hub.createNetwork('first'), hub.createNetwork('second')]
    nets.push(first, second)
    await startRawPeer(first, good)
    await startRawPeer(second, good)
    const range = async (peer: Network): Promise<{ e: [string, unknown][]; n?: unknown }> =>
      decodeMessage(await peer.request('good', encodeRangeRequest({ collection: 'p', backend: 'yjs', ranges: [[0, 65535]], skip: 0, parts: true })), 1 << 20)
        .body as {
        e: [string, unknown][]
        n?: unknown
      }
    expect((await range(first)).e).to.have.length(1) // first holds the outbox's one ticket
    const refused = await range(second)
    expect(refused.e).to.have.length(0) // refused at the first large entity, not after all 20
    expect(refused.n).to.equal(undefined)
    await new Promise((r) => setTimeout(r, 2100)) // first has not fetched for protectMs
    expect((await range(second)).e).to.have.length(1)
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
    // The one over maxDeltaBytes is too large, not malformed (a peer with a larger limit sends it honestly).
    expect(good.stats().peers.evil!.dropped).to.deep.include({ malformed: 3, tooLarge: 1 })
  })
})

describe('parts: Outbox and Uploads', function () {
  it('the outbox serves a ticket only to its peer, drops it once fully read, and refuses what could never fit', () => {
    const clock = new ManualClock()
    const outbox = new Outbox(clock, 10_000)
    const t1 = outbox.put('p1', new Uint8Array(6000).fill(1))!
    expect(outbox.read('p2', t1.ticket, 0, 100)).to.equal(undefined)
    expect(outbox.read('p1', t1.ticket, 0, 100)!.byteLength).to.equal(100)
    expect(outbox.read('p1', t1.ticket, 100, 10_000)!.byteLength).to.equal(5900)
    expect(outbox.size).to.equal(0)
    expect(outbox.read('p1', t1.ticket, 0, 100)).to.equal(undefined)
    expect(outbox.put('p1', new Uint8Array(20_000))).to.equal(undefined)
  })

  it('the outbox pushes out the ticket with the least recent progress, never one read within protectMs, and refuses when all are', async () => {
    const clock = new ManualClock()
    const outbox = new Outbox(clock, 10_000, { protectMs: 1000, idleMs: 60_000 })
    const a = outbox.put('a', new Uint8Array(4000).fill(1))!
    await clock.advance(10)
    const b = outbox.put('b', new Uint8Array(4000).fill(2))!
    // Both were just handed out: a third is refused rather than push out either.
    expect(outbox.put('c', new Uint8Array(4000).fill(3))).to.equal(undefined)
    await clock.advance(1500)
    outbox.read('a', a.ticket, 0, 100) // a makes progress; b does not
    const c = outbox.put('c', new Uint8Array(4000).fill(3))!
    expect(c).to.not.equal(undefined)
    expect(outbox.read('b', b.ticket, 0, 100)).to.equal(undefined) // b went
    expect(outbox.read('a', a.ticket, 100, 100)!.byteLength).to.equal(100)
    expect(outbox.size).to.be.at.most(10_000)
  })

  it('the outbox drops a ticket idle for idleMs (re-reading a part is not progress) and every ticket at its deadline', async () => {
    const clock = new ManualClock()
    const outbox = new Outbox(clock, 100_000, { idleMs: 1000, graceMs: 5000, minBytesPerSec: 1000 })
    const start = clock.now()
    const idle = outbox.put('p', new Uint8Array(3000).fill(1))!
    const steady = outbox.put('p', new Uint8Array(3000).fill(2))! // deadline: 5 s + 3,000 bytes at 1,000/s
    let offset = 0
    const step = async (): Promise<Uint8Array | undefined> => {
      await clock.advance(600)
      const part = outbox.read('p', steady.ticket, offset, 10)
      offset += 10
      return part
    }
    await step()
    expect(outbox.read('p', idle.ticket, 0, 100)).to.not.equal(undefined) // progress at 0.6 s
    await step()
    expect(outbox.read('p', idle.ticket, 0, 100)).to.not.equal(undefined) // the same part again: not progress
    await step()
    expect(outbox.read('p', idle.ticket, 100, 100)).to.equal(undefined) // 1.8 s: idle for 1.2 s, dropped
    while (clock.now() - start < 7800) expect(await step()).to.not.equal(undefined) // steady progress keeps it …
    expect(await step()).to.equal(undefined) // … until its deadline at 8 s
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
