import { expect } from 'chai'
import fc from 'fast-check'
import { LoopbackHub, Replica } from '../src/index.js'
import { encodeMessage, MessageType, topicOf } from '../src/internal.js'
import { BACKENDS, dump, memoryReplica, recordingLogger, startRawPeer, waitFor } from './helpers.js'
import { expectUntouchedAndServing, GARBAGE_CASES, GARBAGE_LIMIT } from '../src/testing/index.js'

/** Replication through the in-process loopback network: push, anti-entropy, partitions, bad input. */
describe('Replication over the loopback network', () => {
  let hub: LoopbackHub
  let replicas: Replica[]

  async function cluster(n: number, opts: Parameters<typeof memoryReplica>[0] = {}): Promise<Replica[]> {
    hub = new LoopbackHub()
    replicas = []
    for (let i = 0; i < n; i++) replicas.push(await memoryReplica({ network: hub.createNetwork(`peer-${i}`), ...opts }))
    return replicas
  }

  afterEach(async () => {
    await Promise.all((replicas ?? []).map((r) => r.close()))
    replicas = []
  })

  for (const backend of BACKENDS) {
    it(`${backend}: a put on one replica reaches the other by push`, async () => {
      const [a, b] = await cluster(2)
      const seen: unknown[] = []
      // b has not opened the collection: the first delta creates it with the sender's backend
      await a!.collection('products', { backend }).put('sku-1', { name: 'Mug', price: 12 })
      await waitFor(async () => (await b!.collection('products').get('sku-1')) !== undefined, 'b receives sku-1')
      expect(b!.collection('products').backend).to.equal(backend)
      b!.collection('products').subscribe((e) => seen.push({ id: e.id, origin: e.origin, peer: e.peer, value: e.value }))
      await a!.collection('products').update('sku-1', (p) => void (p.price = 13))
      // get() can see sku-1 just before its own event is emitted: wait for the update's event.
      await waitFor(() => seen.some((e) => (e as { value?: { price?: number } }).value?.price === 13), 'remote event')
      expect(seen[seen.length - 1]).to.deep.equal({ id: 'sku-1', origin: 'remote', peer: 'peer-0', value: { name: 'Mug', price: 13 } })
    })

    it(`${backend}: a late joiner catches up by anti-entropy, including collections it never opened`, async () => {
      hub = new LoopbackHub({ connectOnStart: false })
      replicas = [await memoryReplica({ network: hub.createNetwork('a') })]
      const a = replicas[0]!
      for (let i = 0; i < 300; i++) await a.collection('items', { backend }).put(`i${i}`, { i, label: `item ${i}` })
      await a.collection('other', { backend }).put('x', { y: 1 })
      replicas.push(await memoryReplica({ network: hub.createNetwork('b') }))
      const b = replicas[1]!
      hub.connect('a', 'b')
      await waitFor(() => b.peers().includes('a'), 'connected')
      await b.sync()
      expect(await dump(b, 'items')).to.deep.equal(await dump(a, 'items'))
      expect(await b.collection('other').get('x')).to.deep.equal({ y: 1 })
      // In sync now: a round is one small request per peer.
      const [round] = await b.sync()
      expect(round!.messages).to.equal(1)
      expect(round!.bytesSent + round!.bytesReceived).to.be.below(400)
    })

    it(`${backend}: partition → concurrent writes on both sides → heal → equal everywhere, nothing lost`, async () => {
      const rs = await cluster(4)
      const ids = rs.map((r) => r.peerId)
      const cols = rs.map((r) => r.collection<Record<string, unknown>>('stock', { backend }))
      await cols[0]!.put('shared', { base: 1 })
      await waitFor(async () => (await Promise.all(cols.map((c) => c.get('shared')))).every((v) => v !== undefined), 'shared everywhere')

      hub.partition(ids.slice(0, 2), ids.slice(2))
      const acked: [string, Record<string, unknown>][] = []
      for (let i = 0; i < 4; i++) {
        await cols[i]!.update('shared', (v) => void (v[`side${i}`] = i)) // same entity, different fields
        for (let k = 0; k < 10; k++) {
          const value = { by: i, k }
          await cols[i]!.put(`n${i}-${k}`, value) // different entities
          acked.push([`n${i}-${k}`, value])
        }
      }
      hub.heal()
      for (const r of rs) await r.sync()
      for (const r of rs) await r.sync()
      const states = await Promise.all(rs.map((r) => dump(r, 'stock')))
      for (const s of states) expect(s).to.deep.equal(states[0])
      expect(states[0]!.shared).to.deep.equal({ base: 1, side0: 0, side1: 1, side2: 2, side3: 3 })
      for (const [id, value] of acked) expect(states[0]![id]).to.deep.equal(value)
    })
  }

  it('delete against a concurrent update: the delete wins on every replica', async () => {
    const [a, b] = await cluster(2)
    for (const backend of BACKENDS) {
      const ca = a!.collection(`d-${backend}`, { backend })
      const cb = b!.collection(`d-${backend}`, { backend })
      await ca.put('e', { v: 1 })
      await waitFor(async () => (await cb.get('e')) !== undefined, 'replicated')
      hub.partition([a!.peerId], [b!.peerId])
      await ca.delete('e')
      await cb.update('e', (x) => void (x.v = 2))
      hub.heal()
      await a!.sync()
      expect(await ca.get('e')).to.equal(undefined)
      expect(await cb.get('e')).to.equal(undefined)
    }
  })

  it('property: any interleaving of writes, partitions and heals converges (fast-check)', async function () {
    this.timeout(120_000)
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({
              kind: fc.constant('write' as const),
              node: fc.nat(2),
              id: fc.constantFrom('a', 'b', 'c'),
              field: fc.constantFrom('x', 'y'),
              value: fc.integer(),
            }),
            fc.record({ kind: fc.constant('delete' as const), node: fc.nat(2), id: fc.constantFrom('a', 'b', 'c') }),
            fc.record({ kind: fc.constant('split' as const), node: fc.nat(2) }),
            fc.record({ kind: fc.constant('heal' as const) }),
          ),
          { maxLength: 25 },
        ),
        fc.constantFrom(...BACKENDS),
        async (steps, backend) => {
          const rs = await cluster(3)
          const cols = rs.map((r) => r.collection<Record<string, unknown>>('p', { backend }))
          for (const s of steps) {
            if (s.kind === 'write') {
              const cur = (await cols[s.node]!.get(s.id)) ?? {}
              await cols[s.node]!.put(s.id, { ...cur, [s.field]: s.value })
            } else if (s.kind === 'delete') await cols[s.node]!.delete(s.id)
            else if (s.kind === 'split')
              hub.partition(
                [rs[s.node]!.peerId],
                rs.filter((_, i) => i !== s.node).map((r) => r.peerId),
              )
            else hub.heal()
          }
          hub.heal()
          for (const r of rs) await r.sync()
          for (const r of rs) await r.sync()
          const states = await Promise.all(rs.map((r) => dump(r, 'p')))
          expect(states[1]).to.deep.equal(states[0])
          expect(states[2]).to.deep.equal(states[0])
          await Promise.all(rs.map((r) => r.close()))
          replicas = []
        },
      ),
      { numRuns: 25 },
    )
  })

  describe('bad input is dropped, counted per peer and logged; the store is unchanged', () => {
    for (const [what, make, reason] of GARBAGE_CASES) {
      it(what, async () => {
        const logger = recordingLogger()
        hub = new LoopbackHub()
        const evil = hub.createNetwork('evil')
        replicas = [await memoryReplica({ network: hub.createNetwork('good'), logger, limits: { maxMessageBytes: GARBAGE_LIMIT } })]
        const good = replicas[0]!
        const col = good.collection('p', { backend: 'yjs' })
        await col.put('k', { v: 1 })
        await startRawPeer(evil, good, [topicOf('default', 'p')])
        await evil.publish(topicOf('default', 'p'), make())
        await waitFor(() => good.stats().droppedTotal > 0, 'drop counted')
        const stats = good.stats().peers.evil!
        expect(stats.dropped[reason as keyof typeof stats.dropped]).to.equal(1)
        expect(logger.lines.some((l) => l.message.includes('evil'))).to.equal(true)
        await expectUntouchedAndServing(col)
        await evil.stop()
      })
    }

    it('garbage on the sync protocol gets an Error reply and is counted', async () => {
      hub = new LoopbackHub()
      const evil = hub.createNetwork('evil')
      replicas = [await memoryReplica({ network: hub.createNetwork('good') })]
      const good = replicas[0]!
      await startRawPeer(evil, good)
      for (const junk of [
        new Uint8Array([9, 9, 9, 9]),
        encodeMessage(MessageType.NodesRequest, { c: 'p', l: 7, n: [1] }),
        encodeMessage(MessageType.ExchangeRequest, { c: 'p' }),
      ]) {
        const reply = await evil.request('good', junk)
        expect(reply[2]).to.equal(MessageType.Error)
      }
      expect(good.stats().peers.evil!.dropped.malformed).to.equal(3)
      await evil.stop()
    })
  })

  it('a per-peer inbound rate bound drops floods', async () => {
    hub = new LoopbackHub()
    const evil = hub.createNetwork('evil')
    replicas = [await memoryReplica({ network: hub.createNetwork('good'), limits: { inboundRatePerSecond: 10, inboundBurst: 10 } })]
    const good = replicas[0]!
    good.collection('p', { backend: 'yjs' })
    await startRawPeer(evil, good, [topicOf('default', 'p')])
    for (let i = 0; i < 50; i++) await evil.publish(topicOf('default', 'p'), encodeMessage(MessageType.Push, { c: 'p', b: 'yjs', o: 'evil', s: i, e: [] }))
    await waitFor(() => (good.stats().peers.evil?.messagesIn ?? 0) >= 50, 'all seen')
    expect(good.stats().peers.evil!.dropped.rateLimited).to.be.within(35, 40)
    await evil.stop()
  })
})
