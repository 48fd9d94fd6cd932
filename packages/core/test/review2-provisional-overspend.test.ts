/**
 * Second review of provisional collections (replication/provisional.ts, apply.ts, replica.ts,
 * collection.ts writeOnce awaiting backendSettled) and of the counter rows' overspend rule and
 * the absent-entity rule (counter-rows.ts rowsVerdict/overspender, replication/row-guard.ts,
 * counter.ts writeSigned's StaleRow check of receipts). Each "HOLE n: …" test names a hole of
 * the code under review (each was watched fail there); "probe: …" tests held.
 */
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { applyAll } from '../src/replication/apply-all.js'
import { LoopbackHub, type PolicyDocument, type Replica } from '../src/index.js'
import type { ReplicationContext } from '../src/replication/context.js'
import { waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustMember, trustSuite } from './trust-helpers.js'
import { NOTES_POLICY, notes } from './heads-helpers.js'
import { ctxOf, savedDoc, type State } from './counter-helpers.js'

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms))

// -------------------------------------------------------------------------------------------------
// Provisional backend switches
// -------------------------------------------------------------------------------------------------

describe('review2: provisional backend switches', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  /** ADMIN and SUPPORT under the notes policy, cut apart; ADMIN writes n1. Its change. */
  async function apart(policy: PolicyDocument = NOTES_POLICY): Promise<{ r: Record<string, Replica>; c0: Uint8Array }> {
    const hub = new LoopbackHub()
    const r: Record<string, Replica> = {}
    for (const id of [ADMIN, SUPPORT]) r[id] = await trustMember(keys, replicas, hub, id)
    await r[ADMIN]!.policy.set(policy)
    await waitFor(() => r[SUPPORT]!.policy.get() !== undefined, 'adopted')
    hub.partition([ADMIN], [SUPPORT])
    await notes(r[ADMIN]!).put('n1', { text: 'one' })
    const [c0] = A.getAllChanges(A.load<State>(await savedDoc(r[ADMIN]!, 'notes', 'n1')))
    return { r, c0: c0! }
  }

  /** ADMIN's change relayed by ORDERS in a push that carried no head for it: refused as forbidden once judged. */
  const withoutItsHead = (ctx: ReplicationContext, change: Uint8Array, id = 'n1') =>
    applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', id, change, undefined, undefined, new Map())

  /** Holds the first entities.acquire from now on until `gate` settles (the delta that switched the collection waits at its entity). */
  function gateFirstAcquire(ctx: ReplicationContext): { release: () => void; restore: () => void } {
    const entities = ctx.entities as { acquire: typeof ctx.entities.acquire }
    const acquire = entities.acquire.bind(ctx.entities)
    let release!: () => void
    const gate = new Promise<void>((res) => (release = res))
    let calls = 0
    entities.acquire = async (...args) => {
      if (++calls === 1) await gate
      return acquire(...args)
    }
    return { release, restore: () => (entities.acquire = acquire) }
  }

  it("HOLE 1: the application opens the collection with an explicit backend — the one a peer's delta switched it to — while that delta is judged; the delta is refused and the undo switches the collection back to the default: the application's explicit backend is lost (its writes go to the default, tentative). The explicit backend must stay", async () => {
    const { r, c0 } = await apart()
    const support = r[SUPPORT]!
    const ctx = ctxOf(support)
    support.collection<State>('notes') // the default backend (yjs), tentative
    const gate = gateFirstAcquire(ctx)
    let result: unknown
    let explicit
    try {
      const forged = withoutItsHead(ctx, c0)
      await sleep(50) // the forged delta switched 'notes' to automerge and waits at its entity
      expect(ctx.entities.collections.get('notes')?.backend.name).to.equal('automerge')
      explicit = support.collection<State>('notes', { backend: 'automerge' }) // the application's choice: automerge
      gate.release()
      result = await forged
    } finally {
      gate.restore()
    }
    await explicit.put('a1', { text: 'mine' })
    expect({ result, backend: explicit.backend, again: support.collection<State>('notes', { backend: 'automerge' }).backend }).to.deep.equal({
      result: 'forbidden',
      backend: 'automerge',
      again: 'automerge',
    })
  })

  /** Holds the `n`th call of entities.tree from now on until the returned release is called. */
  function gateTree(ctx: ReplicationContext, gated: number[]): { release: (n: number) => void; restore: () => void; calls: () => number } {
    const entities = ctx.entities as { tree: typeof ctx.entities.tree }
    const tree = entities.tree.bind(ctx.entities)
    const gates = new Map<number, { promise: Promise<void>; open: () => void }>()
    for (const n of gated) {
      let open!: () => void
      const promise = new Promise<void>((res) => (open = res))
      gates.set(n, { promise, open })
    }
    let calls = 0
    entities.tree = async (...args) => {
      const gate = gates.get(++calls)
      if (gate !== undefined) await gate.promise
      return tree(...args)
    }
    return { release: (n) => gates.get(n)!.open(), restore: () => (entities.tree = tree), calls: () => calls }
  }

  it("HOLE 2: the first application write to a collection it opened without a backend loads the collection's digest tree (a store read) after it found no switch pending; a peer's delta switches the collection meanwhile and is refused after the write made its entity: the write is made with the delta's backend and the switch stays for good (the first review's HOLE 3, through the window it left open). The write must be made with the default and the switch undone", async () => {
    const { r, c0 } = await apart()
    const support = r[SUPPORT]!
    const ctx = ctxOf(support)
    const opened = support.collection<State>('notes') // the default backend (yjs), tentative, no tree loaded yet
    const gate = gateTree(ctx, [1, 2])
    let write: string
    let result: unknown
    try {
      const put = opened.put('y1', { text: 'mine' }).then(
        () => 'made',
        (err: unknown) => `failed: ${(err as { code?: string }).code ?? String(err)}`,
      )
      await sleep(20) // the write passed backendSettled and loads the tree (held)
      const forged = withoutItsHead(ctx, c0) // switches 'notes' to automerge, then loads the tree too (held)
      await sleep(20)
      expect(gate.calls(), 'both load the tree').to.equal(2)
      gate.release(1) // the write makes its entity
      await sleep(20)
      gate.release(2) // the delta goes on, and is refused
      ;[write, result] = await Promise.all([put, forged])
    } finally {
      gate.restore()
    }
    expect({ write, result, backend: opened.backend, value: await opened.get('y1') }).to.deep.equal({
      write: 'made',
      result: 'forbidden',
      backend: 'yjs',
      value: { text: 'mine' },
    })
  })

  it("HOLE 3: an application write waits for a switch's verdict; the application drops the collection and opens it again (the default backend, tentative), and another peer's delta switches the new collection: its provisional entry replaces the first one, which then never ends — the write waits for ever, and close() with it. The write must settle and close() end", async () => {
    const { r, c0 } = await apart()
    const support = r[SUPPORT]!
    const ctx = ctxOf(support)
    const opened = support.collection<State>('notes')
    const gate = gateFirstAcquire(ctx)
    let write = 'waiting'
    let closed = false
    try {
      const first = withoutItsHead(ctx, c0) // switches 'notes', held at its entity
      await sleep(50)
      const put = opened.put('y1', { text: 'mine' }).then(
        () => (write = 'made'),
        (err: unknown) => (write = `failed: ${(err as { code?: string }).code ?? String(err)}`),
      )
      await sleep(20)
      await support.dropCollection('notes')
      support.collection<State>('notes') // opened again: the default, tentative
      const second = withoutItsHead(ctx, c0, 'n2') // switches the new collection (not held: the second acquire)
      gate.release()
      expect(await first).to.equal('forbidden')
      expect(await second).to.equal('forbidden')
      await Promise.race([put, sleep(2_000)])
      void support.close().then(() => (closed = true))
      await sleep(500)
    } finally {
      gate.restore()
    }
    expect({ settled: write !== 'waiting', closed }).to.deep.equal({ settled: true, closed: true })
  })
  it("probe: close() while an application write waits for a switch's verdict: the delta ends, the write is made with the default, close() ends", async () => {
    const { r, c0 } = await apart()
    const support = r[SUPPORT]!
    const ctx = ctxOf(support)
    const opened = support.collection<State>('notes')
    const gate = gateFirstAcquire(ctx)
    try {
      const forged = withoutItsHead(ctx, c0)
      await sleep(50)
      const put = opened.put('y1', { text: 'mine' }).then(
        () => 'made',
        (err: unknown) => `failed: ${(err as { code?: string }).code ?? String(err)}`,
      )
      await sleep(20)
      const closing = support.close()
      await sleep(20)
      gate.release()
      expect(await forged).to.equal('forbidden')
      expect(await put).to.equal('made')
      await closing
    } finally {
      gate.restore()
    }
    expect(opened.backend).to.equal('yjs')
  })

  it('probe: a burst of deltas that switch the collection and are not taken (one message of 500 entries, paced 64 a turn) holds an application write only while the burst lasts; the write is then made with the default, and the default stays', async () => {
    const { r, c0 } = await apart()
    const support = r[SUPPORT]!
    const ctx = ctxOf(support)
    const opened = support.collection<State>('notes')
    const gate = gateFirstAcquire(ctx)
    let results: string[]
    let write: string
    try {
      const burst = applyAll(
        ctx,
        ORDERS,
        'notes',
        'automerge',
        Array.from({ length: 500 }, (_, i) => [`b${i}`, c0] as const),
      )
      await sleep(20) // the first delta switched 'notes' and waits at its entity
      const put = opened.put('y1', { text: 'mine' }).then(
        () => 'made',
        (err: unknown) => `failed: ${(err as { code?: string }).code ?? String(err)}`,
      )
      gate.release()
      ;[results, write] = await Promise.all([burst, put])
    } finally {
      gate.restore()
    }
    expect({ taken: results.filter((x) => x === 'applied').length, write, backend: opened.backend, value: await opened.get('y1') }).to.deep.equal({
      taken: 0,
      write: 'made',
      backend: 'yjs',
      value: { text: 'mine' },
    })
  })
})
