import { expect } from 'chai'
import { decodeMessage, MessageType } from '@convergent/core/internal'
import { loadScenario, resolveScenario, runScenario, type Scenario, type SimNode } from '../src/index.js'

/** The shipped stock-partition scenario, shortened: the same faults at half the times. */
function stockPartitionSmall(): Scenario {
  const s = loadScenario('stock-partition')
  return {
    ...s,
    name: 'stock-partition-small',
    durationMs: 14_000,
    settleMs: 20_000,
    workload: { ...s.workload, startMs: 1_000 },
    faults: [
      {
        at: 4000,
        type: 'partition',
        groups: [
          [0, 1, 2],
          [3, 4, 5],
        ],
      },
      { at: 6000, type: 'crash', node: 4 },
      { at: 7500, type: 'restart', node: 4 },
      { at: 9000, type: 'heal' },
    ],
  }
}

describe('sim: bounded counter workload', function () {
  this.timeout(60_000)

  it('stock-partition (small): rights run out on the side without restockers, never below min, converges to the ledger', async function () {
    const r = await runScenario(stockPartitionSmall(), { seed: 1 })
    expect(r.passed, JSON.stringify(r.checks, null, 1)).to.equal(true)
    expect(r.checks.map((c) => c.name)).to.include.members(['counter-never-below-min', 'counter-converges', 'counter-no-oversell'])
    const c = r.counter!
    expect(c.decrements.accepted).to.be.greaterThan(50)
    expect(c.decrements.rejected, 'demand exceeds stock: some sales are refused').to.be.greaterThan(0)
    expect(c.rightsRequests.sent).to.be.greaterThan(0)
    expect(c.rightsRequests.rightsGranted).to.be.greaterThan(0)
    expect(c.valuesObserved.remoteEvents).to.be.greaterThan(0)
    expect(c.valuesObserved.samples).to.be.greaterThan(0)
    expect(c.lowestValueSeen.overall).to.be.at.least(0)
    expect(c.violations).to.deep.equal({ belowMin: 0, negativeRights: 0 })
    for (const f of Object.values(c.final)) {
      expect(f.value).to.be.a('number')
      expect(f.value!).to.be.within(f.expectedLow, f.expectedHigh)
    }
    // The sellers on the side without restockers (n3…n5) were refused more often than those with them.
    const rejected = (ids: string[]) => ids.reduce((a, id) => a + c.decrements.byReplica[id]!.rejected, 0)
    expect(rejected(['n3', 'n4', 'n5'])).to.be.greaterThan(rejected(['n0', 'n1', 'n2']))
    expect(r.timeline.stock!.low).to.have.length(r.timeline.missingUpdates.length)
  })

  it('validates the counter workload', function () {
    expect(() => resolveScenario({ nodes: 3, workload: { counter: { ids: 2, restockers: 4 } } }, 'bad')).to.throw(/restockers is 4 but the run has 3 nodes/)
    expect(() => resolveScenario({ workload: { counter: { ids: 1, name: 'yjs-items' } } }, 'bad')).to.throw(/taken by the register workload/)
    expect(() => resolveScenario({ workload: { counter: { ids: 1, maxDecrement: 0 } } }, 'bad')).to.throw(/maxDecrement must be an integer ≥ 1/)
    const off = resolveScenario({}, 'plain')
    expect(off.workload.counter.ids).to.equal(0)
  })

  it('a run without a counter workload has no counter checks or report section', async function () {
    const r = await runScenario(
      resolveScenario({ nodes: 3, durationMs: 3000, settleMs: 5000, workload: { ratePerSec: 5, entities: 4, startMs: 500 } }, 'plain'),
      { seed: 1 },
    )
    expect(r.counter).to.equal(null)
    expect(r.checks.map((c) => c.name).filter((n) => n.startsWith('counter-'))).to.deep.equal([])
    expect(r.timeline.stock).to.equal(undefined)
  })

  /**
   * A regression test for a bug the stock-churn scenario found in core: anti-entropy computed
   * the deltas it sent from the in-memory document, which runs ahead of the disk. Here: n0
   * holds 9 rights; during its first sync round with n1 after a heal it transfers 5 rights to
   * n1 (in memory at once, durable only writeLatencyMs = 1000 ms later). n0 crashes 40 ms later,
   * losing the transfer, and restarts from its store with all 9 rights. Had the round sent the
   * transfer (it did, before replication/durable.ts), n1 would sell 5 and n0 9: 15 sold of 10
   * stocked, and every replica at −5.
   */
  it('rights are synced only once durable, so a crash cannot make them be spent twice', async function () {
    const scenario = resolveScenario(
      {
        nodes: 2,
        durationMs: 12_000,
        settleMs: 10_000,
        workload: {
          ratePerSec: 0,
          entities: 1,
          counter: { ids: 1, initial: 10, restockers: 1, incrementRate: 0, decrementRate: 0, transferRate: 0, waitMs: 0 },
        },
        replica: { writeLatencyMs: 1000, syncIntervalMs: 600_000 },
        faults: [
          { at: 500, type: 'isolate', node: 1 },
          { at: 3000, type: 'heal' },
        ],
      },
      'unsynced-leak',
    )
    let phase: 'waiting' | 'transferred' | 'crashed' = 'waiting'
    const r = await runScenario(scenario, {
      seed: 1,
      tamper: (ctx) => {
        const [n0, n1] = ctx.nodes as [SimNode, SimNode]
        const op = (kind: 'transfer' | 'decrement', node: SimNode, n: number, run: () => Promise<unknown>): void => {
          const rec = ctx.counterLedger.issue(kind, node.index, 'sku0', n, ctx.scheduler.now, kind === 'transfer' ? { to: 1 } : {})
          run().then(
            () => ctx.counterLedger.ack(rec, ctx.scheduler.now),
            (err: { code?: string }) => ctx.counterLedger.fail(rec, err.code ?? 'ERR_UNKNOWN', ctx.scheduler.now),
          )
        }
        ctx.scheduler.at(1000, () => op('decrement', n0, 1, () => n0.stock()!.decrement('sku0', 1)))
        const collectionOf = (data: Uint8Array): unknown => (decodeMessage(data, Number.MAX_SAFE_INTEGER).body as { c?: unknown }).c
        const start = n0.start.bind(n0)
        n0.start = () => {
          start()
          const net = n0.network!
          const inner = net.request.bind(net)
          net.request = async (peer, data, options) => {
            const sentAt = ctx.scheduler.now
            if (phase === 'transferred' && data[2] === MessageType.DeltasRequest && collectionOf(data) === 'stock') {
              // n0 sends n1 the stock collection; it crashes before the transfer is durable.
              phase = 'crashed'
              const t = sentAt + 40
              ctx.scheduler.at(t, () => {
                n0.crash()
                ctx.control.isolate(0)
              })
              ctx.scheduler.at(t + 100, () => op('decrement', n1, 5, () => n1.stock()!.decrement('sku0', 5)))
              ctx.scheduler.at(t + 500, () => n0.start())
              ctx.scheduler.at(t + 1000, () => op('decrement', n0, 9, () => n0.stock()!.decrement('sku0', 9)))
              ctx.scheduler.at(t + 3000, () => ctx.control.heal())
            }
            const reply = await inner(peer, data, options)
            if (phase === 'waiting' && sentAt > 3000 && data[2] === MessageType.DeltasRequest && collectionOf(data) === 'automerge-items') {
              // The round is about to move on to the stock collection: transfer now.
              phase = 'transferred'
              op('transfer', n0, 5, () => n0.stock()!.transfer('sku0', 'n1', 5))
              await new Promise((resolve) => setImmediate(resolve))
            }
            return reply
          }
        }
      },
    })
    expect(phase, 'the round went as planned').to.equal('crashed')
    expect(
      r.passed,
      JSON.stringify(
        r.checks.filter((c) => !c.ok),
        null,
        1,
      ),
    ).to.equal(true)
  })
})
