import { createServer, createConnection, type AddressInfo } from 'node:net'
import { once } from 'node:events'
import { expect } from 'chai'
import { percentile, median } from '../src/lib/stats.js'
import { ratioText, toMarkdown, type Report } from '../src/lib/report.js'
import type { Result } from '../src/lib/result.js'
import { TcpMeter } from '../src/lib/tcp-meter.js'
import { inWindow } from '../src/lib/time.js'
import { product } from '../src/lib/values.js'
import { alternate, overhead, rotation, spread } from '../src/lib/variants.js'

const result = (over: Partial<Result>): Result => ({
  workload: 'W1',
  case: 'distinct',
  title: 'W1 local durable writes',
  system: 'convergent-yjs',
  label: 'Convergent (Yjs)',
  role: 'ours',
  backend: 'yjs',
  n: 10,
  params: {},
  wallMs: 1,
  startedAt: '2026-01-01T00:00:00Z',
  loadAverage: 0,
  primary: { name: 'durable writes/s', value: 1000, unit: 'ops/s', better: 'higher' },
  metrics: {},
  ...over,
})

describe('bench lib', () => {
  it('percentile uses the nearest rank', () => {
    expect(median([3, 1, 2])).to.equal(2)
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99)).to.equal(10)
    expect(Number.isNaN(percentile([], 50))).to.equal(true)
  })

  it('ratios say how many times better Convergent is, and the share of the raw ceiling', () => {
    const ours = result({})
    expect(ratioText(ours, result({ role: 'peer', primary: { ...ours.primary, value: 50 } }))).to.equal('20×')
    expect(ratioText(ours, result({ role: 'raw', primary: { ...ours.primary, value: 2000 } }))).to.equal('50 % of ceiling')
    const time = { name: 't', value: 100, unit: 'ms', better: 'lower' as const }
    expect(ratioText(result({ primary: time }), result({ role: 'peer', primary: { ...time, value: 450 } }))).to.equal('4.5×')
  })

  it('the markdown names the machine and the command, and shows failures', () => {
    const report: Report = {
      machine: { cpu: 'Test CPU', cores: 2, memoryGiB: 4, os: 'linux', node: 'v20', loadAverage: 0.5, commit: 'abc' },
      command: 'npm run bench -- --quick',
      startedAt: '2026-01-01T00:00:00Z',
      mode: 'quick',
      results: [result({}), result({ system: 'orbitdb', label: 'OrbitDB', role: 'peer', error: 'boom\nstack' })],
    }
    const md = toMarkdown(report)
    expect(md).to.contain('Test CPU, 2 cores')
    expect(md).to.contain('`npm run bench -- --quick`')
    expect(md).to.contain('**failed**: boom')
  })

  it('inWindow runs every task with at most `window` in flight', async () => {
    let inFlight = 0
    let peak = 0
    const seen: number[] = []
    await inWindow(20, 3, async (i) => {
      peak = Math.max(peak, ++inFlight)
      await new Promise((r) => setTimeout(r, 1))
      seen.push(i)
      inFlight--
    })
    expect(peak).to.equal(3)
    expect(seen.sort((a, b) => a - b)).to.deep.equal([...Array(20).keys()])
  })

  it('product() is deterministic and JSON data for every index', () => {
    expect(product(7)).to.deep.equal(product(7))
    for (const i of [-1, 0, 5, 1e6]) expect(product(i).tags.every((t) => typeof t === 'string')).to.equal(true)
  })

  it('TcpMeter forwards and counts both directions, and partitions', async () => {
    const echo = createServer((s) => s.pipe(s))
    echo.listen(0, '127.0.0.1')
    await once(echo, 'listening')
    const meter = await TcpMeter.start((echo.address() as AddressInfo).port)
    try {
      const socket = createConnection({ host: '127.0.0.1', port: meter.port })
      await once(socket, 'connect')
      socket.write('hello')
      await once(socket, 'data')
      expect(meter.bytesUp).to.equal(5)
      expect(meter.bytesDown).to.equal(5)
      meter.partition()
      await once(socket, 'close')
    } finally {
      await meter.close()
      echo.close()
    }
  })

  it('the overhead workloads alternate their variants, with an untimed warm-up of each, and compare medians', async () => {
    expect(rotation(['a', 'b', 'c'], 1)).to.deep.equal(['b', 'c', 'a'])
    const calls: string[] = []
    const lines: string[] = []
    const samples = await alternate(
      ['plain', 'cluster'] as const,
      3,
      async (v, round) => (calls.push(`${v}${round}`), v === 'plain' ? 100 : 110 + round),
      (line) => lines.push(line),
      { warmUp: true },
    )
    expect(calls).to.deep.equal(['plain-1', 'cluster-1', 'plain0', 'cluster0', 'cluster1', 'plain1', 'plain2', 'cluster2'])
    expect(samples).to.deep.equal({ plain: [100, 100, 100], cluster: [110, 111, 112] })
    expect(lines).to.have.length(4)
    // Time (lower is better): 111 against 100 is 11 % added; throughput: 100 against 111 is 11 % lost.
    expect(overhead(samples.plain, samples.cluster, 'lower')).to.deep.equal({ median: 11, best: 10 })
    expect(overhead(samples.cluster, samples.plain, 'higher')).to.deep.equal({ median: 11, best: 12 })
    expect(spread([90, 100, 110])).to.equal(20)
  })
})
