// Review s34: attacks on b4c4a7c — a push taken with changes left waiting starts a round with its
// sender (receiver.ts receivePush, entities.ts holdsWaiting, replicator.ts roundSoonWith), and a
// hot entity's writes merged over the inline limit are pushed in runs that fit (pusher.ts runsOf).
import { expect } from 'chai'
import { LoopbackHub, type Network, type Replica, type RoundEvent } from '../src/index.js'
import { encodePush, topicOf } from '../src/internal.js'
import { closedAfterEach, ManualClock, memoryReplica, settle, waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustMember, trustSuite } from './trust-helpers.js'
import { storeOf } from './heads-helpers.js'
import { danglingYjs } from './forge-helpers.js'
import { ctxOf, reloadEntity } from './counter-helpers.js'
import { randomBytes } from 'node:crypto'
import type { PolicyDocument, ReplicaOptions } from '../src/index.js'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'

const POLICY: PolicyDocument = {
  roles: { admin: [ADMIN], orders: [ORDERS], support: [SUPPORT] },
  collections: {
    notes: { read: ['*'], write: ['admin', 'orders', 'support'] },
    ynotes: { read: ['*'], write: ['admin', 'orders', 'support'] },
    secret: { read: ['admin', 'orders'], write: ['admin', 'orders'] },
  },
}
/** A 16 KB inline limit: a write of filler() fits, four merged do not. */
const LIMITS = { maxDeltaBytes: 64 * 1024, maxChunkBytes: 16 * 1024 }
const filler = (): string => randomBytes(5 * 1024).toString('base64') // ~7 KB of change
const BACKEND_OF = { notes: 'automerge', ynotes: 'yjs', secret: 'automerge' } as const
type Name = keyof typeof BACKEND_OF
const col = (r: Replica, name: Name) => r.collection<{ text: string }>(name, { backend: BACKEND_OF[name] })

const rounds = (r: Replica, peer: string): number => r.stats().peers[peer]?.syncRounds ?? 0

/** The network a replica was opened with (a test publishes raw pushes through it). */
const netOf = (r: Replica): Network => (r as unknown as { options: { network: Network } }).options.network

const yjsPush = (origin: string, sequence: number, entries: [string, Uint8Array][], collection = 'c'): Uint8Array =>
  encodePush({ collection, backend: 'yjs', origin, sequence, entries, time: Date.now() })

/**
 * `net` with the gossip it gets from `from` on `topic` held back while `hold` is on; the test
 * hands it on (deliver), in the order it likes.
 */
function reordering(net: Network, from: string, topic: string): { net: Network; held: Uint8Array[]; hold(on: boolean): void; deliver(data: Uint8Array): void } {
  const held: Uint8Array[] = []
  let holding = false
  let events: Parameters<Network['start']>[0] | undefined
  const wrapped = new Proxy(net, {
    get(target, prop) {
      if (prop === 'start')
        return (e: Parameters<Network['start']>[0]) => {
          events = e
          return target.start({
            ...e,
            onMessage: (t, data, sender) => (holding && sender === from && t === topic ? void held.push(data) : e.onMessage(t, data, sender)),
          })
        }
      const v = Reflect.get(target, prop, target) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  })
  return {
    net: wrapped,
    held,
    hold: (on) => void (holding = on),
    deliver: (data) => events!.onMessage(topic, data, from),
  }
}

describe('review s34: gaps in gossip (b4c4a7c)', function () {
  this.timeout(60_000)
  const opened = closedAfterEach()

  /** Every round `r` ends, from now on. */
  function roundsOf(r: Replica): RoundEvent[] {
    const events: RoundEvent[] = []
    r.observe({ round: (e) => void events.push(e) })
    return events
  }

  // Each entity planted holds nothing but a change waiting for good: the victim never sends it
  // (deltaSince from nothing: none), so the digests differ for good wherever one is missing (here
  // at its sender) and every round descends to it — as every scheduled round did before b4c4a7c.
  it('probe: pushes that wait for good start at most one round per peer per second (3 hostile peers, 20 pushes each per second, each a new entity); each a descent sending nothing', async () => {
    const hub = new LoopbackHub()
    const clock = new ManualClock()
    const victim = await memoryReplica({ network: hub.createNetwork('victim'), clock, syncOnConnect: false })
    opened.replicas.push(victim)
    const evil: Replica[] = []
    for (const name of ['e1', 'e2', 'e3']) {
      const e = await memoryReplica({ network: hub.createNetwork(name), syncOnConnect: false })
      opened.replicas.push(e)
      evil.push(e)
    }
    await waitFor(() => victim.peers().length === 3, 'linked')
    const col = victim.collection('c', { backend: 'yjs' })
    await col.put('x', { text: 'mine' })
    await clock.advance(0) // its push goes out
    await waitFor(async () => (await Promise.all(evil.map((e) => e.collection('c').get('x')))).every((v) => v?.text === 'mine'), 'x everywhere')
    const events = roundsOf(victim)
    let n = 0
    for (let second = 0; second < 3; second++) {
      for (let i = 0; i < 20; i++)
        for (const e of evil) {
          n++
          await netOf(e).publish(topicOf('default', 'c'), yjsPush(e.peerId, n, [[`x${n}`, danglingYjs(n)]]))
        }
      await waitFor(() => events.length >= 3 * (second + 1), `the rounds of second ${second}`)
      await settle()
      await clock.advance(1_000)
    }
    await clock.advance(1_000)
    const replicator = (victim as unknown as { replicator: { rounds: Map<string, unknown> } }).replicator
    await waitFor(() => replicator.rounds.size === 0, 'no round running')
    for (const e of evil) {
      const at = events.filter((ev) => ev.peer === e.peerId).map((ev) => ev.at)
      expect(at.length, `rounds with ${e.peerId}`).to.be.within(3, 4)
      for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]!, 'a second apart at least').to.be.at.least(1_000)
    }
    for (const e of events) {
      expect(e.result?.messages, 'requests of a round').to.be.at.most(8)
      expect(e.result?.deltasSent, 'deltas sent').to.equal(0)
    }
  })

  // HOLE 1 (medium, fixed): one change that waits for good (a hostile peer's dangling change, or
  // an honest one whose dependency was lost for good) made every later honest push of the entity
  // look like a gap: each started a round with its sender — one a second per writer, for as long
  // as the entity stayed hot, and no round can bring what never existed (5 here, for 5 writes).
  // Fixed (receiver.ts): a delta taken with changes left waiting starts a round only if none
  // waited in the entity before it.
  it('HOLE 1 (fixed): a change waiting for good at the receiver does not make every honest push of the entity start a round with its writer', async () => {
    const hub = new LoopbackHub()
    const clock = new ManualClock()
    const victim = await memoryReplica({ network: hub.createNetwork('victim'), clock, syncOnConnect: false })
    const honest = await memoryReplica({ network: hub.createNetwork('honest'), syncOnConnect: false })
    const evil = await memoryReplica({ network: hub.createNetwork('evil'), syncOnConnect: false })
    opened.replicas.push(victim, honest, evil)
    await waitFor(() => victim.peers().length === 2, 'linked')
    const onV = victim.collection('c', { backend: 'yjs' })
    const onH = honest.collection('c', { backend: 'yjs' })
    await onV.put('x', { text: 'zero' })
    await clock.advance(0)
    await waitFor(async () => (await onH.get('x'))?.text === 'zero' && (await evil.collection('c').get('x')) !== undefined, 'x at honest and evil')
    // The rounds the collection's announcement started (honest, evil with victim) are done.
    await waitFor(() => rounds(honest, 'victim') === 1 && rounds(evil, 'victim') === 1, 'announcement rounds')
    // evil plants one change that waits for good.
    const events = roundsOf(victim)
    await netOf(evil).publish(topicOf('default', 'c'), yjsPush('evil', 1, [['x', danglingYjs(7)]]))
    await waitFor(() => rounds(victim, 'evil') === 1, "the dangling change's round with evil")
    // That round found the states equal (a change that waits is no part of a version): one request.
    expect(events.map((e) => [e.peer, e.result?.collectionsDiffering, e.result?.messages])).to.deep.equal([['evil', 0, 1]])
    const before = rounds(victim, 'honest')
    for (let i = 1; i <= 5; i++) {
      await clock.advance(1_000)
      await onH.put('x', { text: `honest ${i}` })
      await waitFor(async () => (await onV.get('x'))?.text === `honest ${i}`, `honest ${i} at victim`)
      await settle()
    }
    // 5 honest writes, each taken whole: none of them left anything waiting.
    expect(rounds(victim, 'honest') - before, 'rounds with the honest writer').to.equal(0)
  })

  // HOLE 2 (low-medium, fixed; reachable before through announcements, one more way in now):
  // roundSoonWith queued a round behind the one running with the peer each time (one a second at
  // most), however many were queued already. A peer that stalls its answers (up to
  // requestTimeoutMs on libp2p, 30 s a request; the round's budget, 10 min) while its pushes keep
  // waiting queued one round a second, all run one after another once it answers (10 here).
  // Fixed (replicator.ts): at most one round it asked for waits to begin per peer.
  it('HOLE 2 (fixed): a peer that stalls a round while its pushes keep waiting does not queue a round per second behind it', async () => {
    const hub = new LoopbackHub()
    const clock = new ManualClock()
    const victim = await memoryReplica({ network: hub.createNetwork('victim'), clock, syncOnConnect: false })
    // evil answers the victim's requests only once `go` is called.
    let go: () => void = () => undefined
    const answering = new Promise<void>((resolve) => (go = resolve))
    let served = 0
    const stalling = new Proxy(hub.createNetwork('evil'), {
      get(target, prop) {
        if (prop === 'start')
          return (e: Parameters<Network['start']>[0]) =>
            target.start({
              ...e,
              onRequest: async (from, data) => (from === 'victim' ? (served++, await answering, e.onRequest(from, data)) : e.onRequest(from, data)),
            })
        const v = Reflect.get(target, prop, target) as unknown
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
      },
    })
    const evil = await memoryReplica({ network: stalling, syncOnConnect: false })
    opened.replicas.push(victim, evil)
    await waitFor(() => victim.peers().includes('evil'), 'linked')
    await evil.collection('c', { backend: 'yjs' }).put('x', { text: 'zero' })
    await waitFor(async () => (await victim.collection('c').get('x')) !== undefined, 'x at victim')
    await waitFor(() => served === 1, "the announcement's round asks evil (and waits)")
    const events = roundsOf(victim)
    for (let i = 1; i <= 10; i++) {
      await netOf(evil).publish(topicOf('default', 'c'), yjsPush('evil', i, [[`x${i}`, danglingYjs(1000 + i)]])) // each a new gap
      await settle()
      await clock.advance(1_000)
    }
    go()
    const replicator = (victim as unknown as { replicator: { rounds: Map<string, unknown> } }).replicator
    await waitFor(() => !replicator.rounds.has('evil'), 'every queued round done')
    // The stalled round, and at most one queued behind it.
    expect(events.length, 'rounds run once evil answered').to.be.at.most(2)
  })

  // HOLE 3 (medium, fixed): roundSoonWith dropped a round asked for within a second of the last
  // one it started with the peer (announcements and waiting pushes alike), and nothing asks
  // again — the push waits here already: it waited for the next scheduled round (30 s by
  // default; never here), the delay b4c4a7c removes, back for any gap found within a second of
  // a round (a hot entity's second lost push; a run overtaken by the next, probes below; the
  // run a new actor split, HOLE 4). Fixed (replicator.ts): put off to the end of that second.
  it('HOLE 3 (fixed): a push that waits within a second of a round that gossip started with its sender still gets its round', async () => {
    const hub = new LoopbackHub()
    const clock = new ManualClock()
    const lossy = reordering(hub.createNetwork('b'), 'a', topicOf('default', 'notes'))
    const a = await memoryReplica({ network: hub.createNetwork('a'), syncOnConnect: false })
    const b = await memoryReplica({ network: lossy.net, clock, syncOnConnect: false })
    opened.replicas.push(a, b)
    await waitFor(() => a.peers().includes('b') && b.peers().includes('a'), 'linked')
    const onA = a.collection('notes', { backend: 'yjs' })
    const onB = b.collection('notes', { backend: 'yjs' })
    await onA.put('n1', { text: 'zero' })
    await waitFor(async () => (await onB.get('n1'))?.text === 'zero', 'zero at b')
    await waitFor(() => rounds(b, 'a') === 1, "the announcement's round") // at b's clock now
    lossy.hold(true)
    await onA.put('n1', { text: 'one' }) // lost to b
    await waitFor(() => lossy.held.length === 1, "'one' lost")
    lossy.hold(false)
    await onA.put('n1', { text: 'two' }) // waits at b for 'one', within the second of the last round
    await waitFor(() => (b.stats().peers.a?.deltasApplied ?? 0) >= 2, "'two' taken, waiting")
    await settle()
    await clock.advance(1_000)
    await waitFor(async () => (await onB.get('n1'))?.text === 'two', 'two at b')
    // A round is counted once it ended (after its last step): 'two' may show before.
    await waitFor(() => rounds(b, 'a') >= 2, 'that round ended')
    expect(rounds(b, 'a')).to.equal(2)
  })

  // The spans of writes pushed in runs are held by the last run (the newest write) and released
  // once it is published: none is held for good. Every run carries a write's traceparent (the
  // runs before the last, the entity's first traced write's): no apply span of one is a root.
  it('probe: every write span of a hot entity pushed in runs ends, published, and every run applied on b is a child of a write on a', async () => {
    const exporter = new InMemorySpanExporter()
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
    const atB = new InMemorySpanExporter()
    const providerB = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(atB)] })
    const hub = new LoopbackHub()
    const a = await memoryReplica({ network: hub.createNetwork('a'), syncOnConnect: false, limits: LIMITS, tracerProvider: provider })
    const b = await memoryReplica({ network: hub.createNetwork('b'), syncOnConnect: false, limits: LIMITS, tracerProvider: providerB })
    opened.replicas.push(a, b)
    await waitFor(() => a.peers().includes('b'), 'linked')
    await a.collection('p', { backend: 'yjs' }).put('n1', { text: 'zero' })
    await waitFor(async () => (await b.collection('p').get('n1')) !== undefined, 'n1 at b')
    await waitFor(() => rounds(b, 'a') === 1, 'announcement round')
    exporter.reset()
    atB.reset()
    const pushed = a.stats().pushed.messages
    await Promise.all([1, 2, 3, 4].map(() => a.collection('p').put('n1', { text: filler() })))
    const last = (await a.collection('p').get('n1'))!.text
    await waitFor(async () => (await b.collection('p').get('n1'))?.text === last, 'the last write at b')
    const runs = a.stats().pushed.messages - pushed
    expect(runs, 'runs').to.be.at.least(2)
    await waitFor(() => exporter.getFinishedSpans().filter((x) => x.name === 'convergent.write').length === 4, 'every write span ended')
    const writes = exporter.getFinishedSpans().filter((x) => x.name === 'convergent.write')
    for (const span of writes) expect(span.events.map((e) => e.name)).to.include('published')
    await waitFor(() => atB.getFinishedSpans().filter((x) => x.name === 'convergent.apply').length >= runs, 'an apply span per run at b')
    const traces = new Set(writes.map((w) => w.spanContext().traceId))
    const spanIds = new Set(writes.map((w) => w.spanContext().spanId))
    for (const apply of atB.getFinishedSpans().filter((x) => x.name === 'convergent.apply')) {
      expect(traces.has(apply.spanContext().traceId), "in a write's trace").to.equal(true)
      expect(spanIds.has(apply.parentSpanContext?.spanId ?? ''), 'a child of a write').to.equal(true)
    }
  })
})

// ---- runs of a hot entity in a cluster (signed pushes, signed heads) ----------------------------

/** Meta keys of a replica's markers of unsigned heads (unsignedKey). */
async function unsignedMarkers(r: Replica): Promise<string[]> {
  const left: string[] = []
  for await (const [key] of storeOf(r).metas!('unsigned/')) left.push(key)
  return left
}

/** What a member's stats say of what it took from ADMIN: 'later' answers count as duplicates. */
const fromAdmin = (r: Replica) => {
  const p = r.stats().peers[ADMIN]
  return { rounds: p?.syncRounds ?? 0, duplicate: p?.deltasDuplicate ?? 0, badSignature: p?.dropped.badSignature ?? 0, forbidden: p?.dropped.forbidden ?? 0 }
}

describe('review s34: runs of a hot entity in a cluster (pusher.ts runsOf)', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  /** ADMIN, ORDERS, SUPPORT under POLICY, with no rounds but those gossip starts; `name`/n1 written by ADMIN and held by the others. */
  async function cluster(name: Name, options: (id: string) => Partial<ReplicaOptions> = () => ({}), wrap?: (id: string, net: Network) => Network) {
    const hub = new LoopbackHub()
    const r: Record<string, Replica> = {}
    for (const id of [ADMIN, ORDERS, SUPPORT]) {
      const opts = { syncOnConnect: false, limits: LIMITS, ...options(id) }
      if (wrap === undefined) r[id] = await trustMember(keys, replicas, hub, id, opts)
      else {
        r[id] = await memoryReplica({ network: wrap(id, hub.createNetwork(id)), trust: keys.trust(id, [ADMIN]), ...opts })
        replicas.push(r[id])
      }
    }
    await r[ADMIN]!.policy.set(POLICY)
    await waitFor(() => [ORDERS, SUPPORT].every((id) => r[id]!.policy.get() !== undefined), 'adopted')
    await col(r[ADMIN]!, name).put('n1', { text: 'zero' })
    const readers = name === 'secret' ? [ORDERS] : [ORDERS, SUPPORT]
    if (name === 'secret') await r[ORDERS]!.sync()
    await waitFor(async () => (await Promise.all(readers.map((id) => col(r[id]!, name).get('n1')))).every((v) => v?.text === 'zero'), 'zero at the readers')
    // The rounds the collection's announcement started are done.
    if (name !== 'secret') await waitFor(() => readers.every((id) => fromAdmin(r[id]!).rounds === 1), 'announcement rounds')
    await settle()
    return { hub, r, readers }
  }

  for (const name of ['notes', 'ynotes'] as const) {
    it(`probe: ${BACKEND_OF[name]}: four writes of one entity in a tick go out in runs every member takes as they come (no 'later', no refused signature, no round), and leave no marker`, async () => {
      const { r, readers } = await cluster(name)
      const before = Object.fromEntries(readers.map((id) => [id, fromAdmin(r[id]!)]))
      const pushed = r[ADMIN]!.stats().pushed.messages
      const texts = [filler(), filler(), filler(), filler()]
      await Promise.all(texts.map((text) => col(r[ADMIN]!, name).put('n1', { text })))
      const last = (await col(r[ADMIN]!, name).get('n1'))!.text
      await waitFor(
        async () => (await Promise.all(readers.map((id) => col(r[id]!, name).get('n1')))).every((v) => v?.text === last),
        'the last write everywhere',
      )
      await settle()
      expect(r[ADMIN]!.stats().pushed.messages - pushed, 'pushed in runs').to.be.at.least(2)
      for (const id of readers) expect(fromAdmin(r[id]!), id).to.deep.equal(before[id])
      expect(r[ADMIN]!.stats().entitySize.notSent).to.equal(0)
      await waitFor(async () => (await unsignedMarkers(r[ADMIN]!)).length === 0, 'no marker of an unsigned head left')
      // What a round a waiting push starts costs once the states are equal, in a cluster: two
      // requests (the policy offer, the roots), nothing sent.
      for (const round of await r[SUPPORT]!.sync()) expect([round.collectionsDiffering, round.messages, round.deltasSent]).to.deep.equal([0, 2, 0])
    })
  }

  it("probe: a collection not every member may read (publish false): nothing gossiped, one merged run's heads signed, no marker left; a reader's round brings it", async () => {
    const { r } = await cluster('secret')
    const pushed = r[ADMIN]!.stats().pushed.messages
    await Promise.all([1, 2, 3, 4].map(() => col(r[ADMIN]!, 'secret').put('n1', { text: filler() })))
    const last = (await col(r[ADMIN]!, 'secret').get('n1'))!.text
    await waitFor(async () => (await unsignedMarkers(r[ADMIN]!)).length === 0, 'no marker of an unsigned head left')
    expect(r[ADMIN]!.stats().pushed.messages, 'nothing gossiped').to.equal(pushed)
    await r[ORDERS]!.sync()
    expect((await col(r[ORDERS]!, 'secret').get('n1'))?.text).to.equal(last)
    expect(fromAdmin(r[ORDERS]!).badSignature + fromAdmin(r[ORDERS]!).forbidden).to.equal(0)
  })

  // HOLE 4 (low; the merged case older than b4c4a7c): entities reloaded between writes of one
  // batching window. In a cluster an Automerge entity's actor is the process's, drawn anew after a
  // failed tick or a dropped entity (newActor). A push carries one head per entity, its newest
  // change's actor's; the earlier actor's are signed apart and not carried (signedHeads), so every
  // receiver answered the push (or the run holding both actors) 'later', marked its proof failed,
  // and took it only from the round that started — one a second at most, or none within a second
  // of the last (HOLE 3). Fixed: runs also end where the actor changes (pusher.ts actorsOf).
  for (const size of ['big', 'small'] as const)
    it(`HOLE 4 (fixed): automerge: ${size} writes of one window spanning two actors (a new actor, a reload between writes) are taken as they come by every member: no 'later', no round`, async () => {
      const { r, readers } = await cluster('notes', (id) => (id === ADMIN ? { pushDelayMs: 600_000 } : {}))
      const admin = r[ADMIN]!
      const text = (): string => (size === 'big' ? filler() : `w ${Math.random()}`)
      const before = Object.fromEntries(readers.map((id) => [id, fromAdmin(r[id]!)]))
      const pushed = admin.stats().pushed.messages
      for (let i = 1; i <= 3; i++) await col(admin, 'notes').put('n1', { text: text() })
      ;(ctxOf(admin).entities as unknown as { opts: { newActor: () => void } }).opts.newActor()
      await reloadEntity(admin, 'notes', 'n1')
      await col(admin, 'notes').put('n1', { text: text() })
      const last = (await col(admin, 'notes').get('n1'))!.text
      ;(admin as unknown as { replicator: { pusher: { flush(): void } } }).replicator.pusher.flush()
      await waitFor(
        async () => (await Promise.all(readers.map((id) => col(r[id]!, 'notes').get('n1')))).every((v) => v?.text === last),
        'the last write everywhere',
      )
      await settle()
      expect(admin.stats().pushed.messages - pushed, 'pushes').to.equal(size === 'big' ? 3 : 2) // [w1 w2] [w3] [w4], or [w1 w2 w3] [w4]
      for (const id of readers) expect(fromAdmin(r[id]!), id).to.deep.equal(before[id])
      await waitFor(async () => (await unsignedMarkers(admin)).length === 0, 'no marker of an unsigned head left')
    })

  // Gossip may reorder (gossipsub over several paths, the simulator's links with `reorder`; the
  // loopback hub keeps order): the second run of an entity may arrive before the first. It waits
  // — Automerge: 'later' (a second waiting change of the actor), not stored; Yjs: taken waiting —
  // and the round it starts (put off to the end of the second after the announcement's: HOLE 3),
  // or the first run arriving after, brings the rest.
  for (const name of ['notes', 'ynotes'] as const) {
    it(`probe: ${BACKEND_OF[name]}: the runs of a hot entity delivered last first: nothing lost, at most one round`, async () => {
      const topic = topicOf('default', name)
      let support: ReturnType<typeof reordering> | undefined
      const { r } = await cluster(
        name,
        () => ({}),
        (id, net) => (id === SUPPORT ? (support = reordering(net, ADMIN, topic)).net : net),
      )
      const before = fromAdmin(r[SUPPORT]!)
      support!.hold(true)
      await Promise.all([1, 2, 3, 4].map(() => col(r[ADMIN]!, name).put('n1', { text: filler() })))
      const last = (await col(r[ADMIN]!, name).get('n1'))!.text
      await waitFor(async () => (await col(r[ORDERS]!, name).get('n1'))?.text === last, 'the last write at ORDERS')
      await waitFor(() => support!.held.length >= 2, 'the runs held back at SUPPORT')
      support!.hold(false)
      const taken = (): number => (r[SUPPORT]!.stats().peers[ADMIN]?.deltasApplied ?? 0) + (r[SUPPORT]!.stats().peers[ADMIN]?.deltasDuplicate ?? 0)
      const runs = support!.held.splice(0)
      const was = taken()
      for (const run of runs.slice(1).reverse()) support!.deliver(run) // the last runs first …
      await waitFor(() => taken() === was + runs.length - 1, 'the last runs judged at SUPPORT')
      support!.deliver(runs[0]!) // … then the first
      await waitFor(async () => (await col(r[SUPPORT]!, name).get('n1'))?.text === last, 'the last write at SUPPORT')
      await settle()
      const now = fromAdmin(r[SUPPORT]!)
      expect(now.badSignature + now.forbidden, 'refused').to.equal(0)
      expect(now.rounds - before.rounds, 'rounds').to.be.at.most(1)
    })
  }
})
