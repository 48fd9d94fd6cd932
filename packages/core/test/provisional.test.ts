/**
 * A collection a peer's delta makes is provisional until a delta for it is taken: a delta
 * refused (or left waiting) after the collection was made — by signed heads here — leaves no
 * collection, gossip subscription or backend switch behind (replication/provisional.ts).
 */
import { expect } from 'chai'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { encodeHeaded } from '../src/replication/heads.js'
import { ProvisionalCollections } from '../src/replication/provisional.js'
import type { Replica } from '../src/index.js'
import { ADMIN, SUPPORT, netOf, trustSuite } from './trust-helpers.js'
import { headOf, notes, notesApart, NOTES_TOPIC, withoutItsHead } from './heads-helpers.js'
import { ctxOf } from './counter-helpers.js'

describe('provisional collections: the bookkeeping', () => {
  it('undoes a collection once every delta that used it ended untaken, keeps it once one is taken or the application opens it', () => {
    const p = new ProvisionalCollections()
    let undone = 0
    const first = p.created('c', () => undone++)
    const second = p.hold('c')
    first(false)
    expect([undone, p.has('c')]).to.deep.equal([0, true])
    second(false)
    second(false) // a release counts once
    expect([undone, p.has('c')]).to.deep.equal([1, false])

    const a = p.created('c', () => undone++)
    const b = p.hold('c')
    a(true)
    b(false)
    expect([undone, p.has('c')]).to.deep.equal([1, false])

    const c = p.created('c', () => undone++)
    p.keep('c')
    c(false)
    expect(undone).to.equal(1)
    expect(p.hold('unknown')).to.be.a('function') // not provisional: nothing held
  })

  it('a release from before a collection was undone and made again does not end the new one', () => {
    const p = new ProvisionalCollections()
    let undone = 0
    const old = p.created('c', () => undone++)
    p.keep('c')
    p.created('c', () => undone++)
    old(false)
    expect([undone, p.has('c')]).to.deep.equal([0, true])
  })
})

describe('provisional collections on replicas (loopback)', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  const apart = () => notesApart(keys, replicas)

  const subscribed = (replica: Replica): boolean => (netOf(replica) as unknown as { topics: Set<string> }).topics.has(NOTES_TOPIC)

  it('a delta refused by signed heads, or left waiting for its dependency, leaves no collection and no subscription; the genuine one makes it', async () => {
    const { r, c0 } = await apart()
    const support = r[SUPPORT]!
    const ctx = ctxOf(support)
    // Headed without the head its bound actor needs: refused after the collection was made.
    expect(await withoutItsHead(ctx, c0)).to.equal('forbidden')
    expect(support.collections()).to.not.include('notes')
    expect(support.stats().collections).to.equal(0)
    expect(subscribed(support)).to.equal(false)
    // Its own change from ADMIN, not signed yet: it waits for the head, and the collection is not kept either.
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', c0, undefined, undefined, new Map())).to.equal('later')
    expect(support.collections()).to.not.include('notes')
    expect(subscribed(support)).to.equal(false)
    // The genuine change makes it.
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', encodeHeaded(c0, [await headOf(keys, c0)]))).to.equal('applied')
    expect(support.collections()).to.include('notes')
    expect(subscribed(support)).to.equal(true)
    expect((await notes(support).get('n1'))?.text).to.equal('one')
  })

  it('a refused delta and a genuine one for a new collection at once: the genuine one is taken, and the collection stays with it', async () => {
    const { r, c0 } = await apart()
    const support = r[SUPPORT]!
    const ctx = ctxOf(support)
    const results = await Promise.all([
      withoutItsHead(ctx, c0),
      applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', encodeHeaded(c0, [await headOf(keys, c0)])),
      withoutItsHead(ctx, c0),
    ])
    expect(results).to.deep.equal(['forbidden', 'applied', 'forbidden'])
    expect(support.collections()).to.include('notes')
    expect((await notes(support).get('n1'))?.text).to.equal('one')
  })

  it('a refused delta that made the collection ends while a genuine one for it is still being applied: the collection stays, with the entity', async () => {
    const { r, c0 } = await apart()
    const support = r[SUPPORT]!
    const ctx = ctxOf(support)
    // The forged delta makes the collection (the genuine one checks its head first, so comes
    // second); the genuine one is held at its entity until the forged one was refused.
    const entities = ctx.entities as { acquire: typeof ctx.entities.acquire }
    const acquire = entities.acquire.bind(ctx.entities)
    let refusal: Promise<unknown> = Promise.resolve()
    let calls = 0
    entities.acquire = async (...args) => {
      if (++calls === 2) await refusal
      return acquire(...args)
    }
    try {
      const forged = withoutItsHead(ctx, c0)
      refusal = forged
      const genuine = applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', encodeHeaded(c0, [await headOf(keys, c0)]))
      expect(await Promise.all([forged, genuine])).to.deep.equal(['forbidden', 'applied'])
    } finally {
      entities.acquire = acquire
    }
    expect(calls).to.equal(2)
    expect(support.collections()).to.include('notes')
    expect(subscribed(support)).to.equal(true)
    expect((await notes(support).get('n1'))?.text).to.equal('one')
  })

  it('a refused delta does not switch the default backend of a collection the application opened without one', async () => {
    const { r, c0 } = await apart()
    const support = r[SUPPORT]!
    const opened = support.collection('notes') // the replica's default backend: yjs, tentative
    expect(await withoutItsHead(ctxOf(support), c0)).to.equal('forbidden')
    await opened.put('y1', { text: 'written as yjs' })
    expect(await opened.get('y1')).to.deep.equal({ text: 'written as yjs' })
    const col = ctxOf(support).entities.collections.get('notes')!
    expect(col.backend.name).to.equal('yjs')
  })
})
