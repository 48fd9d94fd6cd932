import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { encodeMessage, MessageType } from '@convergent/core/internal'
import { runScenario, SimNode, type Report, type RunOptions } from '../src/index.js'
import { Ledger } from '../src/workload/ledger.js'
import { smallScenario } from './helpers.js'

const check = (r: Report, name: string) => {
  const c = r.checks.find((x) => x.name === name)
  if (c === undefined) throw new Error(`no check ${name} in ${r.checks.map((x) => x.name).join(', ')}`)
  return c
}

/** A tamper hook: node `index`'s disk acknowledges every write after `ms` and keeps none of them. */
function lyingDiskAfter(index: number, ms: number): RunOptions['tamper'] {
  return (ctx) => {
    const store = (ctx.nodes[index] as SimNode).store
    const write = store.write.bind(store)
    store.write = (ops) => (ctx.scheduler.now > ms ? Promise.resolve() : write(ops))
  }
}

describe('sim: checkers catch broken runs', function () {
  this.timeout(60_000)

  it('convergence fails when the network never heals', async function () {
    const scenario = smallScenario('never-heals', {
      healAtEnd: false,
      settleMs: 4000,
      faults: [{ at: 3000, type: 'partition', split: [0.5, 0.5] }],
    })
    const r = await runScenario(scenario, { seed: 1 })
    expect(r.passed).to.equal(false)
    expect(check(r, 'convergence').ok).to.equal(false)
    expect(check(r, 'convergence').summary).to.match(/2 different states/)
    expect(check(r, 'acknowledged-writes-survive').ok).to.equal(false)
    expect(r.replay).to.equal('node sim/dist/src/cli.js run never-heals --seed 1 --nodes 6')
  })

  it('acknowledged-writes, restart and monotonic checks fail when a store acknowledges writes it never keeps', async function () {
    const scenario = smallScenario('lying-store', {
      faults: [
        { at: 1500, type: 'isolate', node: 1 },
        { at: 5000, type: 'crash', node: 1 },
        { at: 6000, type: 'restart', node: 1 },
        { at: 7000, type: 'heal' },
      ],
      invariants: [{ kind: 'restart-recovers-acked-writes' }],
    })
    const r = await runScenario(scenario, {
      seed: 2,
      // Node 1's disk lies after 2 s: writes "succeed" and are gone. Isolated, it cannot pass them on.
      tamper: lyingDiskAfter(1, 2000),
    })
    expect(r.passed).to.equal(false)
    expect(check(r, 'acknowledged-writes-survive').ok).to.equal(false)
    expect(check(r, 'restart-recovers-acked-writes').ok).to.equal(false)
    expect(check(r, 'monotonic-registers').ok).to.equal(false)
  })

  it('monotonic-registers flags a register that goes back or vanishes', function () {
    const ledger = new Ledger()
    ledger.addNode()
    const w = ledger.issue(0, 'c', 'e1', 3, 10)
    ledger.ack(w, 11)
    ledger.observe(0, 'c', 'e1', { n0: 3 }, 11)
    expect(w.arrivals[0]).to.equal(11)
    ledger.observe(0, 'c', 'e1', { n0: 2 }, 12)
    ledger.observe(0, 'c', 'e1', {}, 13)
    expect(ledger.violations.map((v) => v.kind)).to.deep.equal(['went-back', 'vanished'])
  })

  it('groups-converge-during-partition fails when one side cannot replicate internally', async function () {
    const scenario = smallScenario('side-dead', {
      faults: [
        { at: 3000, type: 'partition', split: [0.5, 0.5] },
        { at: 3000, type: 'network', set: { loss: 1 } },
        { at: 8000, type: 'network', set: { loss: 0 } },
        { at: 8000, type: 'heal' },
      ],
      network: { requestLoss: 'drop', requestTimeoutMs: 2000 },
      invariants: [{ kind: 'groups-converge-during-partition', graceMs: 1000 }],
    })
    const r = await runScenario(scenario, { seed: 4 })
    expect(check(r, 'groups-converge-during-partition').ok).to.equal(false)
    expect(check(r, 'convergence').ok, 'it still converges after the heal').to.equal(true)
  })

  it('no-errors fails when a replica receives garbage', async function () {
    const scenario = smallScenario('garbage')
    const r = await runScenario(scenario, {
      seed: 5,
      tamper: (ctx) => {
        ctx.scheduler.at(5000, () => {
          const net = (ctx.nodes[0] as SimNode).network!
          void net.publish(
            '/convergent/default/c/yjs-items',
            encodeMessage(MessageType.Push, { c: 'yjs-items', b: 'yjs', o: net.peerId, s: 1, e: [['e1', new Uint8Array([1, 2, 3])]] }),
          )
        })
      },
    })
    expect(check(r, 'no-errors').ok).to.equal(false)
    expect(JSON.stringify(check(r, 'no-errors').details)).to.match(/invalidDelta/)
  })

  it('converge-within fails when the limit is shorter than the repair takes', async function () {
    const scenario = smallScenario('too-strict', {
      faults: [
        { at: 3000, type: 'isolate', node: 2 },
        { at: 8000, type: 'heal' },
      ],
      invariants: [{ kind: 'converge-within', ms: 1 }],
    })
    const r = await runScenario(scenario, { seed: 6 })
    expect(check(r, 'converge-within').ok).to.equal(false)
  })

  // --- bounded counter ---
  const stockScenario = (name: string, overrides: Record<string, unknown> = {}) =>
    smallScenario(name, {
      workload: {
        ratePerSec: 2,
        entities: 4,
        startMs: 1_000,
        counter: { ids: 2, initial: 30, restockers: 2, incrementRate: 2, decrementRate: 8, maxDecrement: 2, waitMs: 300, transferRate: 1 },
      },
      ...overrides,
    })

  it('counter-never-below-min (and counter-converges) fail when a replica reports a negative value', async function () {
    const r = await runScenario(stockScenario('negative-stock'), {
      seed: 7,
      tamper: (ctx) => {
        // n2's counter lies from 5 s on: it reports every value 1,000 lower than it is.
        const node = ctx.nodes[2] as SimNode
        const real = node.stock.bind(node)
        node.stock = () => {
          const c = real()
          if (c === undefined) return c
          return new Proxy(c, {
            get(target, prop) {
              if (prop === 'inspect') {
                return async (id: string) => {
                  const seen = await target.inspect(id)
                  return ctx.scheduler.now < 5000 ? seen : { ...seen, value: seen.value - 1000 }
                }
              }
              const v = Reflect.get(target, prop) as unknown
              return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
            },
          })
        }
      },
    })
    expect(r.passed).to.equal(false)
    expect(check(r, 'counter-never-below-min').ok).to.equal(false)
    expect(JSON.stringify(check(r, 'counter-never-below-min').details)).to.match(/n2 showed sku\d = -\d+ at \d+ ms \(sample\)/)
    expect(check(r, 'counter-converges').ok).to.equal(false)
    expect(r.counter!.lowestValueSeen.byReplica.n2).to.be.below(0)
    expect(r.counter!.lowestValueSeen.byReplica.n1).to.be.at.least(0)
  })

  it('counter-converges fails when a disk acknowledges decrements and forgets them', async function () {
    const scenario = stockScenario('forgetful-seller', {
      faults: [
        { at: 1500, type: 'isolate', node: 1 },
        { at: 5000, type: 'crash', node: 1 },
        { at: 6000, type: 'restart', node: 1 },
        { at: 7000, type: 'heal' },
      ],
    })
    const r = await runScenario(scenario, {
      seed: 8,
      // n1 (a restocker, so it holds rights) sells while cut off; its disk "succeeds" and keeps nothing after 2 s.
      tamper: lyingDiskAfter(1, 2000),
    })
    expect(r.passed).to.equal(false)
    const converges = check(r, 'counter-converges')
    expect(converges.ok).to.equal(false)
    expect(JSON.stringify(converges.details)).to.match(/acknowledged decrements/)
  })

  it('counter-no-oversell fails when a replica sells without holding rights', async function () {
    const r = await runScenario(stockScenario('rogue-seller'), {
      seed: 9,
      tamper: (ctx) => {
        // At 4 s n3 bypasses the escrow: it writes a sale of 500 straight into the counter's state.
        ctx.scheduler.at(4000, () => {
          const node = ctx.nodes[3] as SimNode
          const rec = ctx.counterLedger.issue('decrement', 3, 'sku0', 500, ctx.scheduler.now)
          node
            .replica!.collection<Record<string, number>>('stock', { backend: 'automerge' })
            .update('sku0', (s) => {
              s['n|n3'] = (s['n|n3'] ?? 0) + 500
            })
            .then(() => ctx.counterLedger.ack(rec, ctx.scheduler.now))
            .catch((err: unknown) => ctx.errors.push(String(err)))
        })
      },
    })
    expect(r.passed).to.equal(false)
    const oversell = check(r, 'counter-no-oversell')
    expect(oversell.ok).to.equal(false)
    expect(JSON.stringify(oversell.details)).to.match(/sku0: \d+ sold \(acknowledged decrements\) > \d+ acknowledged/)
    expect(JSON.stringify(oversell.details)).to.match(/n3 holding -\d+ rights/)
    expect(check(r, 'counter-never-below-min').ok).to.equal(false)
    expect(r.counter!.violations.negativeRights).to.be.greaterThan(0)
  })

  it('the CLI prints the seed, a replay command and a short trace when a run fails', function () {
    const dir = mkdtempSync(join(tmpdir(), 'sim-cli-'))
    const file = join(dir, 'broken.json')
    writeFileSync(
      file,
      JSON.stringify({
        nodes: 4,
        durationMs: 6000,
        settleMs: 3000,
        healAtEnd: false,
        workload: { ratePerSec: 5, entities: 5, startMs: 1000 },
        faults: [{ at: 2000, type: 'isolate', node: 3 }],
      }),
    )
    const cli = fileURLToPath(new URL('../src/cli.js', import.meta.url))
    let run
    try {
      run = spawnSync(process.execPath, [cli, 'run', file, '--seed', '77', '--out', dir, '--quiet'], { encoding: 'utf8' })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
    expect(run.stdout).to.include('FAILED with seed 77')
    expect(run.stdout).to.include(`run ${file} --seed 77 --nodes 4`)
    expect(run.status).to.equal(1)
    expect(run.stdout).to.match(/isolate begins: n3/)
  })
})
