// Issue #11: a hostile peer, attack class by attack class, against a real victim (open() on
// classic-level, libp2p over TCP on 127.0.0.1) with an honest peer writing during every attack.
// Each attack asserts: the victim's store is unchanged by it (a dump of every collection,
// entity and feed entry, the honest writes left out), the honest write arrives within 2 s,
// event-loop delay p99 < 100 ms and RSS growth < 200 MB (bounds from the issue, not
// benchmarks), and the victim still runs. The figures table is printed at the end.
//
// Each attack's title says what it did to the code it was written against, where that broke.
//
// Everything runs in this one process, the attacker included: the figures carry its own work
// (signing, encrypting, encoding) too, which is why floods keep only a few requests in flight,
// payloads are encoded before the window opens and megabyte messages are paced. The controls
// (0a, 0b) give the floor. See P99 for how the event-loop bound is asserted on a busy machine.
import { cpus, loadavg } from 'node:os'
import { expect } from 'chai'
import { concatBytes, sha256 } from '@convergent/core'
import { encodeMessage, MessageType } from '@convergent/core/internal'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { open } from '../src/index.js'
import {
  automergeBomb,
  benign,
  dumpStore,
  feedFrom,
  FIGURES,
  figuresTable,
  HONEST_COLLECTION,
  push,
  runAttack,
  sleep,
  startCast,
  stopCast,
  topic,
  Hostile,
  type Answer,
  type AttackResult,
  type Cast,
  type StoreDump,
} from './hostile/harness.js'
import { waitFor } from './helpers.js'
import { GARBAGE_CASES } from './wire-garbage.js'

/**
 * The bounds of issue #11 — event-loop delay p99 < 100 ms (HOSTILE_P99_MS to change it), RSS
 * growth < 200 MB, the honest write within 2 s — are figures of the machine as much as of the
 * victim, so `npm test` prints them (the table) and asserts only what cannot be noise: the store
 * unchanged, the honest write arriving (within 10 s), the victim running. `npm run hostile`
 * (HOSTILE_STRICT=1, on a quiet machine) asserts the bounds too. The p99 is taken on the
 * wall-clock delay (monitorEventLoopDelay) unless the machine is oversubscribed (1-minute load
 * average above its core count, or HOSTILE_P99=busy): then a blocked loop also waits for a
 * core, and the busy delay is used instead (see Figures.busyP99Ms). Both are printed.
 */
const STRICT = process.env.HOSTILE_STRICT === '1'
const P99 = {
  boundMs: Number(process.env.HOSTILE_P99_MS ?? 100),
  wallClock: (): boolean => process.env.HOSTILE_P99 !== 'busy' && (process.env.HOSTILE_P99 === 'wall' || loadavg()[0]! <= cpus().length),
}

const MB = 1024 * 1024
/**
 * Requests the attacker keeps in flight in request floods. One connection carries ~70-100
 * requests/s here whatever the number in flight (the transport's own cost), and the attacker's
 * half of that cost lands on this same event loop, so more in flight adds only noise.
 */
const IN_FLIGHT = 4
const yjs = yjsBackend()
const am = automergeBackend()
const actor = (): Uint8Array => crypto.getRandomValues(new Uint8Array(16))
const yDelta = (value: Record<string, unknown>): Uint8Array => yjs.put(yjs.create(actor()), value as never).delta!
const amDelta = (value: Record<string, unknown>): Uint8Array => am.put(am.create(actor()), value as never).delta!
/** A Yjs delta that fails to apply (wire-garbage.ts), and bytes that are no Automerge chunk at all. */
const YJS_GARBAGE = new Uint8Array([0, 9, 9, 9, 200, 1, 7])
const AM_GARBAGE = new Uint8Array([1, 2])
/** A root digest that is not zero: the victim believes there is something to sync. */
const SOME_ROOT = new Uint8Array(32).fill(7)

/** An Automerge change chunk whose checksum is right and whose body is garbage. */
function amChunkWithGarbageBody(): Uint8Array {
  const body = new Uint8Array(40).fill(0x5a)
  const head = Uint8Array.of(1, body.byteLength) // type CHANGE, uLEB128 length (< 128)
  const checksum = sha256(head, body).subarray(0, 4)
  return concatBytes([Uint8Array.of(0x85, 0x6f, 0x4a, 0x83), checksum, head, body])
}

const msg = (type: number, body: unknown): Uint8Array => encodeMessage(type as never, body)

/** Runs `n` copies of `fn` side by side (requests in flight at once). */
async function parallel(n: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  await Promise.all(Array.from({ length: n }, (_, i) => fn(i)))
}

describe('Hostile peer (issue #11): real libp2p on 127.0.0.1, one process', function () {
  this.timeout(120_000)
  let cast: Cast
  let baseline: StoreDump

  before(async function () {
    cast = await startCast()
    const { victim, honest } = cast
    await victim.collection('p', { backend: 'yjs' }).put('k', { v: 1 })
    await victim.collection('docs', { backend: 'automerge' }).put('d1', { title: 'seed', n: 1 })
    const seed = victim.collection('seed', { backend: 'yjs' })
    await Promise.all(Array.from({ length: 300 }, (_, i) => seed.put(`s${i}`, { i, label: `seed ${i}` })))
    // Over the inline limit (512 KiB): served in parts, through the outbox.
    await victim.collection('big', { backend: 'yjs' }).put('huge', { s: 'x'.repeat(700_000) })
    // Opened without a backend and never written: its backend is still only a default.
    victim.collection('f-default')
    victim.collection(HONEST_COLLECTION, { backend: 'yjs' })
    honest.collection(HONEST_COLLECTION, { backend: 'yjs' })
    // Gossip reaches the victim once both sides know each other's subscriptions.
    await waitFor(
      async () => {
        await honest.collection(HONEST_COLLECTION).put('warm', { at: Date.now() })
        await sleep(200)
        return (await victim.collection(HONEST_COLLECTION).get('warm')) !== undefined
      },
      'the honest peer reaches the victim by gossip',
      15_000,
    )
    // The honest peer starts out holding what the victim holds: rounds between them during the
    // attacks are one message, not a transfer of the seed data.
    await victim.sync()
    await waitFor(async () => (await honest.collection('big').get('huge')) !== undefined, 'the honest peer holds the seed data')
  })

  after(async function () {
    await stopCast(cast)
    if (FIGURES.length > 0) console.log(`\nHostile-peer figures (victim: event-loop delay, RSS growth; honest write latency):\n${figuresTable(FIGURES)}\n`)
  })

  beforeEach(async function () {
    cast.hostile.answer = benign
    baseline = await dumpStore(cast.victim)
    dropsAtStart = { ...(cast.victim.stats().peers[cast.hostile.peerId]?.dropped as Record<string, number> | undefined) }
  })

  /** The assertions every attack ends with. */
  async function expectSurvived(r: AttackResult, options: { storeUnchanged?: boolean } = {}): Promise<void> {
    if (options.storeUnchanged !== false) expect(await dumpStore(cast.victim), 'the victim store').to.deep.equal(baseline)
    expect(r.honestMs, 'the honest write reached the victim').to.not.equal(null)
    expect(r.honestMs!, 'honest write latency (ms)').to.be.below(STRICT ? 2_000 : 10_000)
    expect(cast.victim.closed).to.equal(false)
    if (!STRICT) return
    if (P99.wallClock()) expect(r.p99Ms, 'event-loop delay p99 (ms)').to.be.below(P99.boundMs)
    else
      expect(
        r.busyP99Ms,
        `busy event-loop delay p99 (ms; load ${loadavg()[0]!.toFixed(1)} on ${cpus().length} cores: wall-clock p99 ${r.p99Ms.toFixed(0)} ms not asserted)`,
      ).to.be.below(P99.boundMs)
    expect(r.rssPeakMb, 'RSS growth (MB)').to.be.below(200)
  }

  /**
   * An answer that lists the victim's own roots (so its round with us skips every collection it
   * holds, instead of pushing them to us) plus `extra` ones, and answers the rest with `rest`.
   */
  async function claimingRoots(extra: [string, string, Uint8Array][], rest: Answer): Promise<Answer> {
    const mirrored = (await cast.hostile.victimRoots(cast.victim.peerId)).filter(([n]) => !extra.some(([e]) => e === n))
    const roots = msg(MessageType.RootsResponse, { r: [...mirrored, ...extra].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)), f: 1 })
    return (type, body, raw) =>
      type === MessageType.RootsRequest ? roots : type === MessageType.NodesRequest ? msg(MessageType.Error, { m: 'no' }) : rest(type, body, raw)
  }

  /**
   * Claims a collection 'spin' and answers every range request for it with one bad delta and a
   * continuation that skips one entity more (progress, by the letter), while `endless()`.
   */
  function endlessRanges(endless = (): boolean => true): Promise<Answer> {
    return claimingRoots([['spin', 'yjs', SOME_ROOT]], (type, body) => {
      if (type !== MessageType.RangeRequest || !endless()) return msg(MessageType.Error, { m: 'no' })
      const s = (body as { s: number }).s
      return msg(MessageType.RangeResponse, { e: [[`x${s}`, YJS_GARBAGE]], n: { r: [[0, 65535]], s: s + 1 } })
    })
  }

  /** victim.sync() with a signal that fires after `ms`; pushes how long it took to settle. */
  async function syncAbortedAfter(ms: number, settled: number[]): Promise<void> {
    const t = performance.now()
    await cast.victim.sync({ signal: AbortSignal.timeout(ms) }).catch(() => undefined)
    settled.push(performance.now() - t)
  }

  /** Another hostile node with an identity of its own (a sybil), stopped with the cast. */
  async function addSybil(): Promise<Hostile> {
    const sybil = await Hostile.start(cast.victim)
    cast.cleanups.unshift(() => sybil.stop())
    return sybil
  }

  /** What the victim dropped from the hostile peer for `reason` since this test began. */
  const dropped = (reason: string): number => droppedNow(reason) - (dropsAtStart[reason] ?? 0)
  const droppedNow = (reason: string): number => (cast.victim.stats().peers[cast.hostile.peerId]?.dropped as Record<string, number> | undefined)?.[reason] ?? 0
  let dropsAtStart: Record<string, number> = {}

  // --- controls: what the harness itself costs, no attack ---

  it('0a. control: no attack (the floor of every figure on this machine)', async function () {
    const r = await runAttack(cast, { name: '0a control, idle', pass: () => sleep(100) })
    await expectSurvived(r)
  })

  it('0b. control: cheap valid requests, 4 in flight (the cost of the traffic alone)', async function () {
    const { victim, hostile } = cast
    const request = msg(MessageType.NodesRequest, { c: 'nothing', l: 0, n: [0] })
    let sent = 0
    const r = await runAttack(cast, {
      name: '0b control, requests',
      pass: () => parallel(IN_FLIGHT, async () => void (sent++, await hostile.ask(victim.peerId, request))),
      note: () => `${sent} requests`,
    })
    await expectSurvived(r)
  })

  // --- a. decompression bomb ---

  it('a. Automerge decompression bomb (61 KB chunk → 60 MiB value), on gossip and sync, to an existing entity, a new entity, a new collection: refused by its decoded size, inflated off the event loop (was: ~1-1.5 s blocked and 150-400 MB per bomb)', async function () {
    const { victim, hostile } = cast
    const bomb = automergeBomb()
    expect(bomb.byteLength).to.equal(61_318)
    const r = await runAttack(cast, {
      name: 'a bomb',
      maxPasses: 2,
      pass: async () => {
        await hostile.publish(topic('docs'), push('docs', 'automerge', [['d1', bomb]]))
        await hostile.ask(victim.peerId, msg(MessageType.DeltasRequest, { c: 'docs', b: 'automerge', e: [['bomb-new', bomb]] }))
        await hostile.ask(victim.peerId, msg(MessageType.DeltasRequest, { c: 'bombs', b: 'automerge', e: [['b', bomb]] }))
      },
      note: () => `3 bombs a pass; dropped tooLarge ${dropped('tooLarge')}, invalidDelta ${dropped('invalidDelta')}`,
    })
    await expectSurvived(r)
  })

  // --- b. names that must never become collections ---

  it('b. a NUL (and an over-long name) in a roots response and in deltas: no collection, every round with the honest peer still clean', async function () {
    const { victim, hostile, honest } = cast
    const names = ['bad\u0000name', 'L'.repeat(300)]
    hostile.answer = await claimingRoots(
      names.map((n) => [n, 'yjs', SOME_ROOT]),
      (type) =>
        type === MessageType.RangeRequest ? msg(MessageType.RangeResponse, { e: [['x', yDelta({ evil: 1 })]] }) : benign(type, undefined, new Uint8Array()),
    )
    const failures: string[] = []
    const r = await runAttack(cast, {
      name: 'b NUL name',
      pass: async () => {
        for (const round of await victim.sync({ signal: AbortSignal.timeout(5_000) })) {
          for (const f of round.failed) failures.push(`${round.peer === honest.peerId ? 'honest' : 'hostile'}: ${f.collection}: ${f.error}`)
        }
        for (const n of names) await hostile.ask(victim.peerId, msg(MessageType.DeltasRequest, { c: n, b: 'yjs', e: [['x', yDelta({ evil: 2 })]] }))
      },
      note: () => `invalidId drops ${dropped('invalidId')}`,
    })
    expect(failures.filter((f) => f.startsWith('honest'))).to.deep.equal([])
    expect(victim.collections().some((n) => n.includes('\u0000') || n.length > 256)).to.equal(false)
    expect(dropped('invalidId')).to.be.greaterThan(0)
    await expectSurvived(r)
  })

  // --- c. unbounded collections ---

  it('c1. one request per new collection name, with deltas that do not apply (Yjs and Automerge): no collection is created', async function () {
    const { victim, hostile } = cast
    let n = 0
    const r = await runAttack(cast, {
      name: 'c1 new names, bad deltas',
      pass: () =>
        parallel(IN_FLIGHT, async () => {
          const i = n++
          const [b, d] = i % 2 === 0 ? ['yjs', YJS_GARBAGE] : ['automerge', AM_GARBAGE]
          await hostile.ask(victim.peerId, msg(MessageType.DeltasRequest, { c: `c1-${i}`, b, e: [['x', d]] }))
        }),
      note: () => `${n} names sent; invalidDelta drops ${dropped('invalidDelta')}`,
    })
    expect(victim.collections().filter((c) => c.startsWith('c1-'))).to.deep.equal([])
    await expectSurvived(r)
  })

  it('c3. a roots listing of 400,000 collection names in 5 pages of ~4 MB: refused at the first page header; only names that could become collections are kept (was: ~0.3-0.5 s per page, hundreds of MB)', async function () {
    const { victim, hostile } = cast
    const PAGES = 5
    const PER_PAGE = 80_000
    const name = (p: number, j: number): string => `r${String(p).padStart(2, '0')}${String(j).padStart(6, '0')}`
    // Encoded before the measurement: the attacker's own work is not the victim's.
    const pages = Array.from({ length: PAGES }, (_, p) => {
      const r = Array.from({ length: PER_PAGE }, (_, j) => [name(p, j), 'yjs', SOME_ROOT])
      return msg(MessageType.RootsResponse, { r, f: 1, ...(p + 1 < PAGES ? { n: name(p, PER_PAGE - 1) } : {}) })
    })
    expect(Math.max(...pages.map((p) => p.byteLength))).to.be.below(4 * MB)
    hostile.answer = (type, body) => {
      if (type === MessageType.RootsRequest) {
        const cursor = (body as { p?: string }).p
        return pages[cursor === undefined ? 0 : Number(cursor.slice(1, 3)) + 1]!
      }
      return msg(MessageType.Error, { m: 'no' })
    }
    const r = await runAttack(cast, {
      name: 'c3 roots flood',
      maxPasses: 1,
      pass: async () => void (await victim.sync({ signal: AbortSignal.timeout(6_000) })),
      note: () => `${PAGES * PER_PAGE} names in ${PAGES} pages of ${(pages[0]!.byteLength / MB).toFixed(1)} MB`,
    })
    await expectSurvived(r)
  })

  // --- d. entries per message ---

  it('d1. one 3.8 MB request of 380,000 garbage entries, and the same on gossip: refused at the list header, before decoding (was: ~1 s of event loop per message)', async function () {
    const { victim, hostile } = cast
    const entries = (n: number): [string, Uint8Array][] => Array.from({ length: n }, (_, i) => [String(i), new Uint8Array(2)])
    const request = msg(MessageType.DeltasRequest, { c: 'p', b: 'yjs', e: entries(380_000) })
    const gossip = push('p', 'yjs', entries(340_000))
    const roots = msg(MessageType.RootsRequest, { r: Array.from({ length: 80_000 }, (_, i) => [`n${i}`, 'yjs', SOME_ROOT]) })
    const r = await runAttack(cast, {
      name: 'd1 380k entries',
      maxPasses: 2,
      pass: async () => {
        await hostile.publish(topic('p'), gossip)
        await hostile.ask(victim.peerId, request)
        await hostile.ask(victim.peerId, roots)
      },
      note: () =>
        `request ${(request.byteLength / MB).toFixed(1)} MB, gossip ${(gossip.byteLength / MB).toFixed(1)} MB, ignored roots ${(roots.byteLength / MB).toFixed(1)} MB; malformed drops ${dropped('malformed')}`,
    })
    await expectSurvived(r)
  })

  it('d2. 1,025 valid deltas in one request or one push (one over the bound): refused whole, nothing stored', async function () {
    const { victim, hostile } = cast
    const entries: [string, Uint8Array][] = Array.from({ length: 1025 }, (_, i) => [`d2-${i}`, yDelta({ i })])
    const request = msg(MessageType.DeltasRequest, { c: 'p', b: 'yjs', e: entries })
    const gossip = push('p', 'yjs', entries)
    const r = await runAttack(cast, {
      name: 'd2 1025 entries',
      pass: async () => {
        await hostile.publish(topic('p'), gossip)
        const reply = await hostile.ask(victim.peerId, request)
        expect('type' in reply && reply.type).to.equal(MessageType.Error)
      },
      note: () => `malformed drops ${dropped('malformed')}`,
    })
    await expectSurvived(r)
  })

  // --- e. rounds that never end ---

  it('e1. range answers that advance by one entity forever: sync({ signal }) settles when the signal fires, and the round stops', async function () {
    const { hostile } = cast
    hostile.answer = await endlessRanges()
    const settled: number[] = []
    const r = await runAttack(cast, {
      name: 'e1 endless ranges',
      maxPasses: 1,
      pass: () => syncAbortedAfter(1_000, settled),
      note: () => `sync settled after ${settled[0]?.toFixed(0)} ms (signal at 1,000); ${hostile.servedOf(MessageType.RangeRequest)} range requests served`,
    })
    const served = hostile.servedOf(MessageType.RangeRequest)
    await sleep(500)
    expect(hostile.servedOf(MessageType.RangeRequest), 'range requests after the abort').to.equal(served)
    expect(settled[0]).to.be.below(1_500)
    await expectSurvived(r)
  })

  it('e2. a peer that never answers: sync({ signal }) settles when the signal fires', async function () {
    const { hostile } = cast
    const hanging: (() => void)[] = []
    hostile.answer = (type) => {
      if (type === MessageType.RootsRequest) return new Promise((resolve) => hanging.push(() => resolve(msg(MessageType.Error, { m: 'late' }))))
      return benign(type, undefined, new Uint8Array())
    }
    const settled: number[] = []
    const r = await runAttack(cast, {
      name: 'e2 no answer',
      maxPasses: 1,
      pass: () => syncAbortedAfter(1_000, settled),
      note: () => `sync settled after ${settled[0]?.toFixed(0)} ms (signal at 1,000)`,
    })
    for (const h of hanging) h()
    expect(settled[0]).to.be.below(1_500)
    await expectSurvived(r)
  })

  it("e3. the endless range answers with no signal: the round runs on at the peer's pace, bounded only by the round budget (measured, then ended by the peer)", async function () {
    const { victim, hostile } = cast
    let endless = true
    hostile.answer = await endlessRanges(() => endless)
    let pace = 0
    const r = await runAttack(cast, {
      name: 'e3 endless, no signal',
      maxPasses: 1,
      pass: async () => {
        const round = victim.sync()
        const from = hostile.servedOf(MessageType.RangeRequest)
        await sleep(1_500)
        pace = (hostile.servedOf(MessageType.RangeRequest) - from) / 1.5
        endless = false // the only way this round ends before its budget (20,000 requests or 10 min)
        await round
      },
      note: () => `${pace.toFixed(0)} range requests/s: the 20,000-request budget lasts ~${(20_000 / Math.max(pace, 1)).toFixed(0)} s`,
    })
    await expectSurvived(r)
  })

  // --- f. backends ---

  it('f. deltas that do not apply, for a collection opened without a backend, under another backend: the backend stays', async function () {
    const { victim, hostile, honest } = cast
    hostile.answer = await claimingRoots([['f-default', 'automerge', SOME_ROOT]], (type) =>
      type === MessageType.RangeRequest
        ? msg(MessageType.RangeResponse, {
            e: [
              ['fx', AM_GARBAGE],
              ['fy', amChunkWithGarbageBody()],
            ],
          })
        : msg(MessageType.Error, { m: 'no' }),
    )
    const r = await runAttack(cast, {
      name: 'f backend switch',
      pass: async () => {
        await hostile.publish(topic('f-default'), push('f-default', 'automerge', [['fx', AM_GARBAGE]]))
        await hostile.ask(
          victim.peerId,
          msg(MessageType.DeltasRequest, {
            c: 'f-default',
            b: 'automerge',
            e: [
              ['fx', AM_GARBAGE],
              ['fy', amChunkWithGarbageBody()],
            ],
          }),
        )
        await victim.sync({ signal: AbortSignal.timeout(5_000) })
      },
      note: () => `invalidDelta drops ${dropped('invalidDelta')}`,
    })
    expect(victim.collection('f-default').backend).to.equal('yjs')
    // An honest Yjs write to it still lands (it would be a backendMismatch after a switch).
    await honest.collection('f-default', { backend: 'yjs' }).put('hw-f', { ok: true })
    await waitFor(async () => (await victim.collection('f-default').get('hw-f')) !== undefined, 'the honest Yjs write to f-default', 2_000)
    await expectSurvived(r)
  })

  // --- g. garbage and floods ---

  it('g1a. garbage of every kind on gossip and on the sync protocol: every message type with bodies of every wrong shape', async function () {
    const { victim, hostile } = cast
    const bodies: unknown[] = [null, 0, 'x', [], {}, { c: 'p', b: 'yjs', e: 'no' }, { c: 1, b: [], r: {}, n: -1, e: [[1, 2, 3]], t: -1, o: 2 ** 60 }]
    let sent = 0
    const r = await runAttack(cast, {
      name: 'g1a garbage',
      pass: async () => {
        for (const [, bytes] of GARBAGE_CASES) await hostile.publish(topic('p'), bytes())
        for (const [, bytes] of GARBAGE_CASES) await hostile.ask(victim.peerId, bytes())
        for (const type of [...(Object.values(MessageType) as number[]), 0, 99, 255]) {
          await parallel(bodies.length, async (i) => void (sent++, await hostile.ask(victim.peerId, msg(type, bodies[i]))))
        }
      },
      note: () => `${sent} garbage requests; malformed drops ${dropped('malformed')}`,
    })
    await expectSurvived(r)
  })

  it('g1b. oversized, twice: a request frame announcing maxMessageBytes + 1, a 4,000,000-byte gossip payload (over the gossip limit)', async function () {
    const { victim, hostile } = cast
    const oversizedGossip = push('p', 'yjs', [['k', new Uint8Array(4_000_000)]])
    const statuses: number[] = []
    const r = await runAttack(cast, {
      name: 'g1b oversized',
      maxPasses: 2,
      pass: async () => {
        await hostile.net.libp2p.services.pubsub.publish(topic('p'), oversizedGossip).catch(() => undefined)
        await sleep(0)
        statuses.push(await hostile.oversizedRequest(victim.peerId, 4 * MB + 1))
        await sleep(500) // paced: signing and encrypting megabytes is the attacker's own work, on this same loop
      },
      note: () => `answers to the oversized request: status ${statuses.join(', ')} (2 = too large)`,
    })
    expect(statuses).to.deep.equal(statuses.map(() => 2))
    await expectSurvived(r)
  })

  it('g1c. 3.9 MB garbage gossip, 4 a second: over the gossip limit (1 MiB), ignored by the topic validator and not relayed (was: ~80-100 ms each, relayed to the honest mesh)', async function () {
    const { hostile, honest } = cast
    const bigGarbage = push('p', 'yjs', [['k', new Uint8Array(3_900_000)]])
    const relayed = (): number => honest.stats().peers[hostile.peerId]?.dropped.invalidDelta ?? 0
    const before = relayed()
    const r = await runAttack(cast, {
      name: 'g1c 3.9 MB garbage push',
      pass: async () => {
        await hostile.publish(topic('p'), bigGarbage)
        await sleep(250) // paced: signing and encrypting megabytes is the attacker's own work, on this same loop
      },
      note: () => `the honest peer (connected only to the victim) received and dropped ${relayed() - before} of them: the topic validator checks only the size`,
    })
    await expectSurvived(r)
  })

  it('g2a. a gossip flood of small garbage messages, as fast as the peer can publish', async function () {
    const { hostile } = cast
    const garbage = [new Uint8Array([1, 2, 3, 4, 5, 6, 7]), push('p', 'yjs', [['k', YJS_GARBAGE]]), push('p', 'automerge', [['k', AM_GARBAGE]])]
    let published = 0
    const r = await runAttack(cast, {
      name: 'g2a gossip flood',
      pass: async () => {
        for (let i = 0; i < 100; i++, published++) await hostile.publish(topic('p'), garbage[i % garbage.length]!)
      },
      note: () =>
        `${published} messages published; rateLimited ${dropped('rateLimited')}, malformed ${dropped('malformed')}, invalidDelta ${dropped('invalidDelta')}, backendMismatch ${dropped('backendMismatch')}`,
    })
    await expectSurvived(r)
  })

  it('g2b. a gossip flood of pushes of 1,024 bad deltas each (50 a pass, as fast as the peer can publish): refused before any document exists, paced over the replica, rate-limited (was: seconds blocked, +170-260 MB)', async function () {
    const { hostile } = cast
    const flood = push(
      'p',
      'yjs',
      Array.from({ length: 1024 }, (_, i) => [`g${i}`, YJS_GARBAGE] as [string, Uint8Array]),
    )
    let published = 0
    const r = await runAttack(cast, {
      name: 'g2b entry flood',
      maxPasses: 2,
      pass: async () => {
        for (let i = 0; i < 50; i++, published++) await hostile.publish(topic('p'), flood)
      },
      note: () => `${published} pushes of 1,024 entries; rateLimited ${dropped('rateLimited')}, invalidDelta ${dropped('invalidDelta')}`,
    })
    await expectSurvived(r)
  })

  it('g3. valid but costly requests, 4 in flight: every digest node, 256 leaves, whole ranges, unpaged roots, exchanges of 512 ids', async function () {
    const { victim, hostile } = cast
    const requests = [
      msg(MessageType.NodesRequest, { c: 'seed', l: 3, n: Array.from({ length: 4096 }, (_, i) => i), z: true }),
      msg(MessageType.LeavesRequest, { c: 'seed', n: Array.from({ length: 256 }, (_, i) => i * 256) }),
      msg(MessageType.RangeRequest, { c: 'seed', b: 'yjs', r: [[0, 65535]], s: 0 }),
      msg(MessageType.RootsRequest, { r: [] }),
      msg(MessageType.ExchangeRequest, { c: 'seed', b: 'yjs', e: Array.from({ length: 512 }, (_, i) => [`s${i}`, null]) }),
    ]
    let sent = 0
    const r = await runAttack(cast, {
      name: 'g3 costly requests',
      pass: () =>
        parallel(IN_FLIGHT, async (i) => {
          sent++
          const reply = await hostile.ask(victim.peerId, requests[i % requests.length]!)
          expect('type' in reply && reply.type).to.not.equal(MessageType.Error)
        }),
      note: () => `${sent} requests`,
    })
    await expectSurvived(r)
  })

  // --- h. half-applied deltas ---

  it('h. deltas whose first part applies and the rest does not (Yjs, Automerge), to entities the victim holds: nothing of them stays', async function () {
    const { victim, hostile } = cast
    const yValid = yDelta({ half: 'applied' })
    const amValid = amDelta({ half: 'applied' })
    const deltasP: [string, Uint8Array][] = [
      ['k', concatBytes([yValid, YJS_GARBAGE])],
      ['k', yValid.subarray(0, yValid.byteLength - 1)],
      ['k', YJS_GARBAGE],
    ]
    const deltasDocs: [string, Uint8Array][] = [
      ['d1', concatBytes([amValid, amChunkWithGarbageBody()])],
      ['d1', concatBytes([amValid, AM_GARBAGE])],
    ]
    const r = await runAttack(cast, {
      name: 'h half-applied',
      pass: async () => {
        await hostile.publish(topic('p'), push('p', 'yjs', deltasP))
        await hostile.publish(topic('docs'), push('docs', 'automerge', deltasDocs))
        await hostile.ask(victim.peerId, msg(MessageType.DeltasRequest, { c: 'p', b: 'yjs', e: deltasP }))
        await hostile.ask(victim.peerId, msg(MessageType.DeltasRequest, { c: 'docs', b: 'automerge', e: deltasDocs }))
      },
      note: () => `invalidDelta drops ${dropped('invalidDelta')}`,
    })
    expect(await victim.collection('p').get('k')).to.deep.equal({ v: 1 })
    expect(await victim.collection('docs').get('d1')).to.deep.equal({ title: 'seed', n: 1 })
    // Still writable, and the local write carries no trace of the attack.
    await victim.collection('docs').update('d1', (v) => void (v.n = 2))
    expect(await victim.collection('docs').get('d1')).to.deep.equal({ title: 'seed', n: 2 })
    await victim.collection('docs').update('d1', (v) => void (v.n = 1))
    baseline = await dumpStore(victim)
    await expectSurvived(r)
  })

  // --- i. large transfers ---

  it('i1. uploads to the victim: huge announced sizes, parts out of order, never finished, not matching their hash; fetches of unknown tickets', async function () {
    const { victim, hostile } = cast
    const h = new Uint8Array(32).fill(1)
    const part = new Uint8Array(1 * MB).fill(3)
    const up = (fields: Record<string, unknown>): Uint8Array => msg(MessageType.UploadRequest, { c: 'p', b: 'yjs', i: 'up', h, ...fields })
    const garbageWhole = new Uint8Array(600_000).fill(9)
    const r = await runAttack(cast, {
      name: 'i1 uploads',
      pass: async () => {
        await hostile.ask(victim.peerId, up({ n: 2 ** 40, o: 0, d: part })) // over maxDeltaBytes
        await hostile.ask(victim.peerId, up({ n: 32 * MB, o: 0, d: part })) // started ...
        await hostile.ask(victim.peerId, up({ n: 32 * MB, o: 5 * MB, d: part })) // ... out of order
        await hostile.ask(victim.peerId, up({ n: 2 * MB, o: 0, d: part }))
        await hostile.ask(victim.peerId, up({ n: 2 * MB, o: 1 * MB, d: part })) // complete, wrong hash
        await hostile.ask(victim.peerId, up({ n: garbageWhole.byteLength, o: 0, d: garbageWhole, h: sha256(garbageWhole) })) // right hash, garbage delta
        await hostile.ask(victim.peerId, msg(MessageType.FetchRequest, { t: 123_456, o: 0 }))
        await hostile.ask(victim.peerId, up({ n: 32 * MB, o: 0, d: part })) // left unfinished
      },
      note: () => `malformed drops ${dropped('malformed')}, invalidDelta ${dropped('invalidDelta')}`,
    })
    await expectSurvived(r)
  })

  it('i2. tickets from the peer: huge sizes, parts that do not fit, parts that do not match their hash, unknown tickets', async function () {
    const { victim, hostile } = cast
    const cases: ((type: number, body: Record<string, unknown>) => Uint8Array)[] = [
      // A ticket over maxDeltaBytes: the response is refused before anything is allocated.
      (type) =>
        type === MessageType.RangeRequest
          ? msg(MessageType.RangeResponse, { e: [['t', { t: 1, n: 2 ** 40, h: SOME_ROOT }]] })
          : msg(MessageType.Error, { m: 'no' }),
      // 8 MiB announced, parts of 1 MiB, then a hash that does not match.
      (type, body) =>
        type === MessageType.RangeRequest
          ? msg(MessageType.RangeResponse, { e: [['t', { t: 2, n: 8 * MB, h: SOME_ROOT }]] })
          : msg(MessageType.FetchResponse, { b: new Uint8Array(Math.min(1 * MB, 8 * MB - (body.o as number))) }),
      // A part larger than what is left.
      (type) =>
        type === MessageType.RangeRequest
          ? msg(MessageType.RangeResponse, { e: [['t', { t: 3, n: 1000, h: SOME_ROOT }]] })
          : msg(MessageType.FetchResponse, { b: new Uint8Array(2000) }),
      // An unknown ticket (the peer's Error reply).
      (type) =>
        type === MessageType.RangeRequest
          ? msg(MessageType.RangeResponse, { e: [['t', { t: 4, n: 600_000, h: SOME_ROOT }]] })
          : msg(MessageType.Error, { m: 'unknown or expired ticket' }),
    ]
    let current = 0
    hostile.answer = await claimingRoots([['tix', 'yjs', SOME_ROOT]], (type, body) =>
      type === MessageType.RangeRequest || type === MessageType.FetchRequest
        ? cases[current % cases.length]!(type, body as Record<string, unknown>)
        : msg(MessageType.Error, { m: 'no' }),
    )
    const r = await runAttack(cast, {
      name: 'i2 bad tickets',
      pass: async () => {
        await victim.sync({ signal: AbortSignal.timeout(5_000) })
        current++
      },
      note: () => `${hostile.servedOf(MessageType.FetchRequest)} fetches served`,
    })
    expect(victim.collections()).to.not.include('tix')
    await expectSurvived(r)
  })

  it('i4. 32 requests whose frames announce 4 MiB and stop one byte short, held open: the victim holds at most 32 × 4 MiB per connection', async function () {
    const { victim, hostile } = cast
    const connection = hostile.net.libp2p.getConnections().find((c) => c.remotePeer.toString() === victim.peerId)!
    const chunk = new Uint8Array(64 * 1024)
    const streams: Awaited<ReturnType<typeof connection.newStream>>[] = []
    let refused = 0
    const errors: string[] = []
    const r = await runAttack(cast, {
      name: 'i4 stalled 4 MiB frames',
      maxPasses: 1,
      pass: async () => {
        await parallel(40, async () => {
          let stream
          try {
            stream = await connection.newStream(hostile.net.protocol)
          } catch {
            refused++
            return
          }
          streams.push(stream)
          // The length prefix of 4 MiB (LEB128), then 4 MiB less one byte of body.
          // Sent 64 KiB at a time with a turn of the loop in between: the attacker's own encryption
          // runs on this loop too, and should not pass for the victim's.
          const frame = [Uint8Array.of(0x80, 0x80, 0x80, 0x02), ...Array.from({ length: 64 }, (_, i) => (i === 63 ? chunk.subarray(1) : chunk))]
          try {
            for (const part of frame) {
              if (!stream.send(part)) await stream.onDrain()
              await new Promise((resolve) => setImmediate(resolve))
            }
          } catch (err) {
            errors.push((err as Error).message)
          }
        })
        await sleep(1_000) // held
      },
      note: () =>
        `${streams.length - errors.length} of ${streams.length} streams held with 4 MiB - 1 byte each, ${refused} refused, ${errors.length} cut off by the victim${errors.length > 0 ? ` (${errors[0]})` : ''}`,
    })
    for (const s of streams) s.abort(new Error('done'))
    await expectSurvived(r)
  })

  it('z. after the attacks above: a round between the victim and the honest peer finds them equal', async function () {
    const { victim, honest } = cast
    const rounds = await victim.sync({ signal: AbortSignal.timeout(10_000) })
    const withHonest = rounds.find((r) => r.peer === honest.peerId)!
    expect(withHonest.failed).to.deep.equal([])
    expect(withHonest.collectionsDiffering).to.equal(0)
    expect(await feedFrom(victim, cast.hostile.peerId)).to.equal(0)
  })

  // --- attacks whose valid data the victim keeps by design (the store grows, within bounds) ---

  it('i5. two peers (one a sybil) keep the upload budget full with unfinished 32 MiB uploads: an honest peer\'s large entity (700 KB, sent in parts) still arrives — a new upload pushes out the quietest (was: "no room for an upload")', async function () {
    const { victim, hostile, honest } = cast
    const sybil = await addSybil()
    const part = new Uint8Array(1 * MB).fill(3)
    const up = msg(MessageType.UploadRequest, { c: 'p', b: 'yjs', i: 'up', n: 32 * MB, h: new Uint8Array(32).fill(1), o: 0, d: part })
    const big = honest.collection('honest-big', { backend: 'yjs' })
    let outcome = 'not tried'
    let arrived = false
    const r = await runAttack(cast, {
      name: 'i5 upload budget',
      pass: async () => {
        for (const h of [hostile, sybil]) await h.ask(victim.peerId, up) // renews each upload's room
        if (outcome !== 'not tried') return
        await big.put('hw-big', { s: 'y'.repeat(700_000) })
        const rounds = await honest.sync({ signal: AbortSignal.timeout(5_000) })
        outcome = (rounds.find((x) => x.peer === victim.peerId)?.failed ?? []).map((f) => f.error).join('; ') || 'ok'
        arrived = victim.collections().includes('honest-big') && (await victim.collection('honest-big').get('hw-big')) !== undefined
      },
      note: () => `the honest peer's round: ${outcome}; its large entity arrived: ${arrived}`,
    })
    expect(outcome).to.equal('ok')
    expect(arrived).to.equal(true)
    await expectSurvived(r, { storeUnchanged: false })
  })

  it('c2. one request per new collection name with valid deltas: collections are created (by design), one per request, up to maxCollections', async function () {
    const { victim, hostile } = cast
    const deltas = Array.from({ length: 2000 }, (_, i) => yDelta({ i }))
    let n = 0
    let applied = 0
    const t0 = performance.now()
    const r = await runAttack(cast, {
      name: 'c2 new names, valid',
      pass: () =>
        parallel(IN_FLIGHT, async () => {
          const i = n++
          const reply = await hostile.ask(victim.peerId, msg(MessageType.DeltasRequest, { c: `c2-${i}`, b: 'yjs', e: [['x', deltas[i % deltas.length]!]] }))
          if ('body' in reply) applied += (reply.body as { n: number }).n
        }),
      note: () =>
        `${n} names sent, ${applied} collections created (at this pace maxCollections, 10,000, is reached in ~${((10_000 / Math.max(1, applied)) * ((performance.now() - t0) / 1000)).toFixed(0)} s)`,
    })
    expect(victim.collections().filter((c) => c.startsWith('c2-')).length).to.equal(applied)
    await expectSurvived(r, { storeUnchanged: false })
  })

  it('d3. valid deltas at the per-message bound (1,024 new entities a request, one at a time): the victim persists them and stays responsive (applies paced over the replica, 64 a turn)', async function () {
    const { victim, hostile } = cast
    const requests = Array.from({ length: 8 }, (_, k) =>
      msg(MessageType.DeltasRequest, { c: 'flood', b: 'yjs', e: Array.from({ length: 1024 }, (_, i) => [`f${k}-${i}`, yDelta({ k, i })]) }),
    )
    let next = 0
    const r = await runAttack(cast, {
      name: 'd3 1024 valid/request',
      maxPasses: 4,
      pass: async () => void (await hostile.ask(victim.peerId, requests[next++ % requests.length]!)),
      note: () => `${next * 1024} entities sent`,
    })
    expect(await feedFrom(victim, hostile.peerId)).to.be.at.most(next * 1024 + victim.collections().filter((c) => c.startsWith('c2-')).length)
    await expectSurvived(r, { storeUnchanged: false })
  })

  it("i3. range requests for a large entity, tickets never fetched: the victim's outbox stays within its budget", async function () {
    const { victim, hostile } = cast
    const request = msg(MessageType.RangeRequest, { c: 'big', b: 'yjs', r: [[0, 65535]], s: 0, x: 1 })
    let tickets = 0
    const r = await runAttack(cast, {
      name: 'i3 outbox churn',
      minWindowMs: 3_000, // ~100 tickets: more than the 64 MiB the outbox keeps
      pass: () =>
        parallel(IN_FLIGHT, async () => {
          const reply = await hostile.ask(victim.peerId, request)
          if ('body' in reply && !((reply.body as { e: [string, unknown][] }).e[0]?.[1] instanceof Uint8Array)) tickets++
        }),
      note: () => `${tickets} tickets of ~700 KB handed out (${((tickets * 700_041) / MB).toFixed(0)} MB; the outbox keeps 64 MiB), none fetched`,
    })
    expect(tickets).to.be.greaterThan(0)
    await expectSurvived(r)
  })

  it('after every attack: the victim reopened from its folder holds exactly what it held', async function () {
    const { victim } = cast
    const live = await dumpStore(victim)
    await victim.close()
    const reopened = await open({ dir: cast.victimDir, network: false })
    try {
      expect(await dumpStore(reopened)).to.deep.equal(live)
    } finally {
      await reopened.close()
    }
  })
})
