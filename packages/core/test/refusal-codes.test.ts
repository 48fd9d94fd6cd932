// Error replies of the anti-entropy protocol carry a machine-readable code (the reply's `c`):
// the responder says why it refused, and the requester counts it per peer
// (stats().peers[p].refusals), puts it in the round's failed entries and logs it. A peer writes
// the field, so only the listed codes are taken; a reply without one (a responder older than
// codes) still works and counts as 'unknown'. Found by a new-user review: refusals had only
// free text.
import { expect } from 'chai'
import { LoopbackHub, sha256, type Replica } from '../src/index.js'
import { decodeErrorReply, decodeMessage, encodeErrorReply, encodeMessage, encodeNodesRequest, MessageType, type RefusalCode } from '../src/internal.js'
import { classicLevelStore } from '@convergent/level'
import { FAILED_MESSAGE } from '../src/replication/sync-server.js'
import { closedAfterEach, hostile, memoryReplica, recordingLogger, startRawPeer, storeWith, tempDir, waitFor } from './helpers.js'

/** A root digest that differs from everything (so the requester pulls the collection). */
const SOME_ROOT = sha256('some root')

describe('refusal codes of the sync protocol', function () {
  this.timeout(30_000)
  const { replicas, nets } = closedAfterEach()

  describe('the Error reply on the wire', function () {
    it('takes a listed code; a missing one (an older responder) or any other value is unknown', function () {
      expect(decodeErrorReply({ m: 'no', c: 'forbidden' })).to.deep.equal({ message: 'no', code: 'forbidden' })
      expect(decodeErrorReply({ m: 'no', u: 9 })).to.deep.equal({ message: 'no', unsupportedType: 9, code: 'unknown' })
      for (const c of [
        'ERR_FORBIDDEN',
        'Forbidden',
        'constructor',
        '__proto__',
        'toString',
        '',
        'x'.repeat(100_000),
        7,
        null,
        ['forbidden'],
        { forbidden: 1 },
      ]) {
        expect(decodeErrorReply({ m: 'no', c }).code, JSON.stringify(c).slice(0, 40)).to.equal('unknown')
      }
    })

    it('keeps the fields an older requester reads (m, u) as they were, the code beside them', function () {
      const withCode = encodeErrorReply({ message: 'not served', unsupportedType: 42, code: 'unsupportedType' })
      expect(decodeMessage(withCode, 1 << 20).body).to.deep.equal({ m: 'not served', u: 42, c: 'unsupportedType' })
      expect(decodeMessage(encodeErrorReply({ message: 'busy' }), 1 << 20).body, 'no code given: the old form').to.deep.equal({ m: 'busy' })
    })
  })

  describe('the responder', function () {
    /** What a replica answers a raw peer's request with: the Error reply's fields. */
    async function replyOf(server: Replica, peer: ReturnType<LoopbackHub['createNetwork']>, request: Uint8Array): Promise<unknown> {
      const msg = decodeMessage(await peer.request(server.peerId, request), 1 << 24)
      expect(msg.type).to.equal(MessageType.Error)
      return msg.body
    }

    it('codes a request it cannot read, one too large and one of a type it does not serve', async function () {
      const hub = new LoopbackHub()
      const server = await memoryReplica({ network: hub.createNetwork('server'), limits: { maxMessageBytes: 4096 } })
      replicas.push(server)
      const peer = hub.createNetwork('peer')
      nets.push(peer)
      await startRawPeer(peer, server)
      expect(await replyOf(server, peer, new Uint8Array([0xff, 0, 1]))).to.include({ c: 'malformed' })
      expect(await replyOf(server, peer, new Uint8Array(8192))).to.include({ c: 'tooLarge' })
      const unserved = MessageType.RootsResponse // a response, never a request
      expect(await replyOf(server, peer, encodeMessage(unserved, { r: [] }))).to.include({ c: 'unsupportedType', u: unserved })
    })

    it("codes a request it failed to answer (its store failed) as 'failed'", async function () {
      const { dir, cleanup } = await tempDir()
      try {
        const first = await memoryReplica({ store: classicLevelStore(dir) })
        await first.collection('p', { backend: 'yjs' }).put('k', { v: 1 })
        await first.close()
        const inner = classicLevelStore(dir)
        const failing = storeWith(inner, {
          leaves() {
            throw new Error('disk hiccup')
          },
        })
        const hub = new LoopbackHub()
        const server = await memoryReplica({ network: hub.createNetwork('server'), store: failing })
        replicas.push(server)
        const peer = hub.createNetwork('peer')
        nets.push(peer)
        await startRawPeer(peer, server)
        // Its digest tree is read from the store on the first request that needs it.
        const reply = await replyOf(server, peer, encodeNodesRequest({ collection: 'p', level: 0, nodes: [0], sparse: false }))
        expect(reply).to.include({ c: 'failed' })
        // What failed stays here (a store's error can name this machine's files): the peer is told only that it failed.
        expect((reply as { m?: unknown }).m).to.equal(FAILED_MESSAGE)
      } finally {
        await cleanup()
      }
    })
  })

  describe('the requester', function () {
    /** A replica syncing with a peer that lists collection 'p' and refuses every other request with `refusal` as the Error body. */
    async function syncWithRefuser(refusal: Record<string, unknown>) {
      const hub = new LoopbackHub()
      nets.push(
        await hostile(hub, 'evil', (type) =>
          type === MessageType.RootsRequest
            ? encodeMessage(MessageType.RootsResponse, { r: [['p', 'yjs', SOME_ROOT]] })
            : encodeMessage(MessageType.Error, refusal),
        ),
      )
      const logger = recordingLogger()
      const r = await memoryReplica({ network: hub.createNetwork('victim'), syncOnConnect: false, logger })
      replicas.push(r)
      await waitFor(() => r.peers().includes('evil'), 'connected')
      const [round] = await r.sync()
      return { round: round!, refusals: r.stats().peers.evil!.refusals, logged: logger.lines.filter((l) => l.message.includes("anti-entropy of 'p'")) }
    }

    const cases: [Record<string, unknown>, RefusalCode][] = [
      [{ m: 'no', c: 'forbidden' }, 'forbidden'],
      [{ m: 'no' }, 'unknown'], // a responder older than codes
      [{ m: 'no', c: 'ERR_SOMETHING_NEW' }, 'unknown'],
    ]
    for (const [body, code] of cases) {
      it(`counts, reports and logs a refusal ${JSON.stringify(body)} as '${code}', and the round goes on`, async function () {
        const { round, refusals, logged } = await syncWithRefuser(body)
        expect(round.failed).to.have.length(1)
        expect(round.failed[0]).to.include({ collection: 'p', refusal: code })
        expect(round.failed[0]!.error).to.equal(`peer evil refused a sync request (${code}): no`)
        expect(refusals[code]).to.be.at.least(1)
        const others = Object.entries(refusals).filter(([c, n]) => c !== code && n > 0)
        expect(others, 'no other code counted').to.deep.equal([])
        expect(logged).to.have.length(1)
        expect(logged[0]!.fields).to.include({ peer: 'evil', collection: 'p', refusal: code })
      })
    }

    it('logs the code of a refusal that ends the whole round (its roots request refused)', async function () {
      const hub = new LoopbackHub()
      nets.push(await hostile(hub, 'evil', () => encodeErrorReply({ message: 'slow down', code: 'rateLimited' })))
      const logger = recordingLogger()
      const r = await memoryReplica({ network: hub.createNetwork('victim'), syncOnConnect: false, logger })
      replicas.push(r)
      await waitFor(() => r.peers().includes('evil'), 'connected')
      const err = await r.sync().then(
        () => undefined,
        (e: Error) => e,
      )
      expect(err?.message).to.match(/refused a sync request \(rateLimited\): slow down/)
      expect(r.stats().peers.evil!.refusals.rateLimited).to.equal(1)
      const line = logger.lines.find((l) => l.message.startsWith('anti-entropy round with evil failed'))
      expect(line?.fields).to.include({ peer: 'evil', refusal: 'rateLimited' })
    })
  })
})
