import { expect } from 'chai'
import fc from 'fast-check'
import { ConvergentError, LoopbackHub, type Replica } from '../src/index.js'
import { Keyring } from '../src/testing/index.js'
import { memoryReplica, waitFor } from './helpers.js'

/**
 * The counter's laws hold in both modes: development (unsigned rows) and a cluster (every row
 * signed by its holder; no policy set here, so every member may write). The attacks on signed
 * rows are in counter-signed.test.ts.
 */
const MODES = ['development', 'cluster'] as const
const keys = new Keyring()

/** A replica of `id` on `hub`, in the given mode (a cluster's admin is n0). */
function counterReplica(mode: (typeof MODES)[number], hub: LoopbackHub, id: string): Promise<Replica> {
  return memoryReplica({ network: hub.createNetwork(id), ...(mode === 'cluster' ? { trust: keys.trust(id, ['n0']) } : {}) })
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  try {
    await p
  } catch (err) {
    expect(err).to.be.instanceOf(ConvergentError)
    expect((err as ConvergentError).code).to.equal(code)
    return
  }
  throw new Error(`expected ${code}`)
}

for (const mode of MODES)
  describe(`Bounded counter (escrow), ${mode} mode`, () => {
    let replicas: Replica[] = []
    afterEach(async () => {
      await Promise.all(replicas.map((r) => r.close()))
      replicas = []
    })

    it('decrements only within local rights; increments give rights to their maker', async () => {
      const r = await counterReplica(mode, new LoopbackHub(), 'n0')
      replicas.push(r)
      const stock = r.counter('stock', { min: 0 })
      expect(await stock.value('sku-1')).to.equal(0)
      await rejectsWith(stock.decrement('sku-1'), 'ERR_INSUFFICIENT_RIGHTS')
      expect(await stock.increment('sku-1', 5)).to.equal(5)
      expect(await stock.rights('sku-1')).to.equal(5)
      expect(await stock.decrement('sku-1', 3)).to.equal(2)
      await rejectsWith(stock.decrement('sku-1', 3), 'ERR_INSUFFICIENT_RIGHTS')
      expect(await stock.value('sku-1')).to.equal(2)
      await rejectsWith(stock.increment('sku-1', 0), 'ERR_INVALID_ARGUMENT')
      await rejectsWith(stock.decrement('sku-1', -1), 'ERR_INVALID_ARGUMENT')
      await rejectsWith(stock.increment('sku-1', 1.5), 'ERR_INVALID_ARGUMENT')
    })

    it('concurrent decrements on one replica never overspend', async () => {
      const r = await counterReplica(mode, new LoopbackHub(), 'n0')
      replicas.push(r)
      const stock = r.counter('stock')
      await stock.increment('x', 10)
      const results = await Promise.allSettled(Array.from({ length: 25 }, () => stock.decrement('x')))
      expect(results.filter((x) => x.status === 'fulfilled')).to.have.length(10)
      expect(await stock.value('x')).to.equal(0)
    })

    it('rights move by transfer, and on request when a decrement waits', async () => {
      const hub = new LoopbackHub()
      const a = await counterReplica(mode, hub, 'n0')
      const b = await counterReplica(mode, hub, 'B')
      replicas.push(a, b)
      const sa = a.counter('stock')
      const sb = b.counter('stock')
      await sa.increment('sku', 10)
      await waitFor(async () => (await sb.value('sku')) === 10, 'b sees the increment')
      await rejectsWith(sb.decrement('sku'), 'ERR_INSUFFICIENT_RIGHTS') // no coordination by default
      await sa.transfer('sku', 'B', 3)
      await waitFor(async () => (await sb.rights('sku')) === 3, 'b receives 3 rights')
      expect(await sb.decrement('sku', 3)).to.equal(7)
      // Out of rights again: with waitMs, B asks A (which holds 7) and gets enough.
      expect(await sb.decrement('sku', 2, { waitMs: 2000 })).to.equal(5)
      expect(await sa.rights('sku')).to.be.below(7)
      await a.sync()
      expect(await sa.value('sku')).to.equal(5)
      const inspect = await sa.inspect('sku')
      expect(inspect.value).to.equal(5)
      expect(Object.values(inspect.rights).reduce((x, y) => x + y, 0)).to.equal(5)
    })

    it('property: value ≥ min on every replica at every step, under partitions; converges after heal', async function () {
      this.timeout(120_000)
      type Step =
        | { kind: 'inc'; node: number; n: number }
        | { kind: 'dec'; node: number; n: number }
        | { kind: 'transfer'; node: number; to: number; n: number }
        | { kind: 'split'; node: number }
        | { kind: 'heal' }
        | { kind: 'sync'; node: number }
      const step: fc.Arbitrary<Step> = fc.oneof(
        fc.record({ kind: fc.constant('inc' as const), node: fc.nat(2), n: fc.integer({ min: 1, max: 5 }) }),
        fc.record({ kind: fc.constant('dec' as const), node: fc.nat(2), n: fc.integer({ min: 1, max: 4 }) }),
        fc.record({ kind: fc.constant('dec' as const), node: fc.nat(2), n: fc.integer({ min: 1, max: 4 }) }),
        fc.record({ kind: fc.constant('transfer' as const), node: fc.nat(2), to: fc.nat(2), n: fc.integer({ min: 1, max: 3 }) }),
        fc.record({ kind: fc.constant('split' as const), node: fc.nat(2) }),
        fc.record({ kind: fc.constant('heal' as const) }),
        fc.record({ kind: fc.constant('sync' as const), node: fc.nat(2) }),
      )
      await fc.assert(
        fc.asyncProperty(fc.array(step, { maxLength: 30 }), async (steps) => {
          const hub = new LoopbackHub()
          const rs = [await counterReplica(mode, hub, 'n0'), await counterReplica(mode, hub, 'n1'), await counterReplica(mode, hub, 'n2')]
          replicas = rs
          const cs = rs.map((r) => r.counter('stock', { min: 0 }))
          let incremented = 0
          let decremented = 0
          for (const s of steps) {
            if (s.kind === 'inc') {
              await cs[s.node]!.increment('k', s.n)
              incremented += s.n
            } else if (s.kind === 'dec') {
              try {
                await cs[s.node]!.decrement('k', s.n)
                decremented += s.n
              } catch (err) {
                if ((err as ConvergentError).code !== 'ERR_INSUFFICIENT_RIGHTS') throw err
              }
            } else if (s.kind === 'transfer' && s.to !== s.node) {
              try {
                await cs[s.node]!.transfer('k', `n${s.to}`, s.n)
              } catch (err) {
                if ((err as ConvergentError).code !== 'ERR_INSUFFICIENT_RIGHTS') throw err
              }
            } else if (s.kind === 'split')
              hub.partition(
                [`n${s.node}`],
                ['n0', 'n1', 'n2'].filter((n) => n !== `n${s.node}`),
              )
            else if (s.kind === 'heal') hub.heal()
            else if (s.kind === 'sync') await rs[s.node]!.sync().catch(() => undefined)
            for (const c of cs) expect(await c.value('k')).to.be.at.least(0)
          }
          hub.heal()
          for (const r of rs) await r.sync()
          for (const r of rs) await r.sync()
          const values = await Promise.all(cs.map((c) => c.value('k')))
          expect(values).to.deep.equal([values[0], values[0], values[0]])
          expect(values[0]).to.equal(incremented - decremented)
          await Promise.all(rs.map((r) => r.close()))
          replicas = []
        }),
        { numRuns: 30 },
      )
    })
  })
