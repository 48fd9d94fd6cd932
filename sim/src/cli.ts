#!/usr/bin/env node
import { mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Command, InvalidArgumentError } from 'commander'
import { renderHtml } from './report/html.js'
import { checkHtmlInChromium, CHROMIUM_PATHS } from './report/html-check.js'
import { ProgressBar } from './report/progress.js'
import type { Report } from './report/report.js'
import { runScenario } from './run/runner.js'
import { listScenarios, loadScenario, ScenarioError } from './run/scenario.js'

const COMMAND = 'node sim/dist/src/cli.js'

// `… | head` closes stdout early: stop quietly instead of crashing with EPIPE.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err
  process.exit(0)
})

function positiveInt(value: string): number {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer')
  return n
}

const program = new Command()
program.name('convergent-sim').description('Run Convergent replicas over a simulated network in virtual time, with faults, checks and a report.')

program
  .command('list')
  .description('list the shipped scenarios')
  .action(() => {
    const all = listScenarios()
    const width = Math.max(...all.map((s) => s.name.length))
    for (const s of all) {
      const summary = s.description.split(/(?<=\.)\s|:\s/)[0]!
      process.stdout.write(`${s.name.padEnd(width)} ${String(s.nodes).padStart(5)} nodes ${String(s.durationMs / 1000).padStart(3)} s  ${summary}\n`)
    }
  })

program
  .command('run')
  .description('run a scenario (a shipped name or a path to a .json file)')
  .argument('<scenario>', 'scenario name (see list) or path to a scenario .json')
  .option('--nodes <n>', 'number of nodes (overrides the scenario)', positiveInt)
  .option('--seed <s>', "random seed (default: the scenario's)", positiveInt)
  .option('--out <dir>', 'where to write report.json and report.html (default sim-out/<scenario>-seed<seed>)')
  .option('--live', 'run on real libp2p nodes in this process, in real time (≤ 10 nodes)')
  .option('--quiet', 'no progress bar')
  .action(async (name: string, opts: { nodes?: number; seed?: number; out?: string; live?: boolean; quiet?: boolean }) => {
    const scenario = loadScenario(name, opts.nodes === undefined ? {} : { nodes: opts.nodes })
    if (opts.live === true && scenario.nodes > 10) {
      throw new ScenarioError(`live mode runs at most 10 nodes in one process; '${scenario.name}' has ${scenario.nodes} (add --nodes 10)`)
    }
    const seed = opts.seed ?? scenario.seed
    const bar = opts.quiet === true ? undefined : new ProgressBar(`${scenario.name}${opts.live === true ? ' (live)' : ''}`)
    let report: Report
    if (opts.live === true) {
      // Loaded only when asked for: it pulls in libp2p.
      const { runLive } = await import('./live/live-runner.js')
      report = await runLive(scenario, { seed, command: COMMAND, scenarioRef: name, ...(bar ? { onProgress: (p) => bar.update(p) } : {}) })
    } else {
      report = await runScenario(scenario, { seed, command: COMMAND, scenarioRef: name, ...(bar ? { onProgress: (p) => bar.update(p) } : {}) })
    }
    bar?.done()
    const out = resolve(opts.out ?? join('sim-out', `${scenario.name}${opts.live === true ? '-live' : ''}-seed${seed}`))
    mkdirSync(out, { recursive: true })
    writeFileSync(join(out, 'report.json'), `${JSON.stringify(report, null, 2)}\n`)
    writeFileSync(join(out, 'report.html'), renderHtml(report))
    printSummary(report, out)
    process.exitCode = report.passed ? 0 : 1
  })

program
  .command('check-html')
  .description('open a report.html in headless Chromium and check that it renders')
  .argument('<report.html>')
  .action((file: string) => {
    const result = checkHtmlInChromium(file)
    if (result === undefined) {
      process.stderr.write(`no Chromium found (looked for ${CHROMIUM_PATHS.join(', ')}); install the Debian package 'chromium' to run this check\n`)
      process.exitCode = 3
      return
    }
    if (result.ok) process.stdout.write(`${file} renders in ${result.browser} (screenshot ${result.screenshotBytes} bytes)\n`)
    else {
      process.stdout.write(`${file} does not render correctly in ${result.browser}:\n${result.problems.map((p) => `  ${p}`).join('\n')}\n`)
      process.exitCode = 1
    }
  })

function printSummary(r: Report, out: string): void {
  const w = (s: string): boolean => process.stdout.write(`${s}\n`)
  const lat = (s: Report['propagationLatencyMs']['allWrites']): string =>
    s.count === 0 ? 'no writes' : `median ${s.median} ms, p99 ${s.p99} ms, max ${s.max} ms (${s.count} writes)`
  w(
    `${r.scenario.name}: ${r.passed ? 'PASSED' : 'FAILED'} (${r.mode}, seed ${r.seed}, ${r.nodes.initial} nodes, ${(r.virtualTimeMs.end / 1000).toFixed(1)} s virtual in ${(r.wall.elapsedMs / 1000).toFixed(1)} s wall)`,
  )
  w(`  updates           ${r.updates.acknowledged} acknowledged of ${r.updates.issued}`)
  w(
    `  messages/update   ${r.messages.perUpdate} (gossip data ${r.messages.gossipDataPerUpdate}, control ${r.messages.gossipControlPerUpdate}, sync ${r.messages.syncPerUpdate}); bytes/update ${r.bytes.perUpdate === null ? '—' : Math.round(r.bytes.perUpdate)}`,
  )
  w(`  propagation       all writes: ${lat(r.propagationLatencyMs.allWrites)}`)
  w(`                    healthy writes: ${lat(r.propagationLatencyMs.healthyWrites)}`)
  w(
    `  convergence       ${r.convergence.timeToConvergeAfterHealMs === null ? '' : `${r.convergence.timeToConvergeAfterHealMs} ms after the last heal; `}equal states ${r.convergence.timeToEqualStatesAfterQuiescenceMs ?? 'never'} ms after quiescence`,
  )
  if (r.counter !== null) {
    const c = r.counter
    w(
      `  counter '${c.name}'  ${c.decrements.accepted} sales accepted (${c.decrements.amountAccepted} units), ${c.decrements.rejected} rejected for lack of rights, ${c.decrements.neverSettled} never settled; ${c.increments.acknowledged} restocks (${c.increments.amountAcknowledged} units incl. initial), ${c.transfers.acknowledged} transfers`,
    )
    w(
      `                    rights requests ${c.rightsRequests.sent} (${c.rightsRequests.rightsGranted} rights granted, ${c.rightsRequests.emptyAnswers} empty answers, ${c.rightsRequests.failed} failed); lowest value seen ${c.lowestValueSeen.overall ?? '—'} (min ${c.min}); final ${Object.entries(
        c.final,
      )
        .map(([id, f]) => `${id}=${f.value ?? 'differs'}`)
        .join(' ')}`,
    )
  }
  w(`  memory            peak RSS ${Math.round(r.memory.peakRssBytes / 1048576)} MiB, heap ${Math.round(r.memory.peakHeapUsedBytes / 1048576)} MiB`)
  for (const c of r.checks) w(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.summary}`)
  for (const t of r.targets) w(`  ${t.met ? 'met ' : 'MISS'} target ${t.name}: ${t.value ?? '—'} (limit < ${t.limit})`)
  if (!r.passed) {
    w('')
    w(`FAILED with seed ${r.seed}. Replay with:`)
    w(`  ${r.replay}`)
    w('Trace (last events):')
    for (const e of r.trace.slice(-15)) w(`  ${String(e.at).padStart(8)} ms  ${e.event}`)
    for (const c of r.checks.filter((x) => !x.ok && x.details !== undefined)) w(`  ${c.name}: ${JSON.stringify(c.details).slice(0, 800)}`)
  }
  w(`  report: ${join(out, 'report.json')} and report.html`)
}

program.parseAsync().catch((err: unknown) => {
  if (err instanceof ScenarioError) process.stderr.write(`convergent-sim: ${err.message}\n`)
  else process.stderr.write(`convergent-sim: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 2
})
