// The receive path (replication/apply.ts): what a delta from a peer may and may not change.
import { expect } from 'chai'
import { ConvergentError, LoopbackHub, Replica, silentLogger, toHex, type Backend, type JsonObject, type Network } from '../src/index.js'
import { encodeMessage, MessageType, topicOf } from '../src/internal.js'
import * as Y from 'yjs'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { classicLevelStore } from '@convergent/level'
import { BACKENDS, closedAfterEach, dump, hostile, memoryReplica, rejectsWith, startRawPeer, tempDir, waitFor } from './helpers.js'

/** A delta of `value` for a new entity, made by a throwaway document of the backend. */
function deltaOf(backend: Backend, value: JsonObject): Uint8Array {
  return backend.put(backend.create(new Uint8Array(16).fill(9)), value).delta as Uint8Array
}

/**
 * A backend that applies a delta in full and THEN throws for the deltas it was told to
 * poison: a delta that fails half-way through (Yjs applies in place, so what came before
 * the failure would stay in the document).
 */
function poisoning<D>(inner: Backend<D>): Backend<D> & { poison: Set<string> } {
  const poison = new Set<string>()
  return Object.assign(Object.create(inner) as Backend<D>, {
    poison,
    applyDelta(doc: D, delta: Uint8Array, limits?: { maxDecodedBytes: number }): D {
      const next = inner.applyDelta(doc, delta, limits)
      if (poison.has(toHex(delta))) throw new ConvergentError('ERR_INVALID_DELTA', 'poisoned: failed after applying part of the delta')
      return next
    },
  })
}

/** An object with `depth` objects nested below it: { n: { n: … {} } }. */
function nested(depth: number): JsonObject {
  let value: JsonObject = {}
  for (let i = 0; i < depth; i++) value = { n: value }
  return value
}

function push(collection: string, backend: string, entries: [string, Uint8Array][]): Uint8Array {
  return encodeMessage(MessageType.Push, { c: collection, b: backend, o: 'evil', s: 1, e: entries })
}

async function feedLength(r: Replica, collection: string): Promise<number> {
  let n = 0
  for await (const _ of r.collection(collection).changes()) n++
  return n
}

describe('apply: a delta from a peer', function () {
  this.timeout(30_000)
  const { replicas, nets: raws } = closedAfterEach()

  async function victimWithEvil(options: Parameters<typeof memoryReplica>[0] = {}): Promise<{ hub: LoopbackHub; victim: Replica; evil: Network }> {
    const hub = new LoopbackHub()
    const victim = await memoryReplica({ network: hub.createNetwork('victim'), ...options })
    const evil = hub.createNetwork('evil')
    replicas.push(victim)
    raws.push(evil)
    await startRawPeer(evil, victim)
    return { hub, victim, evil }
  }

  for (const name of BACKENDS) {
    it(`${name}: one that fails half-way leaves no trace in the document, the digest, the store or what peers get`, async () => {
      const inner = (name === 'yjs' ? yjsBackend() : automergeBackend()) as Backend
      const backend = poisoning(inner)
      const hub = new LoopbackHub({ connectOnStart: false })
      const victim = await memoryReplica({ network: hub.createNetwork('victim'), backends: [backend] })
      const honest = await memoryReplica({ network: hub.createNetwork('honest') })
      const evil = hub.createNetwork('evil')
      replicas.push(victim, honest)
      raws.push(evil)
      const col = victim.collection('p', { backend: name })
      await evil.start({ onMessage: () => {}, onRequest: async () => new Uint8Array(), onPeerConnected: () => {}, onPeerDisconnected: () => {} })
      hub.connect('evil', 'victim')
      await waitFor(() => victim.peers().includes('evil'), 'connected')
      // A valid change first, then one built on it that fails after applying.
      const theirs = inner.create(new Uint8Array(16).fill(3))
      const first = inner.put(theirs, { v: 1 })
      const evilDelta = inner.put(first.doc, { v: 1, evil: 'marker' }).delta!
      backend.poison.add(toHex(evilDelta))
      await evil.publish(topicOf('default', 'p'), push('p', name, [['k', first.delta!]]))
      await waitFor(async () => (await col.get('k'))?.v === 1, 'the valid change applied')
      await evil.publish(topicOf('default', 'p'), push('p', name, [['k', evilDelta]]))
      await waitFor(() => victim.stats().peers.evil?.dropped.invalidDelta === 1, 'dropped')
      expect(await col.get('k')).to.deep.equal({ v: 1 })
      expect(await feedLength(victim, 'p')).to.equal(1)
      // The victim's next write builds on its own state, not on the poisoned one …
      await col.update('k', (d) => void (d.w = 2))
      expect(await col.get('k')).to.deep.equal({ v: 1, w: 2 })
      // … and an honest peer that syncs with it gets no trace of it.
      hub.connect('honest', 'victim')
      await waitFor(() => honest.peers().includes('victim'), 'honest connected')
      await honest.sync()
      expect(await dump(honest, 'p')).to.deep.equal({ k: { v: 1, w: 2 } })
      const [round] = await honest.sync()
      expect(round!.collectionsDiffering).to.equal(0)
    })
  }

  it('yjs: a forged delta that Yjs integrates in part before refusing leaves no trace (the real backend)', async () => {
    const { victim, evil } = await victimWithEvil()
    const col = victim.collection('p', { backend: 'yjs' })
    await col.put('k', { v: 1 })
    // One client's structs: the delete flag, a field 'a', a field 'k', then a multi-value map
    // entry taking its key from 'k' — refused only once Yjs has integrated the ones before it.
    await evil.publish(topicOf('default', 'p'), push('p', 'yjs', [['forged', forgedYjsDelta()]]))
    await waitFor(() => victim.stats().peers.evil?.dropped.invalidDelta === 1, 'dropped')
    expect(await col.get('forged')).to.equal(undefined)
    expect(await feedLength(victim, 'p')).to.equal(1)
    await col.put('forged', { mine: true }) // a later write of the entity carries no trace either
    expect(await col.get('forged')).to.deep.equal({ mine: true })
  })

  it('is refused when it builds a value over maxMergedValueBytes, and changes nothing', async () => {
    const { victim, evil } = await victimWithEvil({ limits: { maxValueBytes: 1024, maxMergedValueBytes: 2048 } })
    const col = victim.collection('p', { backend: 'yjs' })
    await col.put('k', { v: 1 })
    await evil.publish(topicOf('default', 'p'), push('p', 'yjs', [['big', deltaOf(yjsBackend(), { s: 'x'.repeat(4096) })]]))
    await waitFor(() => victim.stats().peers.evil?.dropped.tooLarge === 1, 'dropped as too large')
    expect(await col.get('big')).to.equal(undefined)
    expect(await feedLength(victim, 'p')).to.equal(1)
  })

  for (const name of BACKENDS) {
    it(`${name}: is refused when it nests deeper than maxDepth (a local write of the same value is refused too), and changes nothing`, async () => {
      const maxDepth = 8
      const { victim, evil } = await victimWithEvil({ limits: { maxDepth } })
      const col = victim.collection('p', { backend: name })
      await col.put('k', { v: 1 })
      const deepest = nested(maxDepth - 1) // the deepest value a local write may make here
      await col.put('ok', deepest)
      await rejectsWith(col.put('no', nested(maxDepth)), 'ERR_INVALID_VALUE')
      const backend = name === 'yjs' ? yjsBackend() : automergeBackend()
      await evil.publish(topicOf('default', 'p'), push('p', name, [['deep', deltaOf(backend, nested(maxDepth))]]))
      await waitFor(() => victim.stats().peers.evil?.dropped.invalidDelta === 1, 'dropped as too deep')
      await evil.publish(topicOf('default', 'p'), push('p', name, [['fine', deltaOf(backend, deepest)]]))
      await waitFor(async () => (await col.get('fine')) !== undefined, 'the deepest allowed value arrives')
      expect(await col.get('deep')).to.equal(undefined)
      expect(await col.get('fine')).to.deep.equal(deepest)
      await waitFor(async () => (await feedLength(victim, 'p')) === 3, 'the change feed holds k, ok and fine') // (the feed lists what is on disk)
      const feed = []
      for await (const e of victim.collection('p').changes()) feed.push(e.id)
      expect(feed).to.deep.equal(['k', 'ok', 'fine'])
    })
  }

  it('creates a collection only once one of its deltas applied cleanly', async () => {
    const { victim, evil } = await victimWithEvil()
    await evil.request('victim', encodeMessage(MessageType.DeltasRequest, { c: 'new', b: 'yjs', e: [['k', new Uint8Array([0, 9, 9, 9, 200, 1, 7])]] }))
    expect(victim.collections()).to.not.include('new')
    await evil.request('victim', encodeMessage(MessageType.DeltasRequest, { c: 'new', b: 'yjs', e: [['k', deltaOf(yjsBackend(), { v: 1 })]] }))
    expect(victim.collections()).to.include('new')
    expect(await victim.collection('new').get('k')).to.deep.equal({ v: 1 })
  })

  it('never creates more than maxCollections collections for peers', async () => {
    const { victim, evil } = await victimWithEvil({ limits: { maxCollections: 3 } })
    await victim.collection('mine', { backend: 'yjs' }).put('k', { v: 1 })
    for (let i = 0; i < 5; i++) {
      await evil.request('victim', encodeMessage(MessageType.DeltasRequest, { c: `spam-${i}`, b: 'yjs', e: [['k', deltaOf(yjsBackend(), { i })]] }))
    }
    expect(victim.collections().sort()).to.deep.equal(['mine', 'spam-0', 'spam-1'])
    expect(victim.stats().peers.evil!.dropped.collectionLimit).to.equal(3)
    // The application's own collections are not limited.
    await victim.collection('mine-too').put('k', { v: 1 })
    expect(victim.collections()).to.include('mine-too')
  })

  it("does not let a dropped delta switch a collection's default backend", async () => {
    const hub = new LoopbackHub()
    const victim = await memoryReplica({ network: hub.createNetwork('victim') })
    const honest = await memoryReplica({ network: hub.createNetwork('honest') })
    const evil = hub.createNetwork('evil')
    replicas.push(victim, honest)
    raws.push(evil)
    await startRawPeer(evil, victim)
    const col = victim.collection('c') // no backend: the default (yjs), tentative
    await evil.request(
      'victim',
      encodeMessage(MessageType.DeltasRequest, {
        c: 'c',
        b: 'automerge',
        e: [['k', new Uint8Array([0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 1, 5, 1, 2, 3, 4, 5])]],
      }),
    )
    expect(victim.stats().peers.evil!.dropped.invalidDelta).to.equal(1)
    expect(col.backend).to.equal('yjs')
    await col.put('k', { v: 1 })
    await waitFor(async () => (await honest.collection('c', { backend: 'yjs' }).get('k'))?.v === 1, 'the yjs peer gets the write')
  })

  it('is refused for a collection this replica dropped, until the application opens it again', async () => {
    const { victim, evil } = await victimWithEvil()
    await evil.request('victim', encodeMessage(MessageType.DeltasRequest, { c: 'junk', b: 'yjs', e: [['k', deltaOf(yjsBackend(), { v: 1 })]] }))
    expect(victim.collections()).to.include('junk')
    await victim.dropCollection('junk')
    expect(victim.collections()).to.not.include('junk')
    await evil.request('victim', encodeMessage(MessageType.DeltasRequest, { c: 'junk', b: 'yjs', e: [['k', deltaOf(yjsBackend(), { v: 2 })]] }))
    expect(victim.collections()).to.not.include('junk')
    expect(victim.stats().peers.evil!.dropped.collectionDropped).to.equal(1)
    const junk = victim.collection('junk') // the application wants it again
    expect(await junk.get('k')).to.equal(undefined) // its old content is gone
    await evil.request('victim', encodeMessage(MessageType.DeltasRequest, { c: 'junk', b: 'yjs', e: [['k', deltaOf(yjsBackend(), { v: 3 })]] }))
    expect(await junk.get('k')).to.deep.equal({ v: 3 })
  })

  it('keeps a dropped collection refused across a restart', async () => {
    const { dir, cleanup } = await tempDir()
    try {
      let r = await Replica.open({ store: classicLevelStore(dir), backends: [yjsBackend()], logger: silentLogger })
      await r.collection('junk').put('k', { v: 1 })
      await r.dropCollection('junk')
      await r.close()
      const hub = new LoopbackHub()
      r = await Replica.open({ store: classicLevelStore(dir), backends: [yjsBackend()], logger: silentLogger, network: hub.createNetwork('victim') })
      replicas.push(r)
      expect(r.collections()).to.not.include('junk')
      const evil = hub.createNetwork('evil')
      raws.push(evil)
      await startRawPeer(evil, r)
      await evil.request('victim', encodeMessage(MessageType.DeltasRequest, { c: 'junk', b: 'yjs', e: [['k', deltaOf(yjsBackend(), { v: 2 })]] }))
      expect(r.collections()).to.not.include('junk')
      await r.close()
    } finally {
      await cleanup()
    }
  })

  it('a peer does not send a collection this replica dropped round after round (it says which it refuses)', async () => {
    const hub = new LoopbackHub({ connectOnStart: false })
    const a = await memoryReplica({ network: hub.createNetwork('a') })
    const b = await memoryReplica({ network: hub.createNetwork('b') })
    replicas.push(a, b)
    for (let i = 0; i < 20; i++) await a.collection('junk').put(`k${i}`, { i })
    await a.collection('kept').put('x', { v: 1 })
    hub.connect('a', 'b')
    await waitFor(() => a.peers().includes('b'), 'connected')
    await a.sync()
    expect(await dump(b, 'junk')).to.have.keys(Array.from({ length: 20 }, (_, i) => `k${i}`))
    await b.dropCollection('junk')
    for (let round = 0; round < 3; round++) {
      const [result] = await a.sync()
      expect(result!.deltasSent).to.equal(0)
    }
    expect(b.stats().peers.a?.dropped.collectionDropped ?? 0).to.equal(0)
    expect(b.collections()).to.not.include('junk')
    // Everything else still flows.
    await a.collection('kept').put('y', { v: 2 })
    await a.sync()
    expect(await dump(b, 'kept')).to.deep.equal({ x: { v: 1 }, y: { v: 2 } })
  })

  it('a refused-names list over its bound, or of non-names, fails that round with that peer (counted), and names only skip what the peer does not hold', async () => {
    const hub = new LoopbackHub()
    let refused: unknown = []
    const evil = await hostile(hub, 'evil', (type) => {
      if (type === MessageType.RootsRequest)
        return encodeMessage(MessageType.RootsResponse, { r: [['kept', 'yjs', new Uint8Array(32).fill(1)]], f: 1, x: refused })
      return encodeMessage(MessageType.Error, { m: 'no' })
    })
    raws.push(evil)
    const victim = await memoryReplica({ network: hub.createNetwork('victim'), syncOnConnect: false })
    replicas.push(victim)
    await victim.collection('kept').put('k', { v: 1 })
    await waitFor(() => victim.peers().includes('evil'), 'connected')
    for (const bad of [Array.from({ length: 1001 }, (_, i) => `n${i}`), [1, 2], 'x'.repeat(10)]) {
      refused = bad
      await rejectsWith(victim.sync(), 'ERR_NETWORK') // its only peer's round failed
    }
    expect(victim.stats().peers.evil!.syncFailures).to.equal(3)
    // Listing a collection it also holds does not make the victim skip it: its round still asks about 'kept'.
    refused = ['kept']
    const [round] = await victim.sync()
    expect(round!.collectionsDiffering).to.equal(1)
  })

  it('drops a push of more than 1,024 entries whole, before applying any', async () => {
    const { victim, evil } = await victimWithEvil()
    victim.collection('p', { backend: 'yjs' })
    await victim.collection('p').put('k', { v: 1 })
    const entries: [string, Uint8Array][] = Array.from({ length: 1025 }, (_, i) => [`e${i}`, deltaOf(yjsBackend(), { i })])
    await evil.publish(topicOf('default', 'p'), push('p', 'yjs', entries))
    await waitFor(() => victim.stats().peers.evil?.dropped.malformed === 1, 'dropped')
    expect(await feedLength(victim, 'p')).to.equal(1)
  })

  it('counts entries, not only messages, against the inbound rate', async () => {
    const { victim, evil } = await victimWithEvil({ limits: { inboundEntriesPerSecond: 1, inboundEntriesBurst: 10 } })
    await victim.collection('p', { backend: 'yjs' }).put('k', { v: 1 })
    const entries: [string, Uint8Array][] = Array.from({ length: 20 }, (_, i) => [`e${i}`, deltaOf(yjsBackend(), { i })])
    await evil.publish(topicOf('default', 'p'), push('p', 'yjs', entries))
    await waitFor(() => victim.stats().peers.evil?.dropped.rateLimited === 1, 'rate limited')
    expect(await feedLength(victim, 'p')).to.equal(1)
  })
})

/**
 * A Yjs update that passes the backend's stateless scan and makes applyDelta throw after Yjs
 * integrated part of it (from the Yjs backend's differential fuzz; see packages/yjs).
 */
function forgedYjsDelta(): Uint8Array {
  const c = 7
  const entry = (clock: number, root: string, key: string, value: unknown): Y.Item =>
    new Y.Item(Y.createID(c, clock), null, null, null, null, root as never, key, new Y.ContentAny([value]))
  const after = (clock: number, origin: number, values: unknown[]): Y.Item =>
    new Y.Item(Y.createID(c, clock), null, Y.createID(c, origin), null, null, null, null, new Y.ContentAny(values))
  const structs = [entry(0, 'meta', 'deleted', false), entry(1, 'value', 'a', 'trace'), entry(2, 'value', 'k', 0), after(3, 2, [1, 2])]
  const e = new Y.UpdateEncoderV1()
  e.writeLen(1) // one client
  e.writeLen(structs.length)
  e.writeClient(c)
  e.writeLen(0) // from clock 0
  for (const s of structs) s.write(e, 0)
  e.writeLen(0) // no delete set
  return e.toUint8Array()
}
