// Review s34b: attacks on f86dabf (sync-client.ts stillDiffering: entities of equal versions whose
// hashes differed at the leaves compare are reported as divergent only if a second leaves compare
// still shows them differing; never for a backend whose version names its content) and on
// 3a2c7ed (gap-rounds.ts: a gap found while a round with the sender runs is noted, ≤ 1,000 per
// peer, and followed by a round once that one ended only if a noted entity still waits).
import * as A from '@automerge/automerge'
import { expect } from 'chai'
import { danglingYjs, forge } from './forge-helpers.js'
import { LoopbackHub, type Network, type NetworkEvents, type Replica, type RoundEvent } from '../src/index.js'
import {
  decodeExchangeResponse,
  decodeLeavesRequest,
  decodeLeavesResponse,
  decodeMessage,
  encodeExchangeResponse,
  encodeLeavesRequest,
  encodeLeavesResponse,
  encodePush,
  MessageType,
  topicOf,
} from '../src/internal.js'
import { leafOf } from '../src/digest.js'
import { closedAfterEach, ManualClock, memoryReplica, recordingLogger, settle, waitFor } from './helpers.js'

const divergent = (r: Replica, peer: string): number | undefined => r.stats().peers[peer]?.divergentEntities
const said = (log: ReturnType<typeof recordingLogger>): string[] => log.lines.map((l) => l.message).filter((m) => m.includes('neither side lacks'))
const typeOf = (data: Uint8Array): number => decodeMessage(data, 1 << 24).type
const bodyOf = (data: Uint8Array): unknown => decodeMessage(data, 1 << 24).body

type Serve = (from: string, data: Uint8Array, next: (data: Uint8Array) => Promise<Uint8Array>) => Promise<Uint8Array>
type Ask = (peer: string, data: Uint8Array, next: (data: Uint8Array) => Promise<Uint8Array>) => Promise<Uint8Array>

/** `inner` with its answers (serve), its own requests (ask) and its gossip in (gossip) passed through hooks. */
function intercepted(
  inner: Network,
  hooks: { serve?: Serve; ask?: Ask; gossip?: (topic: string, data: Uint8Array, from: string, next: () => void) => void },
): Network {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'start')
        return (e: NetworkEvents) =>
          target.start({
            ...e,
            onRequest: (from, data) => (hooks.serve ? hooks.serve(from, data, (d) => e.onRequest(from, d)) : e.onRequest(from, data)),
            onMessage: (topic, data, from) =>
              hooks.gossip ? hooks.gossip(topic, data, from, () => e.onMessage(topic, data, from)) : e.onMessage(topic, data, from),
          })
      if (prop === 'request' && hooks.ask)
        return (peer: string, data: Uint8Array, options?: { signal?: AbortSignal; maxBytes?: number }) =>
          hooks.ask!(peer, data, (d) => target.request(peer, d, options))
      const v = Reflect.get(target, prop, target) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  })
}

/** `n` ids (prefix-i…) that fall in the digest leaf of `id`. */
function leafMates(id: string, n: number, prefix: string): string[] {
  const leaf = leafOf(id)
  const out: string[] = []
  for (let i = 0; out.length < n; i++) if (leafOf(`${prefix}${i}`) === leaf) out.push(`${prefix}${i}`)
  return out
}

const netOf = (r: Replica): Network => (r as unknown as { options: { network: Network } }).options.network
type Noted = Map<string, { entities: Map<string, Set<string>>; count: number }>
const notedOf = (r: Replica): Noted => (r as unknown as { replicator: { gaps: { noted: Noted } } }).replicator.gaps.noted
const roundsMap = (r: Replica): Map<string, unknown> => (r as unknown as { replicator: { rounds: Map<string, unknown> } }).replicator.rounds

describe('review s34b: divergence on a second compare (f86dabf), gap rounds (3a2c7ed)', function () {
  this.timeout(60_000)
  const opened = closedAfterEach()

  /** a and b, not linked yet (the test forges first). */
  async function unlinked(options: { netA?: (n: Network) => Network; netB?: (n: Network) => Network } = {}) {
    const hub = new LoopbackHub({ connectOnStart: false })
    const logA = recordingLogger()
    const logB = recordingLogger()
    const rawA = hub.createNetwork('a')
    const rawB = hub.createNetwork('b')
    const a = await memoryReplica({ network: options.netA ? options.netA(rawA) : rawA, syncOnConnect: false, logger: logA })
    const b = await memoryReplica({ network: options.netB ? options.netB(rawB) : rawB, syncOnConnect: false, logger: logB })
    opened.replicas.push(a, b)
    const link = async (): Promise<void> => {
      hub.connect('a', 'b')
      await waitFor(() => a.peers().includes('b') && b.peers().includes('a'), 'linked')
    }
    return { hub, a, b, logA, logB, link }
  }

  // ---------------------------------------------------------------- A: divergence, second compare

  it('probe: yjs: a forged entity that both sides keep writing to (another field) is reported in every round, by both sides', async () => {
    const { a, b, logB, link } = await unlinked()
    await forge(a, b, 'n1')
    await link()
    for (let i = 1; i <= 3; i++) {
      // The forging side writes, then the honest side: each write reaches the other by gossip.
      await b.collection('notes').update('n1', (d) => void (d['k'] = i))
      await a.collection('notes').update('n1', (d) => void (d['j'] = i))
      await waitFor(
        async () => (await a.collection('notes').get('n1'))?.['k'] === i && (await b.collection('notes').get('n1'))?.['j'] === i,
        `write ${i} both ways`,
      )
      const [round] = await b.sync()
      expect(round!.entitiesUnrepairable, `b's round ${i}`).to.equal(1)
      expect(divergent(b, 'a'), `b's round ${i}`).to.equal(1)
      await a.sync()
      expect(divergent(a, 'b'), `a's round ${i}`).to.equal(1)
    }
    expect(said(logB)).to.have.length(3)
    expect((await a.collection('notes').get('n1'))?.['text']).to.equal('MARKER-AAAA-n1')
    expect((await b.collection('notes').get('n1'))?.['text']).to.equal('MARKER-BBBB-n1')
  })

  it('probe: yjs: a forged entity among 700 updated entities (two exchange chunks) and 12 others of its own leaf is counted once; the second compare costs at most 2 leaves requests an exchange', async () => {
    let counting = false
    const asked: number[] = []
    const { hub, a, b, link } = await unlinked({
      netB: (n) =>
        intercepted(n, {
          ask: (_peer, data, next) => {
            if (counting) asked.push(typeOf(data))
            return next(data)
          },
        }),
    })
    await forge(a, b, 'n1')
    const mates = leafMates('n1', 12, 'm')
    const others = Array.from({ length: 700 }, (_, i) => `e${i}`)
    const onA = a.collection('notes')
    for (const id of [...mates, ...others]) await onA.put(id, { text: `v0 ${id}` })
    await link()
    await b.sync()
    expect(divergent(b, 'a'), 'first round').to.equal(1)
    hub.disconnect('a', 'b')
    await waitFor(() => !b.peers().includes('a'), 'unlinked')
    for (const id of [...mates, ...others]) await onA.put(id, { text: `v1 ${id}` })
    await link()
    counting = true
    const [round] = await b.sync()
    counting = false
    expect(round!.entitiesDiffering).to.be.within(701, 713)
    expect(round!.entitiesUnrepairable).to.equal(1)
    expect(divergent(b, 'a')).to.equal(1)
    expect(await b.collection('notes').get('e699')).to.deep.equal({ text: 'v1 e699' })
    const exchanges = asked.filter((t) => t === MessageType.ExchangeRequest).length
    const firstExchange = asked.indexOf(MessageType.ExchangeRequest)
    const leavesAfter = asked.slice(firstExchange).filter((t) => t === MessageType.LeavesRequest).length
    expect(exchanges).to.equal(2)
    expect(leavesAfter, 'leaves requests of the second compares').to.be.within(1, 2 * exchanges)
  })

  it('probe: yjs: three forged entities, the peer answering every leaves request a leaf at a time ("more"): each counted once, the round ends', async () => {
    let paged = 0
    const { a, b, link } = await unlinked({
      netA: (n) =>
        intercepted(n, {
          serve: async (_from, data, next) => {
            if (typeOf(data) !== MessageType.LeavesRequest) return next(data)
            const req = decodeLeavesRequest(bodyOf(data))
            if (req.leaves.length < 2) return next(data)
            paged++
            const answer = decodeLeavesResponse(bodyOf(await next(encodeLeavesRequest({ collection: req.collection, leaves: req.leaves.slice(0, 1) }))))
            return encodeLeavesResponse({ entries: answer.entries, more: req.leaves.slice(1) })
          },
        }),
    })
    for (const id of ['n1', 'n2', 'n3']) await forge(a, b, id)
    expect(new Set(['n1', 'n2', 'n3'].map(leafOf)).size).to.equal(3)
    await link()
    for (const round of [1, 2]) {
      const [result] = await b.sync()
      expect(result!.entitiesUnrepairable, `round ${round}`).to.equal(3)
      expect(result!.failed).to.deep.equal([])
    }
    expect(paged, 'leaves answers paged').to.be.at.least(4)
  })

  it('probe: a peer answering leaves requests after an exchange without progress ("more": every leaf) fails those collections, not the round, in a few requests', async () => {
    let exchanged = false
    const { a, b, link } = await unlinked({
      netA: (n) =>
        intercepted(n, {
          serve: async (_from, data, next) => {
            const type = typeOf(data)
            if (type === MessageType.ExchangeRequest) exchanged = true
            if (type !== MessageType.LeavesRequest || !exchanged) return next(data)
            const req = decodeLeavesRequest(bodyOf(data))
            return encodeLeavesResponse({ entries: [], more: req.leaves })
          },
        }),
    })
    await forge(a, b, 'n1')
    await forge(a, b, 'n2', 'other')
    await link()
    const [result] = await b.sync()
    expect(result!.failed.map((f) => f.collection)).to.deep.equal(['notes', 'other'])
    for (const f of result!.failed) expect(f.error).to.match(/without progress/)
    expect(result!.messages, 'requests of the round').to.be.at.most(16)
  })

  // HOLE 5 (low; pre-existing, not made worse by f86dabf; fixed): an exchange answer that names an
  // entity several times (a hostile peer; an honest one never does) had it counted that many times
  // — before f86dabf too (unrepairable++ per entry) — and each copy cost a deltaFor (an acquire)
  // and could send its delta again. It only inflated the hostile peer's own divergentEntities.
  // Fixed (sync-client.ts exchange): an id is taken once per answer, reported once per exchange.
  it('HOLE 5 (fixed): an exchange answer naming a forged entity three times has it counted once', async () => {
    const { a, b, link } = await unlinked({
      netA: (n) =>
        intercepted(n, {
          serve: async (_from, data, next) => {
            if (typeOf(data) !== MessageType.ExchangeRequest) return next(data)
            const answer = decodeExchangeResponse(bodyOf(await next(data)))
            return encodeExchangeResponse({ entries: answer.entries.flatMap((e) => [e, e, e]), more: answer.more })
          },
        }),
    })
    await forge(a, b, 'n1')
    await link()
    const [result] = await b.sync()
    expect(result!.entitiesUnrepairable).to.equal(1)
  })

  // HOLE 6 (low-medium; narrowed by f86dabf, not closed; fixed for the replica's own writes): the
  // second compare tells a forgery from a write taken between the two compares no better than the
  // first one did. In a hot entity the replica's own write between the exchange and the second
  // leaves answer (the window f86dabf opened) made its version hash differ again: an honest entity
  // was warned of as "a forged or damaged write" and counted in divergentEntities. Fixed
  // (sync-client.ts stillDiffering): an entity whose version here moved since the exchange is not
  // counted (a later round reports it if it still differs). A write of the peer's in that window
  // cannot be told apart from here: HOLE 7.
  it("HOLE 6 (fixed): the initiator's own write between the exchange and the second compare is no divergence", async () => {
    // a holds b's gossip while `holding`; its first leaves answer is computed before it takes
    // what it held ('two'), so the exchange that follows finds the versions equal (as in
    // divergence.test.ts). b writes 'three' right before its second compare (its push to a held).
    let holding = false
    let exchanged = false
    let wrote = false
    const held: (() => void)[] = []
    let a: Replica | undefined
    let b: Replica | undefined
    const setup = await unlinked({
      netA: (n) =>
        intercepted(n, {
          gossip: (_topic, _data, _from, next) => (holding ? void held.push(next) : next()),
          serve: async (_from, data, next) => {
            const answer = await next(data)
            if (typeOf(data) === MessageType.LeavesRequest && !exchanged && held.length > 0) {
              for (const deliver of held.splice(0)) deliver()
              await waitFor(async () => (await a!.collection('notes').get('n1'))?.text === 'two', "b's 'two' taken at a")
            }
            return answer
          },
        }),
      netB: (n) =>
        intercepted(n, {
          ask: async (_peer, data, next) => {
            const type = typeOf(data)
            if (type === MessageType.LeavesRequest && exchanged && !wrote) {
              wrote = true
              await b!.collection('notes').put('n1', { text: 'three' })
            }
            const answer = await next(data)
            if (type === MessageType.ExchangeRequest) exchanged = true
            return answer
          },
        }),
    })
    a = setup.a
    b = setup.b
    const { logB, link } = setup
    await link()
    const onB = b.collection('notes', { backend: 'yjs' })
    await onB.put('n1', { text: 'one' })
    await waitFor(async () => (await a.collection('notes').get('n1'))?.text === 'one', 'one at a')
    holding = true
    await onB.put('n1', { text: 'two' })
    await settle()
    expect(held, "b's push of 'two' held at a").to.have.length.at.least(1)
    const [result] = await b.sync()
    expect(wrote, "b wrote 'three' before its second compare").to.equal(true)
    expect(exchanged).to.equal(true)
    expect(result!.entitiesUnrepairable).to.equal(0)
    expect(said(logB)).to.deep.equal([])
  })

  // HOLE 7 (low; residual of f86dabf; fixed): a write of the *peer's* taken there between its
  // exchange answer and its second leaves answer (its push to this replica still on the way) made
  // the hashes differ again: an honest entity was counted as divergent, warned of as a forgery.
  // Fixed: the peer's hash in the second compare must be the one it gave when the leaves were
  // first compared (a forged entity's hash stays; a written one moves).
  async function peerWritesDuringSecondCompare(backend: 'yjs' | 'automerge'): Promise<void> {
    let holdingA = false
    let holdingB = false
    let exchanged = false
    let wrote = false
    const heldAtA: (() => void)[] = []
    let a: Replica | undefined
    const setup = await unlinked({
      netA: (n) =>
        intercepted(n, {
          gossip: (_topic, _data, _from, next) => (holdingA ? void heldAtA.push(next) : next()),
          serve: async (_from, data, next) => {
            const type = typeOf(data)
            const answer = await next(data)
            if (type === MessageType.LeavesRequest && !exchanged && heldAtA.length > 0) {
              holdingA = false
              for (const deliver of heldAtA.splice(0)) deliver()
              await waitFor(async () => (await a!.collection('notes').get('n1'))?.text === 'two', "b's 'two' taken at a")
            }
            if (type === MessageType.ExchangeRequest && !wrote) {
              exchanged = true
              wrote = true
              holdingB = true
              await a!.collection('notes').put('n1', { text: 'three' }) // a's own write; its push to b held
            }
            return answer
          },
        }),
      netB: (n) => intercepted(n, { gossip: (_topic, _data, _from, next) => (holdingB ? undefined : next()) }),
    })
    a = setup.a
    const { b, logB, link } = setup
    await link()
    const onB = b.collection('notes', { backend })
    await onB.put('n1', { text: 'one' })
    await waitFor(async () => (await a.collection('notes').get('n1'))?.text === 'one', 'one at a')
    holdingA = true
    await onB.put('n1', { text: 'two' })
    await settle()
    const [result] = await b.sync()
    expect(wrote).to.equal(true)
    expect(result!.entitiesUnrepairable).to.equal(0)
    expect(said(logB)).to.deep.equal([])
  }
  it("HOLE 7 (fixed): yjs: the peer's write between its exchange answer and the second compare is no divergence", () => peerWritesDuringSecondCompare('yjs'))
  // Automerge's version names its content (versionNamesContent): equal versions are never counted,
  // so the same interleaving reports nothing there.
  it("probe: automerge: the peer's write between its exchange answer and the second compare is no divergence", () => peerWritesDuringSecondCompare('automerge'))

  // ---------------------------------------------------------------- A: Automerge

  it('probe: automerge: a stored document damaged anywhere (each byte flipped) never loads with the same heads and other content', () => {
    let doc = A.from<Record<string, unknown>>({ text: 'MARKER-AAAA', n: 1 }, { actor: 'aa'.repeat(16) })
    doc = A.change(doc, (d) => void (d['n'] = 2))
    doc = A.change(doc, (d) => void (d['list'] = [1, 2, 3]))
    const saved = A.save(doc)
    const heads = A.getHeads(doc).join()
    const content = JSON.stringify(A.toJS(doc))
    let loaded = 0
    let sameHeads = 0
    for (let i = 0; i < saved.byteLength; i++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const damaged = saved.slice()
        damaged[i] = damaged[i]! ^ mask
        let other: A.Doc<Record<string, unknown>>
        try {
          other = A.load(damaged)
        } catch {
          continue
        }
        loaded++
        if (A.getHeads(other).join() !== heads) continue
        sameHeads++
        expect(JSON.stringify(A.toJS(other)), `byte ${i} ^ ${mask}`).to.equal(content)
      }
    }
    // Report what happened (the chunk checksum turns away nearly every flip).
    expect(loaded).to.be.at.least(0)
    expect(sameHeads).to.be.at.most(loaded)
  })

  // ---------------------------------------------------------------- B: gap rounds

  /** victim and a real peer 'evil' whose answers to the victim stall until go(); collection 'c' at both. */
  async function stalledRound(clock?: ManualClock) {
    const hub = new LoopbackHub()
    let go: () => void = () => undefined
    let answering = new Promise<void>((resolve) => (go = resolve))
    let stall = false
    let servedAfterClose = 0
    let closed = false
    const victim = await memoryReplica({ network: hub.createNetwork('victim'), syncOnConnect: false, ...(clock ? { clock } : {}) })
    const evil = await memoryReplica({
      network: intercepted(hub.createNetwork('evil'), {
        serve: async (from, data, next) => {
          if (closed) servedAfterClose++
          if (stall && from === 'victim') await answering
          return next(data)
        },
      }),
      syncOnConnect: false,
    })
    opened.replicas.push(victim, evil)
    await waitFor(() => victim.peers().includes('evil') && evil.peers().includes('victim'), 'linked')
    await victim.collection('c', { backend: 'yjs' }).put('x', { text: 'mine' })
    await waitFor(async () => (await evil.collection('c').get('x')) !== undefined, 'x at evil')
    await waitFor(() => roundsMap(victim).size === 0 && roundsMap(evil).size === 0, 'announcement rounds done')
    const events: RoundEvent[] = []
    victim.observe({ round: (e) => void events.push(e) })
    stall = true
    // The victim's round with evil: it stalls at its first request.
    const round = victim.sync().catch((err: unknown) => err)
    await waitFor(() => roundsMap(victim).has('evil'), 'round running')
    let n = 0
    const gap = async (collection = 'c', count = 1): Promise<void> => {
      const entries: [string, Uint8Array][] = []
      for (let i = 0; i < count; i++) {
        n++
        entries.push([`${collection}-x${n}`, danglingYjs(n)])
      }
      await netOf(evil).publish(
        topicOf('default', collection),
        encodePush({ collection, backend: 'yjs', origin: 'evil', sequence: n, entries, time: Date.now() }),
      )
    }
    return {
      hub,
      victim,
      evil,
      events,
      round,
      gap,
      go: () => go(),
      restall: () => (answering = new Promise<void>((resolve) => (go = resolve))),
      markClosed: () => void (closed = true),
      servedAfterClose: () => servedAfterClose,
    }
  }

  it('probe: a replica closed while a round with a peer runs and gaps of it are noted: close ends, no round begins after it, nothing stays noted', async () => {
    const s = await stalledRound()
    await s.gap()
    await waitFor(() => notedOf(s.victim).get('evil')?.count === 1, 'noted')
    const closing = s.victim.close()
    s.markClosed()
    s.go()
    await closing
    await s.round
    await settle()
    expect(notedOf(s.victim).size, 'noted after close').to.equal(0)
    expect(s.servedAfterClose(), 'requests of the victim after close').to.equal(0)
    expect(roundsMap(s.victim).size).to.equal(0)
  })

  it('probe: a peer that disconnects while noted leaves nothing noted, and no round follows the one that ran', async () => {
    const s = await stalledRound()
    await s.gap()
    await waitFor(() => notedOf(s.victim).get('evil')?.count === 1, 'noted')
    s.hub.disconnect('victim', 'evil')
    await waitFor(() => !s.victim.peers().includes('evil'), 'gone')
    await waitFor(() => notedOf(s.victim).size === 0, 'forgotten')
    s.go()
    await s.round
    await waitFor(() => roundsMap(s.victim).size === 0, 'round over')
    await settle()
    expect(
      s.events.filter((e) => e.peer === 'evil'),
      'rounds after the stalled one',
    ).to.have.length(1)
    expect(notedOf(s.victim).size).to.equal(0)
  })

  it("probe: one peer's gaps over three collections while a round runs note at most 1,000 entities in all; one round follows", async () => {
    const s = await stalledRound()
    for (const name of ['c2', 'c3']) {
      await s.victim.collection(name, { backend: 'yjs' }).put('x', { text: 'mine' })
      await waitFor(async () => (await s.evil.collection(name).get('x')) !== undefined, `${name} at evil`)
    }
    for (const name of ['c', 'c2', 'c3']) for (let i = 0; i < 2; i++) await s.gap(name, 300)
    await waitFor(() => (notedOf(s.victim).get('evil')?.count ?? 0) >= 1_000, 'noted')
    await settle()
    const noted = notedOf(s.victim).get('evil')!
    const sizes = [...noted.entities.values()].reduce((sum, ids) => sum + ids.size, 0)
    expect(noted.count).to.equal(1_000)
    expect(sizes).to.equal(1_000)
    s.go()
    await s.round
    await waitFor(() => s.events.filter((e) => e.peer === 'evil').length === 2, 'the round that follows')
    await waitFor(() => roundsMap(s.victim).size === 0, 'rounds over')
    expect(notedOf(s.victim).size).to.equal(0)
  })
})
