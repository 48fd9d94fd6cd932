// Entities that differ although neither side lacks a change of the other (RoundResult
// entitiesUnrepairable, stats().peers[p].divergentEntities, the warning and the
// convergent_divergent_entities alert): a forged or damaged write, which sync cannot repair.
// It must be reported — and only then: in a hot cluster a replica's own write often reaches the
// peer between the leaves compare and the exchange of a round, and was reported as a forgery.
import { expect } from 'chai'
import { LoopbackHub, type Network, type NetworkEvents, type Replica } from '../src/index.js'
import { decodeMessage, MessageType } from '../src/internal.js'
import { forge } from './forge-helpers.js'
import { closedAfterEach, memoryReplica, recordingLogger, waitFor, BACKENDS } from './helpers.js'

const divergent = (r: Replica, peer: string): number | undefined => r.stats().peers[peer]?.divergentEntities
const said = (log: ReturnType<typeof recordingLogger>): string[] => log.lines.map((l) => l.message).filter((m) => m.includes('neither side lacks'))

/**
 * `inner`, except that while `hold` is set gossip is held back, and delivered right after this
 * node answered a leaves request (before the answer leaves): the answer is a version hash from
 * before the push, the exchange that follows sees the push taken.
 */
function holdingUntilLeaves(inner: Network, applied: () => Promise<boolean>): Network & { hold: boolean } {
  const held: [string, Uint8Array, string][] = []
  const net = Object.create(inner) as Network & { hold: boolean }
  net.hold = false
  net.start = (events: NetworkEvents) =>
    inner.start({
      ...events,
      onMessage: (topic, data, from) => (net.hold ? held.push([topic, data, from]) : events.onMessage(topic, data, from)),
      onRequest: async (from, data) => {
        const answer = await events.onRequest(from, data)
        if (decodeMessage(data, 1 << 20).type === MessageType.LeavesRequest && held.length > 0) {
          net.hold = false
          for (const [topic, bytes, sender] of held.splice(0)) events.onMessage(topic, bytes, sender)
          await waitFor(applied, 'the held push taken')
        }
        return answer
      },
    })
  return net
}

describe('divergent entities (same operations, different content)', function () {
  this.timeout(60_000)
  const opened = closedAfterEach()

  for (const backend of BACKENDS) {
    it(`${backend}: the replica's own write reaching the peer between the leaves and the exchange of its round is no divergence`, async () => {
      const hub = new LoopbackHub()
      let a: Replica | undefined
      const netA = holdingUntilLeaves(hub.createNetwork('a'), async () => (await a!.collection('notes').get('n1'))?.text === 'two')
      a = await memoryReplica({ network: netA, syncOnConnect: false })
      const logB = recordingLogger()
      const b = await memoryReplica({ network: hub.createNetwork('b'), syncOnConnect: false, logger: logB })
      opened.replicas.push(a, b)
      const onB = b.collection('notes', { backend })
      await onB.put('n1', { text: 'one' })
      await waitFor(async () => (await a.collection('notes').get('n1'))?.text === 'one', 'one at a')
      netA.hold = true
      await onB.put('n1', { text: 'two' })
      await b.sync()
      expect(netA.hold, 'a answered a leaves request (then took the push)').to.equal(false)
      expect(divergent(b, 'a')).to.equal(0)
      expect(said(logB)).to.deep.equal([])
    })
  }

  it('yjs: a forged update — the same operations (client, clock) with other content — is reported, round after round', async () => {
    const hub = new LoopbackHub({ connectOnStart: false })
    const a = await memoryReplica({ network: hub.createNetwork('a'), syncOnConnect: false })
    const logB = recordingLogger()
    const b = await memoryReplica({ network: hub.createNetwork('b'), syncOnConnect: false, logger: logB })
    opened.replicas.push(a, b)
    await forge(a, b, 'n1')
    hub.connect('a', 'b')
    await waitFor(() => b.peers().includes('a'), 'linked')
    for (const round of [1, 2]) {
      await b.sync()
      expect(divergent(b, 'a'), `round ${round}`).to.equal(1)
      expect(said(logB), `round ${round}`).to.have.length(round)
    }
    expect(await a.collection('notes').get('n1')).to.deep.equal({ text: 'MARKER-AAAA-n1' })
  })
})
