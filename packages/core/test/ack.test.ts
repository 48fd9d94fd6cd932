import { expect } from 'chai'
import { memoryLevelStore } from '@convergent/level'
import { AckTimeoutError, LoopbackHub, MAX_ACK_TIMEOUT_MS, Replica, type Store } from '../src/index.js'
import { decodeHoldsResponse, decodeMessage, encodeHoldsRequest, encodeMessage, MessageType } from '../src/internal.js'
import { BACKENDS, hostile, memoryReplica, rejectsWith, startRawPeer, waitFor } from './helpers.js'

/** put/update/delete with { ack }: the write resolves once enough peers hold it durably. */
describe('Write acknowledgements (ack) over the loopback network', () => {
  let hub: LoopbackHub
  let replicas: Replica[] = []
  let stores: Store[] = []

  /** Replicas peer-0… with their stores kept, so a test can read what a peer holds on disk. */
  async function cluster(n: number, opts: Parameters<typeof memoryReplica>[0] = {}): Promise<Replica[]> {
    hub = new LoopbackHub()
    for (let i = 0; i < n; i++) await add(`peer-${i}`, opts)
    return replicas
  }

  async function add(id: string, opts: Parameters<typeof memoryReplica>[0] = {}): Promise<Replica> {
    const store = memoryLevelStore()
    const replica = await memoryReplica({ network: hub.createNetwork(id), store, ...opts })
    replicas.push(replica)
    stores.push(store)
    return replica
  }

  async function connected(rs: Replica[]): Promise<void> {
    for (const r of rs) await waitFor(() => r.peers().length === rs.length - 1, 'all connected')
  }

  afterEach(async () => {
    await Promise.all(replicas.map((r) => r.close()))
    replicas = []
    stores = []
  })

  for (const backend of BACKENDS) {
    it(`${backend}: put, update and delete with ack resolve once the peers hold the change on disk`, async () => {
      const [a, b, c] = await cluster(3)
      await connected([a!, b!, c!])
      const orders = a!.collection('orders', { backend })
      await orders.put('o-1', { total: 10 }, { ack: { peers: 2, timeoutMs: 10_000 } })
      // Durable on both peers when the put resolves: in their stores, not only in memory.
      for (const store of stores.slice(1)) expect((await store.readEntity('orders', 'o-1'))?.head.backend).to.equal(backend)
      expect(await b!.collection('orders').get('o-1')).to.deep.equal({ total: 10 })

      const updated = await orders.update('o-1', (o) => void (o.total = 11), { ack: { peers: 2, timeoutMs: 10_000 } })
      expect(updated).to.deep.equal({ total: 11 })
      expect(await b!.collection('orders').get('o-1')).to.deep.equal({ total: 11 })
      expect(await c!.collection('orders').get('o-1')).to.deep.equal({ total: 11 })

      // A delete does not move a Yjs state vector: the peers must hold the delete itself.
      await orders.delete('o-1', { ack: { peers: 2, timeoutMs: 10_000 } })
      expect(await b!.collection('orders').get('o-1')).to.equal(undefined)
      expect(await c!.collection('orders').get('o-1')).to.equal(undefined)
    })

    it(`${backend}: too few peers → ERR_ACK_TIMEOUT naming how many confirmed; the local write stays and keeps replicating`, async () => {
      const [a, b] = await cluster(2)
      await connected([a!, b!])
      const orders = a!.collection('orders', { backend })
      const err = await orders.put('o-1', { total: 10 }, { ack: { peers: 2, timeoutMs: 300 } }).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err).to.be.instanceOf(AckTimeoutError)
      const timeout = err as AckTimeoutError
      expect(timeout.code).to.equal('ERR_ACK_TIMEOUT')
      expect(timeout.message).to.match(/1 of 2 peer\(s\) confirmed/)
      expect(timeout.message).to.match(/local write is durable/)
      // peer-1 confirmed, once, however often it was asked.
      expect(timeout.confirmed).to.deep.equal(['peer-1'])
      expect(await orders.get('o-1')).to.deep.equal({ total: 10 })
      expect((await stores[0]!.readEntity('orders', 'o-1'))?.head.backend).to.equal(backend)
      // A peer that joins later still receives it.
      const c = await add('peer-2')
      await waitFor(async () => (await c.collection('orders').get('o-1')) !== undefined, 'the late peer receives o-1')
    })

    it(`${backend}: a peer cut off when the write is made confirms once the partition heals (no sync on connect: the writer sends what it lacks)`, async () => {
      const [a, b, c] = await cluster(3, { syncOnConnect: false })
      await connected([a!, b!, c!])
      hub.partition(['peer-0'], ['peer-1', 'peer-2'])
      await waitFor(() => a!.peers().length === 0, 'a cut off')
      let settled = false
      const write = a!
        .collection('orders', { backend })
        .put('o-1', { total: 10 }, { ack: { peers: 2, timeoutMs: 30_000 } })
        .finally(() => (settled = true))
      await waitFor(async () => (await a!.collection('orders').get('o-1')) !== undefined, 'local write')
      expect(settled).to.equal(false)
      expect(await b!.collection('orders').get('o-1')).to.equal(undefined)
      hub.heal()
      await write
      expect(await b!.collection('orders').get('o-1')).to.deep.equal({ total: 10 })
      expect(await c!.collection('orders').get('o-1')).to.deep.equal({ total: 10 })
    })
  }

  it('invalid ack options are ERR_INVALID_ARGUMENT, and nothing is written', async () => {
    const [a] = await cluster(1)
    const orders = a!.collection('orders')
    const bad: unknown[] = [
      'yes',
      null,
      { ack: null },
      { ack: 2 },
      { ack: { timeoutMs: 1000 } },
      { ack: { peers: 0, timeoutMs: 1000 } },
      { ack: { peers: -1, timeoutMs: 1000 } },
      { ack: { peers: 1.5, timeoutMs: 1000 } },
      { ack: { peers: '2', timeoutMs: 1000 } },
      { ack: { peers: 1 } },
      { ack: { peers: 1, timeoutMs: 0 } },
      { ack: { peers: 1, timeoutMs: -5 } },
      { ack: { peers: 1, timeoutMs: Number.NaN } },
      { ack: { peers: 1, timeoutMs: Infinity } },
      { ack: { peers: 1, timeoutMs: MAX_ACK_TIMEOUT_MS + 1 } },
    ]
    for (const options of bad) {
      await rejectsWith(orders.put('o-1', { total: 1 }, options as never), 'ERR_INVALID_ARGUMENT')
      await rejectsWith(orders.delete('o-1', options as never), 'ERR_INVALID_ARGUMENT')
      // update's options also hold `upsert`: only the ack part is checked there.
      if (typeof options === 'object' && options !== null) {
        await rejectsWith(
          orders.update('o-1', () => ({ total: 2 }), { upsert: true, ...options }),
          'ERR_INVALID_ARGUMENT',
        )
      }
    }
    expect(await orders.get('o-1')).to.equal(undefined)
    // Without a network no peer can ever confirm: refused before writing too.
    const alone = await memoryReplica()
    try {
      await rejectsWith(alone.collection('orders').put('o-1', { total: 1 }, { ack: { peers: 1, timeoutMs: 1000 } }), 'ERR_INVALID_ARGUMENT')
      expect(await alone.collection('orders').get('o-1')).to.equal(undefined)
    } finally {
      await alone.close()
    }
  })

  it('close() ends a wait for acknowledgements at once with ERR_CLOSED; the write is durable', async () => {
    const [a] = await cluster(1)
    const write = a!.collection('orders').put('o-1', { total: 1 }, { ack: { peers: 1, timeoutMs: MAX_ACK_TIMEOUT_MS } })
    await waitFor(async () => (await a!.collection('orders').get('o-1')) !== undefined, 'local write')
    await a!.close()
    const err = await rejectsWith(write, 'ERR_CLOSED')
    expect(err.message).to.match(/local write is durable/)
  })

  it('a peer answering a holds query with garbage is counted as a drop and never confirms', async () => {
    const [a] = await cluster(1)
    const liar = await hostile(hub, 'liar', () => encodeMessage(MessageType.HoldsResponse, { h: 5 }))
    try {
      await waitFor(() => a!.peers().includes('liar'), 'connected')
      const err = await rejectsWith(a!.collection('orders').put('o-1', { total: 1 }, { ack: { peers: 1, timeoutMs: 200 } }), 'ERR_ACK_TIMEOUT')
      expect(err.message).to.match(/0 of 1 peer/)
      expect(a!.stats().peers.liar?.dropped.malformed).to.be.greaterThan(0)
    } finally {
      await liar.stop()
    }
  })

  describe('the holds query a peer answers (untrusted input)', () => {
    async function ask(b: Replica, raw: ReturnType<LoopbackHub['createNetwork']>, data: Uint8Array): Promise<{ type: number; body: unknown }> {
      return decodeMessage(await raw.request(b.peerId, data), 4 * 1024 * 1024)
    }

    it('an unknown collection, backend or entity is "not held", and a query never creates a collection', async () => {
      const [b] = await cluster(1)
      await b!.collection('orders', { backend: 'yjs' }).put('o-1', { total: 1 })
      const raw = hub.createNetwork('raw')
      await startRawPeer(raw, b!)
      for (const [collection, backend, id] of [
        ['nope', 'yjs', 'o-1'],
        ['orders', 'automerge', 'o-1'],
        ['orders', 'yjs', 'o-2'],
      ] as const) {
        const reply = await ask(b!, raw, encodeHoldsRequest({ collection, backend, id, version: new Uint8Array([1, 0, 1, 7, 1]) }))
        expect(reply.type).to.equal(MessageType.HoldsResponse)
        expect(decodeHoldsResponse(reply.body).held).to.equal(false)
      }
      expect(b!.collections()).to.deep.equal(['orders'])
      // The empty version is held by anyone.
      const empty = await ask(b!, raw, encodeHoldsRequest({ collection: 'orders', backend: 'yjs', id: 'o-1', version: new Uint8Array(0) }))
      expect(decodeHoldsResponse(empty.body).held).to.equal(true)
      await raw.stop()
    })

    it('malformed queries and undecodable versions are counted as drops against the peer', async () => {
      const [b] = await cluster(1)
      await b!.collection('orders', { backend: 'automerge' }).put('o-1', { total: 1 })
      const raw = hub.createNetwork('raw')
      await startRawPeer(raw, b!)
      const malformed = (): number => b!.stats().droppedByReason.malformed
      const before = malformed()
      const shapeless = await ask(b!, raw, encodeMessage(MessageType.HoldsRequest, { c: 'orders', i: 7 }))
      expect(shapeless.type).to.equal(MessageType.Error)
      expect(malformed()).to.equal(before + 1)
      const huge = await ask(b!, raw, encodeHoldsRequest({ collection: 'orders', backend: 'automerge', id: 'o-1', version: new Uint8Array(1024 * 1024 + 1) }))
      expect(huge.type).to.equal(MessageType.Error)
      expect(malformed()).to.equal(before + 2)
      // Not a whole number of Automerge heads: not held, and counted.
      const garbage = await ask(b!, raw, encodeHoldsRequest({ collection: 'orders', backend: 'automerge', id: 'o-1', version: new Uint8Array(5) }))
      expect(decodeHoldsResponse(garbage.body).held).to.equal(false)
      expect(malformed()).to.equal(before + 3)
      expect(b!.stats().peers.raw?.dropped.malformed).to.equal(3)
      await raw.stop()
    })
  })
})
