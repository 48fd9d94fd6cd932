// Review 15 attack tests: holes in the write acknowledgements (acks.ts, holds.ts) and the
// replication lag carried in pushes (messages/push.ts `t`, lag-window.ts). Each test names the
// hole it shows; they fail until it is fixed.
import { expect } from 'chai'
import { LoopbackHub } from '../src/index.js'
import * as encoding from 'lib0/encoding'
import {
  encodeErrorReply,
  decodeMessage,
  encodeFetchRequest,
  encodeHoldsRequest,
  encodeHoldsResponse,
  encodeMessage,
  MAX_HOLDS_VERSION_BYTES,
  MessageType,
  topicOf,
} from '../src/internal.js'
import { closedAfterEach, hostile, memoryReplica, recordingLogger, startRawPeer, victimAndRawPeer, waitFor, yjsDeltaOf } from './helpers.js'

describe('review 15: attacks on acks and lag', function () {
  this.timeout(60_000)
  const { replicas, nets } = closedAfterEach()

  // HOLE (ack amplification): a peer that answers every holds query "not held, my version is
  // empty" makes the writer send it the entity's whole state again (up to maxChunkBytes,
  // 512 KiB) at every poll — every 500 ms for up to ack.timeoutMs (10 minutes max), per write
  // waiting. acks.ts sendMissing runs on every "no" from the second on (lacks >= 2), never once.
  // A reply of a few bytes buys ~100 KiB here; 20 writes waiting 10 min → ~24,000 sends.
  // Fix: send the missing delta at most once per peer per wait (then leave it to anti-entropy),
  // and only when the peer's version moved since the last send.
  it('ack: a peer that always says "not held" is sent the entity once, not at every poll', async () => {
    const hub = new LoopbackHub()
    const writer = await memoryReplica({ network: hub.createNetwork('writer') })
    replicas.push(writer)
    let deltasSent = 0
    const liar = await hostile(hub, 'liar', (type) => {
      if (type === MessageType.HoldsRequest) return encodeHoldsResponse({ held: false, version: new Uint8Array(0) })
      if (type === MessageType.DeltasRequest) deltasSent++
      return encodeMessage(MessageType.Ack, {})
    })
    nets.push(liar)
    await waitFor(() => writer.peers().includes('liar'), 'connected')
    const big = 'x'.repeat(100_000)
    const started = Date.now()
    const err = await writer
      .collection('orders', { backend: 'yjs' })
      .put('o-1', { big }, { ack: { peers: 1, timeoutMs: 4_000 } })
      .then(
        () => undefined,
        (e: Error) => e,
      )
    expect(err?.message).to.match(/0 of 1 peer/)
    const bytesSent = writer.stats().peers.liar?.bytesOut ?? 0
    const ms = Date.now() - started
    // 4 s of polling (20, 40, …, 500 ms): ~10 "no"s, ~9 whole-state sends of 100 KB.
    expect(deltasSent, `${deltasSent} DeltasRequests (${bytesSent} bytes) to one lying peer in ${ms} ms for one write`).to.be.at.most(1)
  })

  // The flip side of "once per wait": a send the peer did not take (refused, unreachable) does
  // not count as sent, or one lost send would leave the write unconfirmed until its timeout.
  it('ack: a peer that refused the missing delta is sent it again at a later poll, then confirms', async () => {
    const hub = new LoopbackHub()
    const writer = await memoryReplica({ network: hub.createNetwork('writer') })
    replicas.push(writer)
    let deltasSent = 0
    const flaky = await hostile(hub, 'flaky', (type) => {
      if (type === MessageType.HoldsRequest) return encodeHoldsResponse(deltasSent >= 2 ? { held: true } : { held: false, version: new Uint8Array(0) })
      if (type === MessageType.DeltasRequest) {
        deltasSent++
        if (deltasSent === 1) return encodeErrorReply({ message: 'busy' })
      }
      return encodeMessage(MessageType.Ack, {})
    })
    nets.push(flaky)
    await waitFor(() => writer.peers().includes('flaky'), 'connected')
    await writer.collection('orders', { backend: 'yjs' }).put('o-1', { n: 1 }, { ack: { peers: 1, timeoutMs: 10_000 } })
    expect(deltasSent, 'sent again after the refusal, and no more').to.equal(2)
  })

  // HOLE (holds queries pollute the entity cache): serveHoldsRequest acquires the entity with
  // entities.acquire (via acquireDurable) even when it is not in memory, so a query for an id
  // nobody stored installs a fresh empty document in the LRU cache (Automerge: a WASM doc).
  // Any reader may send 20,000 such queries a second (the entry rate bound): it sweeps the hot
  // entities out of the cache. wholeStateOf in durable.ts avoids exactly this for anti-entropy
  // ("a late joiner would otherwise sweep the whole collection through the LRU").
  // Fix: when the entity is not loaded, answer from entities.readStored (no document for a
  // missing record: NOT_HELD; else a transient load freed right after) — never install it.
  it('holds: queries for ids nobody stored do not evict the hot entities from the cache', async () => {
    const hub = new LoopbackHub()
    const server = await memoryReplica({ network: hub.createNetwork('server'), cacheSize: 50 })
    replicas.push(server)
    const orders = server.collection('orders', { backend: 'automerge' })
    for (let i = 0; i < 40; i++) await orders.put(`hot-${i}`, { i })
    const raw = hub.createNetwork('raw')
    nets.push(raw)
    await startRawPeer(raw, server)
    const before = server.stats().cache.evictions
    for (let i = 0; i < 300; i++) {
      const reply = decodeMessage(
        await raw.request(server.peerId, encodeHoldsRequest({ collection: 'orders', backend: 'automerge', id: `nobody-${i}`, version: new Uint8Array(0) })),
        1 << 22,
      )
      expect(reply.type).to.equal(MessageType.HoldsResponse)
    }
    const evicted = server.stats().cache.evictions - before
    expect(evicted, `300 holds queries for unknown ids evicted ${evicted} entities; cache now ${JSON.stringify([...server.cachedByCollection()])}`).to.equal(0)
  })

  // HOLE (lag poisoning): push.ts accepts any safe integer ≥ 0 as `t`, so a push with t = 0
  // (a peer with an unset RTC, or a hostile member) yields a lag of ~56 years: observers get
  // lagMs ≈ 1.8e12, status().lag.maxMs/p99Ms show it for the next 1,000 samples, and the
  // metric's _sum jumps by 1.8e9 s for good (every mean-lag panel is wrong from then on).
  // Fix: a `t` further than a bound (say 1 day) from this replica's clock is no sample —
  // drop it (count it as implausible, like the negative counter) instead of observing it.
  it('lag: a push claiming commit time 0 (1970) gives no 56-year lag sample', async () => {
    const { victim, evil } = await victimAndRawPeer({ replicas, nets })
    const lags: (number | undefined)[] = []
    victim.observe({ change: (c) => void lags.push(c.lagMs) })
    await evil.publish(
      topicOf('default', 'c'),
      encodeMessage(MessageType.Push, { c: 'c', b: 'yjs', o: 'evil', s: 1, e: [['e-1', yjsDeltaOf({ v: 1 })]], t: 0 }),
    )
    await waitFor(() => lags.length === 1, 'applied')
    const lag = victim.status().lag
    expect(lags[0] === undefined || lags[0] < 24 * 3600_000, `lagMs ${lags[0]}`).to.equal(true)
    expect(lag.maxMs === null || lag.maxMs < 24 * 3600_000, `status().lag.maxMs ${lag.maxMs}`).to.equal(true)
  })
  // HOLE (holds version bomb): MAX_HOLDS_VERSION_BYTES is 1 MiB, "small enough that one query
  // costs a responder little". A Yjs version of 1 MiB that is a delete set of ~250,000 one-item
  // ranges is decoded (Y.decodeSnapshot), re-encoded to check it, and compared range by range:
  // ~100 ms of blocked event loop per query on this machine. The byte budget lets one reader
  // send 32 MiB/s (128 MiB burst): 30+ such queries a second, i.e. several seconds of CPU per
  // second — every replica of the cluster frozen by one member for as long as it likes.
  // Fix: a far smaller bound for a holds version (an honest one is a few KiB; 64 KiB is ample)
  // and/or a per-peer budget of version bytes decoded per second; reject with a drop.
  it('holds: a 1 MiB Yjs delete-set version is refused before it is decoded (it would block the event loop)', async () => {
    const hub = new LoopbackHub()
    const server = await memoryReplica({ network: hub.createNetwork('server') })
    replicas.push(server)
    await server.collection('orders', { backend: 'yjs' }).put('o-1', { v: 1 })
    const raw = hub.createNetwork('raw')
    nets.push(raw)
    await startRawPeer(raw, server)
    const e = encoding.createEncoder()
    const n = 250_000
    encoding.writeVarUint(e, 1) // one client in the delete set
    encoding.writeVarUint(e, 5) // its id
    encoding.writeVarUint(e, n)
    for (let i = 0; i < n; i++) {
      encoding.writeVarUint(e, i * 2)
      encoding.writeVarUint(e, 1)
    }
    encoding.writeVarUint(e, 0) // an empty state vector
    const bomb = encoding.toUint8Array(e)
    // Fixed: a holds version is bounded far below that (an honest one is a few KiB), so the
    // bomb is refused before anything decodes it, and counted against the peer.
    expect(MAX_HOLDS_VERSION_BYTES).to.be.at.most(64 * 1024)
    expect(bomb.byteLength).to.be.greaterThan(MAX_HOLDS_VERSION_BYTES)
    const reply = decodeMessage(
      await raw.request(server.peerId, encodeHoldsRequest({ collection: 'orders', backend: 'yjs', id: 'o-1', version: bomb })),
      1 << 22,
    )
    expect(reply.type).to.equal(MessageType.Error)
    expect(server.stats().peers.raw!.dropped.malformed).to.equal(1)
  })

  // HOLE (unbounded warn lines from one peer): the DropLog bounds drop lines to 20 per peer per
  // 10 s, but SyncServer.handle logs every other refused request with its own
  // logger.warn("sync request from … failed"), unbounded. A FetchRequest naming a ticket that
  // does not exist costs a peer 10 bytes and the victim one warn line (ERR_NETWORK "unknown or
  // expired ticket"): 5,000 lines/s at the request rate bound, the 49,280-lines-in-5-s flood the
  // DropLog was written against. Fix: route these through ctx.dropLog (per-peer bound), or
  // treat an unknown ticket as a (counted) drop.
  it('logs: a peer sending requests that fail does not get one warn line per request', async () => {
    const hub = new LoopbackHub()
    const logger = recordingLogger()
    const server = await memoryReplica({ network: hub.createNetwork('server'), logger })
    replicas.push(server)
    const raw = hub.createNetwork('raw')
    nets.push(raw)
    await startRawPeer(raw, server)
    const before = logger.lines.length
    for (let i = 0; i < 500; i++) await raw.request(server.peerId, encodeFetchRequest({ ticket: 1_000_000 + i, offset: 0 }))
    const lines = logger.lines.length - before
    expect(lines, `500 bogus fetches → ${lines} log lines, e.g. ${JSON.stringify(logger.lines.at(-1))}`).to.be.at.most(25)
  })
  // HOLE (ack queues an anti-entropy round per poll): when the delta a "not held" peer lacks is
  // over maxChunkBytes, sendMissing calls syncWith(peer) → replicator.roundWith(peer) at every
  // poll. roundWith does not coalesce: it chains one more whole round after the ones queued,
  // so each waiting write queues ~2 full rounds (roots, nodes, leaves, exchange) a second with
  // that peer for up to 10 minutes, and with a peer that answers slowly (each round may take
  // roundTimeoutMs, 10 min) the chain of queued rounds grows without bound in memory.
  // Fix: ask for a round at most once per peer per wait, and make roundWith coalesce a request
  // made while a round with that peer is queued (join the pending one instead of adding one).
  it('ack: a peer that always says "not held" to a large entity is not sent a sync round at every poll', async () => {
    const hub = new LoopbackHub()
    const writer = await memoryReplica({ network: hub.createNetwork('writer') })
    replicas.push(writer)
    let rounds = 0
    const liar = await hostile(hub, 'liar', (type) => {
      if (type === MessageType.HoldsRequest) return encodeHoldsResponse({ held: false, version: new Uint8Array(0) })
      if (type === MessageType.RootsRequest) rounds++
      return encodeMessage(MessageType.Error, { m: 'busy' })
    })
    nets.push(liar)
    await waitFor(() => writer.peers().includes('liar'), 'connected')
    await new Promise((r) => setTimeout(r, 200)) // the round on connect, if any, is over
    const before = rounds
    const err = await writer
      .collection('orders', { backend: 'yjs' })
      .put('o-1', { big: 'x'.repeat(600_000) }, { ack: { peers: 1, timeoutMs: 4_000 } })
      .then(
        () => undefined,
        (e: Error) => e,
      )
    expect(err?.message).to.match(/0 of 1 peer/)
    const started = rounds - before
    expect(started, `${started} anti-entropy rounds started with the liar for one write`).to.be.at.most(2)
  })
})
