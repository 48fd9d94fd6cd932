/**
 * Review of the counter guard's fast path for a live push (commits 40f0d77..38f33c9):
 * row-guard.ts rowsVerdictAhead reads the rows of one change on top of the receiver's document
 * from the change itself and left the verdict to the real apply (apply.ts applyAndJudge), which
 * discards the entity when it refuses. Since: judged ahead from the change's writes
 * (nextChange, BackendHistory.nextTopLevelWrites), taken on the fast path only when that says ok.
 * "probe: …" tests held. Fixed: HOLE 1 (the apply's 'later' was answered 'duplicate'), HOLE 2 (a
 * forged row took the fast path: applied, refused, the entity discarded and reloaded, ~40x the
 * copy's cost at 2,000 changes; now judged on a copy), HOLE 3 (other refused lone changes —
 * take-backs, non-row keys — paid the reload too; now every verdict but 'ok' goes to a copy).
 */
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import type { Replica } from '../src/index.js'
import type { Backend } from '../src/backend.js'
import { applyRemoteDelta, type ApplyResult } from '../src/replication/apply.js'
import { rowKey } from '../src/counter-rows.js'
import { rowKeyIn } from '../src/testing/index.js'
import { waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT } from './trust-helpers.js'
import { counterSuite, crafted, ctxOf, opIdAt, savedDoc, syncAll, values, type Op, type State } from './counter-helpers.js'

/** The Automerge backend a replica applies with (its own instance). */
function automergeOf(replica: Replica): Backend {
  return ctxOf(replica).backends.get('automerge')!
}

/** Turns the fast path off on a replica (the guard then judges every delta on a copy, as before 40f0d77); returns the undo. */
function copyPathOnly(replica: Replica): () => void {
  const history = automergeOf(replica).history as { nextTopLevelWrites?: unknown }
  const own = history.nextTopLevelWrites
  history.nextTopLevelWrites = undefined
  return () => void (history.nextTopLevelWrites = own)
}

/** Counts the copies (clones) a replica's Automerge backend makes. */
function countClones(replica: Replica): () => number {
  const backend = automergeOf(replica) as { clone?: (doc: unknown) => unknown }
  const own = backend.clone!.bind(backend)
  let n = 0
  backend.clone = (doc) => {
    n++
    return own(doc)
  }
  return () => n
}

const ACTOR_GARBAGE = '6a'.repeat(16)

function fromOrders(replica: Replica, delta: Uint8Array): Promise<ApplyResult> {
  return applyRemoteDelta(ctxOf(replica), ORDERS, 'stock', 'automerge', 's1', delta)
}

describe('review s35: the counter guard judges a live push from its own rows (fast path)', function () {
  this.timeout(600_000)
  const { setUp, row } = counterSuite()

  it('probe: every hostile lone change on top of the document gets the same final verdict on the fast path (SUPPORT) as on the copy path (ADMIN, fast path off), and the replicas converge', async () => {
    const { r } = await setUp()
    copyPathOnly(r[ADMIN]!)
    const clones = countClones(r[SUPPORT]!)
    // ORDERS's own rows, genuine (a member may write its own row): versions 1.. as it goes.
    let own = 0
    const ownRow = (): [string, string] => {
      own++
      const v = row(ORDERS, ORDERS, 's1', { version: own, inc: own })
      return [rowKey(ORDERS, own, v), v]
    }
    const forged = row(ORDERS, ADMIN, 's1', { version: 9, inc: 1000, out: { [ORDERS]: 1000 } })
    const forgedKey = rowKey(ADMIN, 9, forged)
    type Shape = { name: string; ops: (base: Uint8Array) => Op[] }
    const set = (key: string, value: unknown, extra: Partial<Op> = {}): Op => ({ action: 'set', obj: '_root', key, value, pred: [], ...extra }) as Op
    const shapes: Shape[] = [
      { name: 'forged row of another holder', ops: () => [set(forgedKey, forged)] },
      { name: 'own genuine row, then a forged one', ops: () => [set(...ownRow()), set(forgedKey, forged)] },
      { name: 'forged row, then own genuine row', ops: () => [set(forgedKey, forged), set(...ownRow())] },
      {
        name: "delete ADMIN's row (take-back)",
        ops: (base) => [
          { action: 'del', obj: '_root', key: rowKeyIn(A.load<State>(base), ADMIN, 1), pred: [opIdAt(base, rowKeyIn(A.load<State>(base), ADMIN, 1))] },
        ],
      },
      { name: 'a non-row key', ops: () => [set('min', -1000)] },
      { name: 'a timestamp under a row key', ops: () => [set(rowKey(ORDERS, 50, new Date(0).toISOString()), 0, { datatype: 'timestamp' })] },
      { name: 'an int64 past 2^53 under a non-row key (decodeChange cannot read it: copy path)', ops: () => [set('big', 2 ** 60, { datatype: 'int' })] },
      // A garbage row put and deleted again in the same change (the fast path stops at it), then
      // ORDERS's own genuine row, never checked anywhere: the apply finds it unchecked.
      {
        name: 'garbage row put and deleted in the change, then own genuine row',
        ops: (base) => {
          const g = 'garbage.AAAA'
          const k = rowKey(ORDERS, 60, g)
          // The put's op id: the change's first op (crafted keeps the template's startOp and actor).
          const first = `${A.decodeChange(crafted(base, ACTOR_GARBAGE, [])).startOp}@${ACTOR_GARBAGE}`
          return [set(k, g), { action: 'del', obj: '_root', key: k, pred: [first] }, set(...ownRow())]
        },
      },
      { name: 'own genuine row (honest shape)', ops: () => [set(...ownRow())] },
    ]
    const seen: Record<string, { fast: ApplyResult[]; copy: ApplyResult[] }> = {}
    for (const [i, shape] of shapes.entries()) {
      await syncAll(r, 2)
      const base = await savedDoc(r[SUPPORT]!, 'stock', 's1')
      expect(A.getHeads(A.load(await savedDoc(r[ADMIN]!, 'stock', 's1'))), `${shape.name}: same document`).to.deep.equal(A.getHeads(A.load(base)))
      let change: Uint8Array
      try {
        change = crafted(base, shape.name.startsWith('garbage') ? ACTOR_GARBAGE : (i + 16).toString(16).padStart(2, '0').repeat(16), shape.ops(base))
      } catch (err) {
        seen[shape.name] = { fast: [`not encodable: ${String(err)}` as ApplyResult], copy: [] }
        continue
      }
      const copies = clones()
      const fast = [await fromOrders(r[SUPPORT]!, change)]
      if (shape.name.startsWith('own genuine row (honest')) expect(clones() - copies, 'no copy for the honest shape').to.equal(0)
      const copy = [await fromOrders(r[ADMIN]!, change)]
      // 'later' comes again (anti-entropy): a second delivery.
      if (fast[0] === 'later') fast.push(await fromOrders(r[SUPPORT]!, change))
      if (copy[0] === 'later') copy.push(await fromOrders(r[ADMIN]!, change))
      seen[shape.name] = { fast, copy }
    }
    const final = Object.fromEntries(Object.entries(seen).map(([k, v]) => [k, { fast: v.fast.at(-1), copy: v.copy.at(-1) ?? v.fast.at(-1) }]))
    console.log('      verdicts:', JSON.stringify(seen))
    for (const [name, v] of Object.entries(final)) expect(v.fast, name).to.equal(v.copy)
    await syncAll(r, 3)
    const vals = await values(r)
    expect(new Set(vals).size, `converged: ${vals.join(',')}`).to.equal(1)
  })

  it('probe: a replica with a concurrent change (copy path, per-change steps) and one at the change’s dependencies (fast path) agree on an honest and a forged lone change', async () => {
    const { r, hub } = await setUp()
    // SUPPORT writes a change ADMIN lacks (split), then ORDERS's changes on the common base arrive at both.
    hub.partition([ADMIN, ORDERS], [SUPPORT])
    await r[SUPPORT]!.counter('stock').increment('s1', 5)
    const base = await savedDoc(r[ADMIN]!, 'stock', 's1')
    const genuine = row(ORDERS, ORDERS, 's1', { version: 1, inc: 3 })
    const forged = row(ORDERS, ADMIN, 's1', { version: 5, inc: 1000, out: { [ORDERS]: 1000 } })
    const honest = crafted(base, '31'.repeat(16), [{ action: 'set', obj: '_root', key: rowKey(ORDERS, 1, genuine), value: genuine, pred: [] }])
    const bad = crafted(base, '32'.repeat(16), [{ action: 'set', obj: '_root', key: rowKey(ADMIN, 5, forged), value: forged, pred: [] }])
    const got = {
      fast: [await fromOrders(r[ADMIN]!, bad), await fromOrders(r[ADMIN]!, honest)],
      copy: [await fromOrders(r[SUPPORT]!, bad), await fromOrders(r[SUPPORT]!, honest)],
    }
    expect(got).to.deep.equal({ fast: ['forbidden', 'applied'], copy: ['forbidden', 'applied'] })
    hub.heal()
    await syncAll(r, 3)
    await waitFor(async () => new Set(await values(r)).size === 1, 'converged')
    expect(await values(r)).to.deep.equal([108, 108, 108])
  })

  /**
   * SUPPORT holds 's1' with a history of about `n` changes (ADMIN's sales); `cost` applies lone
   * changes on top of SUPPORT's document from ORDERS and says what each cost SUPPORT: wall and
   * CPU time (with the reload a refusal leaves to the next read), the entity loads (a refusal on
   * the real document discards the entity: reloaded from the store), and where the time went.
   */
  async function longHistory(n: number) {
    const c = await setUp()
    const { r } = c
    const stock = r[ADMIN]!.counter('stock')
    await stock.increment('s1', n)
    for (let i = 0; i < n; i++) await stock.decrement('s1', 1)
    await waitFor(async () => (await r[SUPPORT]!.counter('stock').value('s1')) === 100, 'SUPPORT sees every sale', 120_000)
    await syncAll(r, 1)
    const base = await savedDoc(r[SUPPORT]!, 'stock', 's1')
    const template = A.decodeChange(crafted(base, '40'.repeat(16), []))
    let actors = 0x1000
    /** A lone change on top of SUPPORT's document, holding `ops` (a new actor each). */
    const lone = (ops: Op[]): Uint8Array => {
      const { hash: _h, ...change } = template
      return A.encodeChange({ ...change, actor: (actors++).toString(16).padStart(32, '0'), ops })
    }
    const ctx = ctxOf(r[SUPPORT]!)
    const col = ctx.entities.collections.get('stock')!
    const spent: Record<string, number> = {}
    const calls: Record<string, number> = {}
    const backend = automergeOf(r[SUPPORT]!) as unknown as Record<string, (...a: unknown[]) => unknown>
    for (const name of ['load', 'clone', 'applyDelta', 'read', 'versionHash', 'conflictedKeys']) {
      const own = backend[name]!.bind(backend)
      backend[name] = (...a: unknown[]) => {
        const t = performance.now()
        calls[name] = (calls[name] ?? 0) + 1
        try {
          return own(...a)
        } finally {
          spent[name] = (spent[name] ?? 0) + performance.now() - t
        }
      }
    }
    const cost = async (batch: Uint8Array[]) => {
      await r[SUPPORT]!.collection<State>('stock').get('s1') // loaded
      for (const k of Object.keys(spent)) delete spent[k]
      for (const k of Object.keys(calls)) delete calls[k]
      const cpu = process.cpuUsage()
      const start = performance.now()
      const results = new Set<string>()
      for (const p of batch) results.add(await fromOrders(r[SUPPORT]!, p))
      const entity = await ctx.entities.acquire(col, 's1') // the last refusal's reload, if any
      ctx.entities.release(entity)
      const ms = (performance.now() - start) / batch.length
      const used = process.cpuUsage(cpu)
      const where = Object.entries(spent)
        .filter(([, t]) => t / batch.length >= 0.05)
        .map(([k, t]) => `${k} ${(t / batch.length).toFixed(2)}`)
        .join(', ')
      return { ms, cpuMs: (used.user + used.system) / 1000 / batch.length, loads: calls['load'] ?? 0, results: [...results], where }
    }
    const show = (name: string, c: Awaited<ReturnType<typeof cost>>): string =>
      `${name}: ${c.ms.toFixed(2)} ms wall, ${c.cpuMs.toFixed(2)} ms CPU, ${c.loads} loads ${JSON.stringify(c.results)} (${c.where})`
    return { ...c, base, lone, cost, show, changes: A.getAllChanges(A.load(base)).length }
  }

  /** A row of ADMIN signed by ORDERS (forged), version v. */
  const forgedOp = (v: number): Op => {
    const value = row(ORDERS, ADMIN, 's1', { version: v, inc: 10 ** 6 })
    return { action: 'set', obj: '_root', key: rowKey(ADMIN, v, value), value, pred: [] }
  }

  it('HOLE 2 (fixed): a forged row on top of the document was applied to the real document, refused there and the entity discarded — its reload costs what the history holds: at 2,000 changes ~240 ms per forged push against ~6 ms on a copy (~40x); now judged on a copy', async () => {
    const N = Number(process.env.REVIEW_S35_N ?? 300)
    const K = Number(process.env.REVIEW_S35_K ?? 10)
    const h = await longHistory(N)
    const forged = Array.from({ length: 2 * K }, (_, i) => h.lone([forgedOp(100_000 + i)]))
    const fast = await h.cost(forged.slice(0, K))
    const undo = copyPathOnly(h.r[SUPPORT]!)
    const copy = await h.cost(forged.slice(K))
    undo()
    console.log(`      history ${h.changes} changes; per forged push — ${h.show('fast path', fast)}; ${h.show('copy path', copy)}`)
    expect({ fast: fast.results, copy: copy.results }).to.deep.equal({ fast: ['forbidden'], copy: ['forbidden'] })
    expect(fast.loads, 'entity reloads for forged pushes').to.equal(0)
    // An honest sale after them still takes the fast path and arrives.
    await h.r[ADMIN]!.counter('stock').decrement('s1', 1)
    await waitFor(async () => (await h.r[SUPPORT]!.counter('stock').value('s1')) === 99, 'the next sale arrives')
  })

  it("HOLE 3 (fixed): every other lone change the apply refuses — a take-back (delete of a holder's row), a non-row key, an overspend — still takes the fast path: applied to the real document, refused, the entity discarded and reloaded (O(history) per push; no signature needed: a delete costs the attacker nothing). Fix: judge the change ahead on the rows it puts and deletes (before minus its deletes plus its puts, every row checked), and judge it on a copy unless that says ok", async () => {
    const N = Number(process.env.REVIEW_S35_N ?? 300)
    const K = Number(process.env.REVIEW_S35_K ?? 10)
    const h = await longHistory(N)
    const key = rowKeyIn(A.load<State>(h.base), ADMIN, N + 2)
    const takeBack = Array.from({ length: K }, () => h.lone([{ action: 'del', obj: '_root', key, pred: [opIdAt(h.base, key)] }]))
    const nonRow = Array.from({ length: K }, (_, i) => h.lone([{ action: 'set', obj: '_root', key: `x${i}`, value: 1, pred: [] }]))
    const dels = await h.cost(takeBack)
    const keys = await h.cost(nonRow)
    console.log(`      history ${h.changes} changes; per push — ${h.show('take-back', dels)}; ${h.show('non-row key', keys)}`)
    expect({ dels: dels.results, keys: keys.results }).to.deep.equal({ dels: ['forbidden'], keys: ['forbidden'] })
    expect({ dels: dels.loads, keys: keys.loads }, 'entity reloads').to.deep.equal({ dels: 0, keys: 0 })
  })

  it("HOLE 1 (fixed): a live push the apply finds with a row not checked yet (verdicts evicted: MAX_VERDICTS) was answered 'duplicate', not 'later' (the comment said 'later'): a signed push holding it was stored as done", async () => {
    const { r } = await setUp()
    const guard = ctxOf(r[SUPPORT]!).counterGuard('stock')!
    // As if the verdicts were evicted between the judgement ahead and the apply (MAX_VERDICTS):
    // forgotten when the apply applies the delta, after the judgement ahead took it as ok.
    const backend = automergeOf(r[SUPPORT]!) as unknown as { applyDelta: (...args: unknown[]) => unknown }
    const ownApply = backend.applyDelta.bind(backend)
    let evict = true
    backend.applyDelta = (...args) => {
      if (evict) (guard as unknown as { verdicts: Map<string, boolean> }).verdicts.clear()
      evict = false
      return ownApply(...args)
    }
    const base = await savedDoc(r[SUPPORT]!, 'stock', 's1')
    const genuine = row(ORDERS, ORDERS, 's1', { version: 1, inc: 2 })
    const change = crafted(base, '51'.repeat(16), [{ action: 'set', obj: '_root', key: rowKey(ORDERS, 1, genuine), value: genuine, pred: [] }])
    const first = await fromOrders(r[SUPPORT]!, change)
    await new Promise((res) => setTimeout(res, 50)) // the apply's check of the rows it found unchecked
    const second = await fromOrders(r[SUPPORT]!, change)
    expect([first, second]).to.deep.equal(['later', 'applied'])
    expect(await r[SUPPORT]!.counter('stock').value('s1')).to.equal(102)
  })

  it('probe: a lone change whose dependencies name a change the receiver lacks (besides its heads) is judged on a copy, not applied and discarded', async () => {
    const h = await longHistory(50)
    const { hash: _h, ...change } = A.decodeChange(h.lone([]))
    const waiting = A.encodeChange({ ...change, deps: [...change.deps, 'ab'.repeat(32)].sort() })
    const c = await h.cost([waiting, waiting])
    expect(c.results).to.deep.equal(['later'])
    expect(c.loads, 'entity reloads').to.equal(0)
  })
})
