/**
 * A property test of counters in a cluster with a forger among the writers: three honest
 * replicas increment, decrement and transfer under partitions while a fourth member writes the
 * counter's document directly — deleting or overwriting others' rows, forging rows in their
 * names, over-spending its own, replaying old rows, writing unsigned keys or another min. At
 * every step every honest replica shows a value ≥ min; after the heal they all show the same
 * value, exactly what the honest operations acknowledged add up to.
 */
import { expect } from 'chai'
import fc from 'fast-check'
import type { ConvergentError, Replica } from '../src/index.js'
import { asForger, putRow, rowNames, signedRow } from '../src/testing/index.js'
import { ADMIN, ORDERS, SUPPORT, trustCluster, trustSuite } from './trust-helpers.js'

const FORGER = 'd-forger'
const HONEST = [ADMIN, ORDERS, SUPPORT]
const POLICY = {
  roles: { admin: [ADMIN], writers: [ORDERS, SUPPORT, FORGER] },
  collections: { stock: { read: ['*'], write: ['admin', 'writers'], counter: true } },
}
const IDS = ['k1', 'k2']
type State = Record<string, unknown>

type Forgery = 'delete' | 'overwrite' | 'forgeRow' | 'overspend' | 'replay' | 'legacy' | 'min'
type Step =
  | { kind: 'inc' | 'dec'; node: number; id: number; n: number }
  | { kind: 'transfer'; node: number; to: number; id: number; n: number }
  | { kind: 'split'; node: number }
  | { kind: 'heal' }
  | { kind: 'sync'; node: number }
  | { kind: 'forge'; forgery: Forgery; victim: number; id: number }

const node = fc.nat(2)
const id = fc.nat(IDS.length - 1)
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('inc' as const), node, id, n: fc.integer({ min: 1, max: 5 }) }),
  fc.record({ kind: fc.constant('dec' as const), node, id, n: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ kind: fc.constant('transfer' as const), node, to: fc.nat(2), id, n: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ kind: fc.constant('split' as const), node: fc.nat(3) }),
  fc.record({ kind: fc.constant('heal' as const) }),
  fc.record({ kind: fc.constant('sync' as const), node }),
  fc.record({
    kind: fc.constant('forge' as const),
    forgery: fc.constantFrom<Forgery>('delete', 'overwrite', 'forgeRow', 'overspend', 'replay', 'legacy', 'min'),
    victim: node,
    id,
  }),
)

describe('Counters in a cluster: a forger among the writers (property)', function () {
  this.timeout(300_000)
  const { keys, replicas } = trustSuite()

  /** A row of `holder` signed by the forger's key. */
  const forgedRow = (holder: string, itemId: string, fields: { version: number; inc?: number; dec?: number; out?: Record<string, number> }): string =>
    signedRow(keys, FORGER, holder, itemId, fields)

  async function forge(forger: Replica, f: Forgery, victim: string, itemId: string, seen: Map<string, string>): Promise<void> {
    await forger.collection<State>('stock', { backend: 'automerge' }).update(
      itemId,
      (s) => {
        const victimKeys = Object.keys(s).filter((k) => rowNames({ [k]: 1 })[0]!.startsWith(`${victim}|`))
        const top = Math.max(0, ...victimKeys.map((k) => Number(rowNames({ [k]: 1 })[0]!.split('|')[1])))
        if (f === 'delete') for (const k of victimKeys) delete s[k]
        else if (f === 'overwrite') for (const k of victimKeys) s[k] = 'garbage.AAAA'
        else if (f === 'forgeRow') putRow(s, victim, top + 1, forgedRow(victim, itemId, { version: top + 1, inc: 50, out: { [FORGER]: 50 } }))
        else if (f === 'overspend') putRow(s, FORGER, 1, forgedRow(FORGER, itemId, { version: 1, dec: 500 }))
        else if (f === 'replay') {
          const old = seen.get(`${itemId}/${victim}`)
          if (old !== undefined) s[old.slice(0, old.indexOf('\u0000'))] = old.slice(old.indexOf('\u0000') + 1)
        } else if (f === 'legacy') s[`p|${victim}|${FORGER}`] = 1000
        else s.min = -100 // min is no part of a cluster's counter data: never counted
      },
      { upsert: true },
    )
  }

  it('honest replicas never show a value below min and converge to what the honest operations acknowledged', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { minLength: 1, maxLength: 25 }), async (steps) => {
        const { hub, r } = await trustCluster(keys, [...HONEST, FORGER], replicas)
        asForger(r[FORGER]!)
        await r[ADMIN]!.policy.set(POLICY)
        for (const n of [...HONEST.slice(1), FORGER]) {
          for (let i = 0; i < 50 && r[n]!.policy.get() === undefined; i++) await new Promise((res) => setTimeout(res, 10))
        }
        const counters = HONEST.map((n) => r[n]!.counter('stock'))
        const total = new Map<string, number>(IDS.map((i) => [i, 0]))
        /** Row keys and values the forger has seen (old rows to replay later). */
        const seen = new Map<string, string>()
        for (const s of steps) {
          if (s.kind === 'inc' || s.kind === 'dec') {
            const itemId = IDS[s.id]!
            try {
              if (s.kind === 'inc') await counters[s.node]!.increment(itemId, s.n)
              else await counters[s.node]!.decrement(itemId, s.n)
              total.set(itemId, total.get(itemId)! + (s.kind === 'inc' ? s.n : -s.n))
            } catch (err) {
              if ((err as ConvergentError).code !== 'ERR_INSUFFICIENT_RIGHTS') throw err
            }
          } else if (s.kind === 'transfer' && s.to !== s.node) {
            try {
              await counters[s.node]!.transfer(IDS[s.id]!, HONEST[s.to]!, s.n)
            } catch (err) {
              if ((err as ConvergentError).code !== 'ERR_INSUFFICIENT_RIGHTS') throw err
            }
          } else if (s.kind === 'split') {
            const all = [...HONEST, FORGER]
            hub.partition(
              [all[s.node]!],
              all.filter((_, i) => i !== s.node),
            )
          } else if (s.kind === 'heal') hub.heal()
          else if (s.kind === 'sync') await r[HONEST[s.node]!]!.sync().catch(() => undefined)
          else if (s.kind === 'forge') {
            const itemId = IDS[s.id]!
            const state = (await r[FORGER]!.collection<State>('stock', { backend: 'automerge' }).get(itemId)) ?? {}
            for (const [k, v] of Object.entries(state)) {
              const name = rowNames({ [k]: 1 })[0]!
              if (name.includes('|') && typeof v === 'string') seen.set(`${itemId}/${name.split('|')[0]}`, `${k}\u0000${v}`)
            }
            await forge(r[FORGER]!, s.forgery, HONEST[s.victim]!, itemId, seen)
          }
          for (const c of counters) for (const itemId of IDS) expect(await c.value(itemId), `${itemId} after ${JSON.stringify(s)}`).to.be.at.least(0)
        }
        hub.heal()
        for (let round = 0; round < 2; round++) for (const n of HONEST) await r[n]!.sync().catch(() => undefined)
        for (const itemId of IDS) {
          const values = await Promise.all(counters.map((c) => c.value(itemId)))
          expect(values, `${itemId} on ${HONEST.join(', ')} (acknowledged total ${total.get(itemId)})`).to.deep.equal(HONEST.map(() => total.get(itemId)))
          const rights = await Promise.all(counters.map((c) => c.inspect(itemId)))
          for (const seenRights of rights) expect(seenRights.rights).to.not.have.property(FORGER)
        }
        await Promise.all(replicas.splice(0).map((x) => x.close()))
      }),
      { numRuns: Number(process.env.COUNTER_FORGER_RUNS ?? 25) },
    )
  })
})
