// What a receiver does about a gap in gossip, and what a pusher does so as not to make one,
// with no scheduled rounds (syncIntervalMs 0) and none on connect: only gossip and the rounds
// it starts can bring anything.
// - A push taken with changes left waiting (a push before it was lost) starts a round with its
//   sender (receiver.ts PushOutcome), instead of leaving them to the next scheduled round.
//   While a round with the sender runs, only once it ended and only if the entity still waits
//   (gap-rounds.ts).
// - A hot entity's writes gathered in one tick, merged over the inline limit, go out in runs
//   that each fit (pusher.ts runsOf), instead of all being left to anti-entropy.
import { randomBytes } from 'node:crypto'
import { expect } from 'chai'
import { LoopbackHub, type Replica } from '../src/index.js'
import { GapRounds } from '../src/replication/gap-rounds.js'
import { closedAfterEach, memoryReplica, settle, spy, waitFor } from './helpers.js'

const rounds = (r: Replica, peer: string): number => r.stats().peers[peer]?.syncRounds ?? 0

/** `write` while a and b are cut (its push lost to b), then healed. */
async function pushLost(hub: LoopbackHub, a: Replica, b: Replica, write: () => Promise<unknown>): Promise<void> {
  hub.disconnect('a', 'b')
  await waitFor(() => b.peers().length === 0, 'cut')
  const pushed = a.stats().pushed.messages
  await write()
  await waitFor(() => a.stats().pushed.messages > pushed, 'the write pushed while cut')
  hub.heal()
  await waitFor(() => a.peers().includes('b') && b.peers().includes('a'), 'healed')
}

describe('gaps in gossip', function () {
  this.timeout(60_000)
  const opened = closedAfterEach()

  async function pair(limits = {}): Promise<{ hub: LoopbackHub; a: Replica; b: Replica }> {
    const hub = new LoopbackHub()
    const a = await memoryReplica({ network: hub.createNetwork('a'), syncOnConnect: false, limits })
    const b = await memoryReplica({ network: hub.createNetwork('b'), syncOnConnect: false, limits })
    opened.replicas.push(a, b)
    await waitFor(() => a.peers().includes('b') && b.peers().includes('a'), 'linked')
    return { hub, a, b }
  }

  for (const backend of ['automerge', 'yjs'] as const) {
    it(`${backend}: a push that leaves a change waiting (the push before it lost) starts a round that brings the lost one`, async () => {
      const { hub, a, b } = await pair()
      const onA = a.collection('notes', { backend })
      const onB = b.collection('notes', { backend })
      await onA.put('n1', { text: 'zero' })
      await waitFor(async () => (await onB.get('n1'))?.text === 'zero', 'zero at b')
      // b learnt of the collection from a's announcement: the round that started brought it.
      await waitFor(() => rounds(b, 'a') === 1, 'that round done')
      await pushLost(hub, a, b, () => onA.put('n1', { text: 'one' }))
      expect(rounds(b, 'a') + rounds(a, 'b'), 'no round since').to.equal(1)
      await onA.put('n1', { text: 'two' }) // waits at b for 'one'
      await waitFor(async () => (await onB.get('n1'))?.text === 'two', 'two at b')
      // A round is counted once it ended (after its last step): 'two' may show before.
      await waitFor(() => rounds(b, 'a') >= 2, 'that round ended')
      expect(rounds(b, 'a'), 'b started one round with a').to.equal(2)
    })
  }

  it('a gap in a push whose author and relay are both no neighbour (names a peer cannot choose on libp2p, forged here) starts no round with anyone, and the scheduled round still brings it', async () => {
    const hub = new LoopbackHub()
    const net = hub.createNetwork('b')
    let fromA = 0
    // Every push a sends reaches b as a relayed one, its author and relay not connected to b.
    const relayed = spy(net, {
      gossip: (deliver) => (topic, data, from, via) => {
        if (from === 'a') fromA++
        deliver(topic, data, from === 'a' ? 'ghost' : from, from === 'a' ? 'nobody' : via)
      },
    })
    const a = await memoryReplica({ network: hub.createNetwork('a'), syncOnConnect: false })
    const b = await memoryReplica({ network: relayed, syncOnConnect: false })
    opened.replicas.push(a, b)
    await waitFor(() => a.peers().includes('b') && b.peers().includes('a'), 'linked')
    const onA = a.collection('notes', { backend: 'automerge' })
    const onB = b.collection('notes', { backend: 'automerge' })
    await onA.put('n1', { text: 'zero' })
    await b.sync() // b learns of the collection and 'zero'
    await waitFor(async () => (await onB.get('n1'))?.text === 'zero', 'zero at b')
    const before = rounds(b, 'a')
    await pushLost(hub, a, b, () => onA.put('n1', { text: 'one' }))
    const received = fromA
    await onA.put('n1', { text: 'two' }) // waits at b for 'one'
    await waitFor(() => fromA > received, "'two' received")
    await settle()
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(rounds(b, 'a'), 'no round started by the gap').to.equal(before)
    expect(b.peers()).to.deep.equal(['a'])
    expect(b.stats().peers['nobody'], 'no trace of the relay named').to.equal(undefined)
    expect((await onB.get('n1'))?.text, 'still waiting').to.equal('zero')
    await b.sync()
    await waitFor(async () => (await onB.get('n1'))?.text === 'two', 'two at b after the scheduled round')
  })

  it('writes of one entity gathered in a tick, over the inline limit merged, are pushed in runs that fit: no round needed', async () => {
    const limits = { maxDeltaBytes: 64 * 1024, maxChunkBytes: 16 * 1024 }
    const { a, b } = await pair(limits)
    const filler = (): string => randomBytes(5 * 1024).toString('base64') // ~7 KB of change each
    const onA = a.collection('notes', { backend: 'automerge' })
    const onB = b.collection('notes', { backend: 'automerge' })
    await onA.put('big', { text: filler() })
    await waitFor(async () => (await onB.get('big')) !== undefined, 'big at b')
    // b learnt of the collection from a's announcement: the round that started brought it.
    await waitFor(() => rounds(b, 'a') === 1, 'that round done')
    // Four writes in one tick: ~28 KB merged, over the 16 KB inline limit; each alone fits.
    await Promise.all([1, 2, 3, 4].map(() => onA.put('big', { text: filler() })))
    const last = (await onA.get('big'))!.text
    await waitFor(async () => (await onB.get('big'))?.text === last, 'the last write at b')
    expect(rounds(a, 'b') + rounds(b, 'a'), 'by gossip alone').to.equal(1)
    expect(a.stats().entitySize.notSent).to.equal(0)
  })
})

describe('GapRounds (gap-rounds.ts): what a gap found while a round runs leads to', function () {
  function watch(): { gaps: GapRounds; soon: string[]; waiting: Set<string>; end(peer: string): Promise<void>; run(peer: string): void } {
    const running = new Map<string, { promise: Promise<void>; end: () => void }>()
    const soon: string[] = []
    const waiting = new Set<string>()
    const gaps = new GapRounds({
      roundRunning: (peer) => running.get(peer)?.promise,
      roundSoon: (peer) => soon.push(peer),
      holdsWaiting: (collection, id) => waiting.has(`${collection}/${id}`),
    })
    return {
      gaps,
      soon,
      waiting,
      run(peer) {
        let end!: () => void
        const promise = new Promise<void>((resolve) => (end = resolve))
        running.set(peer, { promise, end })
      },
      async end(peer) {
        const r = running.get(peer)!
        running.delete(peer)
        r.end()
        await r.promise
        await settle()
      },
    }
  }

  it('no round running: one soon; one running: none until it ended, then one only if a noted entity still waits', async () => {
    const w = watch()
    w.gaps.found('p', 'c', ['e1'])
    expect(w.soon).to.deep.equal(['p'])
    w.run('p')
    w.waiting.add('c/e2')
    w.gaps.found('p', 'c', ['e2'])
    w.gaps.found('p', 'c', ['e2', 'e3'])
    expect(w.soon, 'not while it runs').to.deep.equal(['p'])
    await w.end('p')
    expect(w.soon, 'e2 still waits').to.deep.equal(['p', 'p'])
    w.run('p')
    w.gaps.found('p', 'c', ['e3'])
    await w.end('p')
    expect(w.soon, 'the round brought e3').to.deep.equal(['p', 'p'])
  })

  it('a peer that went away is not followed up; at most 1,000 entities are noted per peer', async () => {
    const w = watch()
    w.run('p')
    w.waiting.add('c/e1')
    w.gaps.found('p', 'c', ['e1'])
    w.gaps.forget('p')
    await w.end('p')
    expect(w.soon).to.deep.equal([])
    w.run('p')
    w.gaps.found(
      'p',
      'c',
      Array.from({ length: 1_000 }, (_, i) => `x${i}`),
    )
    w.waiting.add('c/late')
    w.gaps.found('p', 'c', ['late'])
    await w.end('p')
    expect(w.soon, 'the 1,001st is not noted: the scheduled round brings it').to.deep.equal([])
  })
})
