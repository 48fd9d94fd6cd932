/**
 * Third review of signed counter rows (counter-rows.ts rowsVerdict, replication/row-guard.ts,
 * apply.ts, the local ERR_FORBIDDEN of collection.ts, counter.ts batching), after the fixes of
 * review-counter-rows.test.ts and review2-counter-rows.test.ts.
 * Each "HOLE n: …" test names a hole of the code under review (each was watched fail there);
 * "probe: …" tests held.
 */
import { sign } from 'node:crypto'
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { LoopbackHub, Replica, type PolicyDocument } from '../src/index.js'
import { encodeRowBody, rowSigningInput, rowValue, type SignedRow } from '../src/counter-rows.js'
import { applyRemoteDelta } from '../src/replication/apply.js'
import type { ReplicationContext } from '../src/replication/context.js'
import { asForger, putRow } from '../src/testing/index.js'
import { waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustCluster, trustSuite } from './trust-helpers.js'

const POLICY: PolicyDocument = {
  roles: { admin: [ADMIN], orders: [ORDERS], support: [SUPPORT] },
  collections: {
    stock: { read: ['*'], write: ['admin', 'orders', 'support'], counter: true },
  },
}
type State = Record<string, unknown>
const ALL = [ADMIN, ORDERS, SUPPORT]

describe('review 3: signed counter rows', function () {
  this.timeout(120_000)
  const { keys, replicas } = trustSuite()

  async function cluster(policy = POLICY): Promise<{ hub: LoopbackHub; r: Record<string, Replica> }> {
    const c = await trustCluster(keys, ALL, replicas)
    asForger(c.r[ORDERS]!)
    await c.r[ADMIN]!.policy.set(policy)
    await waitFor(() => c.r[ORDERS]!.policy.get() !== undefined && c.r[SUPPORT]!.policy.get() !== undefined, 'adopted')
    return c
  }

  async function setUp(): Promise<{ hub: LoopbackHub; r: Record<string, Replica> }> {
    const c = await cluster()
    await c.r[ADMIN]!.counter('stock').increment('s1', 100)
    for (const id of [ORDERS, SUPPORT]) await waitFor(async () => (await c.r[id]!.counter('stock').value('s1')) === 100, `${id} sees 100`)
    return c
  }

  async function syncAll(r: Record<string, Replica>, rounds = 2): Promise<void> {
    for (let i = 0; i < rounds; i++) for (const name of Object.keys(r)) await r[name]!.sync().catch(() => undefined)
  }

  async function values(r: Record<string, Replica>, id = 's1', names = ALL): Promise<number[]> {
    return Promise.all(names.map((n) => r[n]!.counter('stock').value(id)))
  }

  function row(signer: string, holder: string, id: string, fields: Partial<SignedRow> & { version: number }, collection = 'stock'): string {
    const full: SignedRow = { inc: 0, dec: 0, out: {}, ...fields }
    const body = encodeRowBody(full)
    const signature = sign(null, rowSigningInput({ namespace: 'default', collection, id, holder }, body), keys.key(signer).priv)
    return rowValue(body, signature)
  }

  function ctxOf(replica: Replica): ReplicationContext {
    return (replica as unknown as { replication: ReplicationContext }).replication
  }

  async function savedDoc(replica: Replica, collection: string, id: string): Promise<Uint8Array> {
    const ctx = ctxOf(replica)
    const entity = await ctx.entities.acquire(ctx.entities.collections.get(collection)!, id)
    try {
      return A.save(entity.doc as A.Doc<State>)
    } finally {
      ctx.entities.release(entity)
    }
  }

  /** A change made on `doc` (saved bytes) by a fresh actor: what a forger sends as it likes. */
  function forkChange(doc: Uint8Array, actor: string, edit: (d: State) => void): Uint8Array {
    const fork = A.change(A.load<State>(doc, { actor }), { time: 0 }, edit)
    return A.getLastLocalChange(fork)!
  }

  // ---------------------------------------------------------------------------------------------
  // Holes
  // ---------------------------------------------------------------------------------------------

  it("HOLE 1: a member equivocates — two rows of one version, each spending the same 20 rights (one decrements, one gives them to SUPPORT), sent to different replicas: each is 'ok' alone, the pair is 'rights < 0', so whichever arrives first stays and the other is refused there for good; the cluster splits on the value, and every honest change built on either row (SUPPORT spending the rights) is refused on the other side for ever", async () => {
    const { r } = await setUp()
    await r[ADMIN]!.counter('stock').transfer('s1', ORDERS, 20)
    for (const n of ALL) await waitFor(async () => (await r[n]!.counter('stock').rights('s1', ORDERS)) === 20, `${n} sees ORDERS hold 20`)
    const base = await savedDoc(r[ORDERS]!, 'stock', 's1')
    const sell = forkChange(
      base,
      '01'.repeat(16),
      (d) => void putRow(d, ORDERS, 1, row(ORDERS, ORDERS, 's1', { version: 1, dec: 20, received: { [ADMIN]: 20 } })),
    )
    const give = forkChange(
      base,
      '02'.repeat(16),
      (d) => void putRow(d, ORDERS, 1, row(ORDERS, ORDERS, 's1', { version: 1, out: { [SUPPORT]: 20 }, received: { [ADMIN]: 20 } })),
    )
    expect(await applyRemoteDelta(ctxOf(r[ADMIN]!), ORDERS, 'stock', 'automerge', 's1', sell)).to.equal('applied')
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'stock', 'automerge', 's1', give)).to.equal('applied')
    // SUPPORT, honest, spends the rights it was given.
    await r[SUPPORT]!.counter('stock').decrement('s1', 5)
    await syncAll(r, 4)
    await r[ADMIN]!.counter('stock').increment('s1', 1)
    await r[SUPPORT]!.counter('stock').increment('s1', 1)
    await syncAll(r, 4)
    const seen = await values(r, 's1', [ADMIN, SUPPORT])
    expect(seen[0], `values ADMIN ${seen[0]}, SUPPORT ${seen[1]}`).to.equal(seen[1])
    // Since the fix both rows are taken everywhere (rights are judged per row, from its receipts):
    // the equivocation shows alike on every replica, ORDERS 20 below 0 (it spent its 20 twice).
    expect(await r[ADMIN]!.counter('stock').rights('s1', ORDERS)).to.equal(-20)
  })
  it("HOLE 2: the rights ≥ 0 and conflicted-key rules judge the whole document, not what a change carries: a replica that took a forger's over-spending row while 'stock' was not yet declared a counter (policy v1; a relay) and then adopts the policy that declares it refuses every later honest change of the id for good (ADMIN's increments never arrive) and its own counter writes fail with ERR_FORBIDDEN for ever", async () => {
    const v1: PolicyDocument = { ...POLICY, collections: { stock: { read: ['*'], write: ['admin', 'orders', 'support'] } } }
    const { r } = await cluster(v1)
    await r[ADMIN]!.counter('stock').increment('s1', 100)
    for (const n of [ORDERS, SUPPORT]) await waitFor(async () => (await r[n]!.collection<State>('stock').get('s1')) !== undefined, `${n} holds s1`)
    // ORDERS (no counter opened: no guard there either) signs a row of its own spending 1000 it never held.
    await r[ORDERS]!.collection<State>('stock').update('s1', (s) => void putRow(s, ORDERS, 1, row(ORDERS, ORDERS, 's1', { version: 1, dec: 1000 })))
    await waitFor(async () => Object.keys((await r[SUPPORT]!.collection<State>('stock').get('s1')) ?? {}).length === 2, 'SUPPORT took it')
    // The admin declares the counter; everyone adopts.
    await r[ADMIN]!.policy.set(POLICY)
    await waitFor(() => r[SUPPORT]!.policy.get()?.collections.stock?.counter === true, 'SUPPORT adopts v2')
    await r[ADMIN]!.counter('stock').increment('s1', 7)
    let own: string | undefined
    await r[SUPPORT]!.counter('stock')
      .increment('s1', 1)
      .catch((err: { code?: string }) => void (own = err.code))
    await syncAll(r, 4)
    const admins = (await r[SUPPORT]!.counter('stock').inspect('s1')).rights[ADMIN]
    expect({ own, adminRightsAtSupport: admins }).to.deep.equal({ own: undefined, adminRightsAtSupport: 107 })
  })

  it("probe: the holder's own row value copied by a forger as a concurrent change in another Automerge representation (a text object), delivered to a partitioned replica before the holder's row, is not taken as a second value: the holder's change and later ones still arrive there", async () => {
    const { hub, r } = await setUp()
    const before = await savedDoc(r[ORDERS]!, 'stock', 's1')
    hub.partition([ADMIN, ORDERS], [SUPPORT])
    await r[ADMIN]!.counter('stock').decrement('s1', 1) // ADMIN's row 2
    await waitFor(async () => (await r[ORDERS]!.counter('stock').value('s1')) === 99, 'ORDERS sees 99')
    const now = (await r[ORDERS]!.collection<State>('stock').get('s1'))!
    const k2 = Object.keys(now).find((k) => k.includes(`${ADMIN}|2|`))!
    const copy = forkChange(before, '00'.repeat(16), (d) => {
      d[k2] = now[k2] // a text object: the same characters
    })
    expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'stock', 'automerge', 's1', copy)).to.equal('applied')
    hub.heal()
    await syncAll(r, 3)
    await r[ADMIN]!.counter('stock').decrement('s1', 1)
    await syncAll(r, 3)
    expect(await values(r, 's1', [ADMIN, SUPPORT])).to.deep.equal([98, 98])
  })

  // ---------------------------------------------------------------------------------------------
  // Probes
  // ---------------------------------------------------------------------------------------------

  it('probe: concurrent decrements on two holders (one batch with ops short of rights), transfers and a rights request converge with no ERR_FORBIDDEN; close() during a batch settles every queued operation', async () => {
    const { r } = await setUp()
    const admin = r[ADMIN]!.counter('stock')
    const support = r[SUPPORT]!.counter('stock')
    await admin.transfer('s1', SUPPORT, 10)
    await waitFor(async () => (await support.rights('s1')) === 10, 'SUPPORT holds 10')
    const codes: string[] = []
    const note = (p: Promise<unknown>) =>
      p.then(
        () => 'ok',
        (err: { code?: string }) => err.code ?? 'error',
      )
    const ops = [
      ...Array.from({ length: 15 }, () => note(support.decrement('s1', 1))),
      ...Array.from({ length: 15 }, () => note(admin.decrement('s1', 1))),
      note(admin.transfer('s1', SUPPORT, 5)),
      note(support.decrement('s1', 3, { waitMs: 2000 })),
    ]
    codes.push(...(await Promise.all(ops)))
    expect(codes.filter((c) => c !== 'ok' && c !== 'ERR_INSUFFICIENT_RIGHTS')).to.deep.equal([])
    await syncAll(r, 3)
    const seen = await values(r)
    expect(
      seen.every((v) => v === seen[0] && v >= 0),
      seen.join(','),
    ).to.equal(true)
    // close() while a batch is being written: every queued operation settles.
    const pending = Array.from({ length: 10 }, () => note(admin.increment('s1', 1)))
    const closing = r[ADMIN]!.close()
    const settled = await Promise.race([Promise.all(pending), new Promise<'hang'>((res) => setTimeout(() => res('hang'), 10_000))])
    await closing
    expect(settled).to.not.equal('hang')
  })
})
