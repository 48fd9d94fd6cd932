// What a receiver does about a gap in gossip, and what a pusher does so as not to make one,
// with no scheduled rounds (syncIntervalMs 0) and none on connect: only gossip and the rounds
// it starts can bring anything.
// - A push taken with changes left waiting (a push before it was lost) starts a round with its
//   sender (receiver.ts PushOutcome), instead of leaving them to the next scheduled round.
// - A hot entity's writes gathered in one tick, merged over the inline limit, go out in runs
//   that each fit (pusher.ts runsOf), instead of all being left to anti-entropy.
import { randomBytes } from 'node:crypto'
import { expect } from 'chai'
import { LoopbackHub, type Replica } from '../src/index.js'
import { closedAfterEach, memoryReplica, waitFor } from './helpers.js'

const rounds = (r: Replica, peer: string): number => r.stats().peers[peer]?.syncRounds ?? 0

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
      hub.disconnect('a', 'b')
      await waitFor(() => b.peers().length === 0, 'cut')
      const pushed = a.stats().pushed.messages
      await onA.put('n1', { text: 'one' }) // lost to b
      await waitFor(() => a.stats().pushed.messages > pushed, "'one' pushed while cut")
      hub.heal()
      await waitFor(() => a.peers().includes('b') && b.peers().includes('a'), 'healed')
      expect(rounds(b, 'a') + rounds(a, 'b'), 'no round since').to.equal(1)
      await onA.put('n1', { text: 'two' }) // waits at b for 'one'
      await waitFor(async () => (await onB.get('n1'))?.text === 'two', 'two at b')
      expect(rounds(b, 'a'), 'b started a round with a').to.equal(2)
    })
  }

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
