// Review (rev2) of 4859661: a delta for an entity with changes waiting in it reads the stored
// heads once the entity's writes in flight have landed, and again while it keeps being written.
import { expect } from 'chai'
import { applyRemoteDelta } from '../src/replication/apply.js'
import * as A from '@automerge/automerge'
import { encodeHeaded, headed as headedDelta } from '../src/replication/heads.js'
import { headKey } from '../src/trust/signed-heads.js'
import { actorOwnedBy } from '../src/trust/actor-binding.js'
import { memoryLevelStore } from '@convergent/level'
import { LoopbackHub, type Replica, type Store } from '../src/index.js'
import { waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustMember, trustSuite } from './trust-helpers.js'
import { adminAheadByTwo, headOf as headOfChange, headsCluster, notes, NOTES_POLICY } from './heads-helpers.js'
import { ctxOf, savedDoc, type State } from './counter-helpers.js'

/** A memory store whose every write takes `ms` (a disk slower than the writes made). */
function slowStore(ms: number): Store {
  const inner = memoryLevelStore()
  return new Proxy(inner, {
    get(target, key, receiver) {
      if (key === 'write') {
        return async (ops: Parameters<Store['write']>[0]) => {
          await new Promise((resolve) => setTimeout(resolve, ms))
          return target.write(ops)
        }
      }
      const value = Reflect.get(target, key, receiver) as unknown
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    },
  })
}

describe('review rev2: waiting out writes in flight', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()
  const headed = async (change: Uint8Array) => encodeHeaded(change, [await headOfChange(keys, change, ADMIN)])

  it('a delta that releases waiting changes is taken while the entity is written locally all the time (no starvation)', async () => {
    const hub = new LoopbackHub()
    const r: Record<string, Replica> = {}
    for (const id of [ADMIN, SUPPORT]) r[id] = await trustMember(keys, replicas, hub, id, id === SUPPORT ? { store: slowStore(4) } : {})
    await r[ADMIN]!.policy.set(NOTES_POLICY)
    await waitFor(() => [ADMIN, SUPPORT].every((id) => r[id]!.policy.get() !== undefined), 'adopted')
    const { c1, c2 } = await adminAheadByTwo(hub, r)
    const ctx = ctxOf(r[SUPPORT]!)
    // c2 first: it waits in SUPPORT's document (c1 missing).
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c2))).to.equal('applied')
    // SUPPORT's application writes n1 every millisecond (a hot entity), faster than its disk lands a write.
    let writing = true
    let n = 0
    const writer = (async () => {
      while (writing) {
        void notes(r[SUPPORT]!).put('n1', { text: 'local', tag: String(n++) })
        await new Promise((resolve) => setTimeout(resolve, 1))
      }
    })()
    try {
      await new Promise((resolve) => setTimeout(resolve, 50))
      const results: string[] = []
      for (let i = 0; i < 3; i++) results.push(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', await headed(c1)))
      expect(results, `c1 while n1 is written locally (${n} local writes)`).to.include('applied')
    } finally {
      writing = false
      await writer
    }
  })

  // 418cb29: needed() is 'all' while changes wait in the document, and outgoingHeads then signs
  // the heads of its own actors lacking one from the bytes sent, loaded as a document. A delta
  // since the peer's version is no document: its changes depend on what the peer holds.
  it("a delta since the peer's version, from a document with changes waiting, goes with the head of its own actor signed anew (head lost here)", async () => {
    const { hub, r } = await headsCluster(keys, replicas, [ADMIN, ORDERS, SUPPORT])
    const { all, c1 } = await adminAheadByTwo(hub, r)
    await r[ORDERS]!.sync()
    await waitFor(async () => (await notes(r[ORDERS]!).get('n1')) !== undefined, 'n1 at ORDERS')
    const octx = ctxOf(r[ORDERS]!)
    expect(await applyRemoteDelta(octx, ADMIN, 'notes', 'automerge', 'n1', await headed(c1))).to.equal('applied')
    await notes(r[ORDERS]!).put('n1', { text: 'two', tag: 'o1' })
    const known = new Set(all.map((c) => A.decodeChange(c).hash))
    const o1 = A.getAllChanges(A.load<State>(await savedDoc(r[ORDERS]!, 'notes', 'n1'))).find((c) => !known.has(A.decodeChange(c).hash))!
    const sctx = ctxOf(r[SUPPORT]!)
    expect(await applyRemoteDelta(sctx, ORDERS, 'notes', 'automerge', 'n1', encodeHeaded(o1, [await headOfChange(keys, o1, ORDERS)]))).to.equal('applied')
    const col = sctx.entities.collections.get('notes')!
    // ADMIN's version now (before SUPPORT's own write).
    const actx = ctxOf(r[ADMIN]!)
    const ae = await actx.entities.acquire(actx.entities.collections.get('notes')!, 'n1')
    const adminVersion = col.backend.version(ae.doc)
    actx.entities.release(ae)
    // SUPPORT writes n1 itself (its own actor), its head stored; then that head is lost (a crash, a damaged record).
    await notes(r[SUPPORT]!).put('n1', { text: 'mine', tag: 's1' })
    let e = await sctx.entities.acquire(col, 'n1')
    expect(col.backend.hasPending(e.doc), 'o1 queued at SUPPORT').to.equal(true)
    const mine = A.getAllChanges(e.doc as A.Doc<State>)
      .map((c) => A.decodeChange(c))
      .filter((c) => actorOwnedBy(c.actor, SUPPORT))
    sctx.entities.release(e)
    expect(mine.length).to.be.greaterThan(0)
    const actor = mine[mine.length - 1]!.actor
    await waitFor(async () => (await sctx.heads!.stored('notes', 'n1', [actor])).has(actor), 'own head stored')
    await sctx.entities.addToTick([{ type: 'delMeta', key: headKey('notes', 'n1', actor) }])
    expect((await sctx.heads!.stored('notes', 'n1', [actor])).has(actor)).to.equal(false)
    // The exchange path: the delta since ADMIN's version, headed from the document.
    sctx.heads!.markReader(ADMIN)
    e = await sctx.entities.acquire(col, 'n1')
    let sent: Uint8Array
    try {
      const delta = col.backend.deltaSince(e.doc, adminVersion)!
      sent = await headedDelta(sctx, col, 'n1', delta, ADMIN, { doc: e.doc, theirVersion: adminVersion })
    } finally {
      sctx.entities.release(e)
    }
    const { decodeHeaded } = await import('../src/replication/heads.js')
    const carried = decodeHeaded(sent).heads.length
    const got = await applyRemoteDelta(actx, SUPPORT, 'notes', 'automerge', 'n1', sent)
    expect(r[ADMIN]!.stats().peers[SUPPORT]?.dropped.forbidden ?? 0, `SUPPORT's own change went without its head (${got}, ${carried} heads carried)`).to.equal(
      0,
    )
    expect(got, `${carried} heads carried`).to.equal('applied')
  })
})
