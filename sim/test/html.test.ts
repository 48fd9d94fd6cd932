import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { tmpdir } from 'node:os'
import { expect } from 'chai'
import { checkHtmlInChromium, findChromium, renderHtml, runScenario } from '../src/index.js'
import { smallScenario } from './helpers.js'

describe('sim: report.html', function () {
  this.timeout(90_000)
  let html = ''
  let file = ''

  before(async function () {
    const report = await runScenario(
      smallScenario('html', {
        faults: [
          { at: 3000, type: 'partition', split: [0.5, 0.5] },
          { at: 5000, type: 'crash', node: 1 },
          { at: 7000, type: 'heal' },
          { at: 8000, type: 'restart', node: 1 },
        ],
        targets: { msgsPerUpdate: 1000, medianPropagationMs: 1000 },
        workload: { ratePerSec: 10, entities: 12, startMs: 1_000, counter: { ids: 2, initial: 20, decrementRate: 4 } },
      }),
      { seed: 2 },
    )
    html = renderHtml(report)
    file = join(mkdtempSync(join(tmpdir(), 'sim-report-')), 'report.html')
    writeFileSync(file, html)
  })

  after(function () {
    if (file !== '') rmSync(dirname(file), { recursive: true, force: true })
  })

  it('is one self-contained page: SVG timeline, checks, targets, metrics, trace; no scripts or external resources', function () {
    expect(html).to.match(/^<!doctype html>/)
    expect(html).to.match(/<svg id="timeline"[^>]*viewBox=/)
    for (const lane of ['faults', 'divergence', 'messages / s', 'stock', 'propagation']) expect(html).to.include(`>${lane}</text>`)
    expect(html).to.include("<h2>Bounded counter 'stock' (min 0, 2 id(s), 20 initial each)</h2>")
    expect(html).to.match(/<rect [^>]*fill="#d9480f"/, 'the partition is drawn')
    expect(html).to.include('<h2>Checks</h2>')
    expect(html).to.include('<h2>Targets</h2>')
    expect(html).to.include('Replay: <code>node sim/dist/src/cli.js run html --seed 2 --nodes 6</code>')
    expect(html).to.not.match(/<script|https?:\/\/(?!www\.w3\.org)/)
    expect(html).to.not.match(/\bNaN\b|undefined/)
  })

  it('renders in headless Chromium (skipped when /usr/bin/chromium is not installed)', function () {
    if (findChromium() === undefined) {
      console.log('      (no Chromium: install the Debian package "chromium" to run this check)')
      this.skip()
    }
    const result = checkHtmlInChromium(file)!
    expect(result.problems).to.deep.equal([])
    expect(result.ok).to.equal(true)
  })
})
