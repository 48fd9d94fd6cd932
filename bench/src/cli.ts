#!/usr/bin/env node
// `npm run bench [-- --quick]`: plans the runs, executes each in its own process, writes
// bench/results/<name>.jsonl and .md. Progress goes to stderr; the markdown table to stdout.
import '@convergent/libp2p/polyfill'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Command, InvalidArgumentError } from 'commander'
import { progress } from './lib/log.js'
import { machine } from './lib/machine.js'
import { parseJsonl, runKey, writeReport, type Report } from './lib/report.js'
import type { Result } from './lib/result.js'
import { SYSTEM_IDS } from './peers/catalog.js'
import { runSpec } from './runner.js'
import { WORKLOADS, type PlanOptions } from './workloads/index.js'

const DEFAULT_OUT = fileURLToPath(new URL('../../results', import.meta.url))

const positiveInt = (value: string): number => {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer')
  return n
}
const list = (value: string): string[] =>
  value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)

const program = new Command()
  .name('convergent-bench')
  .description('Convergent benchmarks (W1–W6) against the raw ceiling, OrbitDB, automerge-repo and y-leveldb')
  .option('--quick', 'every workload at small N (under 2 minutes; CI runs this)', false)
  .option('--only <workloads>', `comma-separated workloads (${WORKLOADS.map((w) => w.id).join(',')})`, list)
  .option('--systems <ids>', `comma-separated systems (${SYSTEM_IDS.join(',')})`, list)
  .option('--window <n>', 'writes in flight at once', positiveInt, 64)
  .option('--scale-max <n>', 'W5: the largest store to build', positiveInt, 1_000_000)
  .option('--scale-budget <seconds>', 'W5: time budget for building one store', positiveInt, 600)
  .option('--out <dir>', 'where results go', DEFAULT_OUT)
  .option('--name <name>', 'results file name (default: results, results-quick, or results-partial with filters)')
  .option('--update', 'rerun the selected runs and replace them in the existing results file (results, or results-quick)', false)
  .option('--list', 'print the planned runs and exit', false)
  .parse()

interface Options {
  quick: boolean
  only?: string[]
  systems?: string[]
  window: number
  scaleMax: number
  scaleBudget: number
  out: string
  name?: string
  update: boolean
  list: boolean
}

async function main(): Promise<number> {
  const o = program.opts<Options>()
  for (const id of o.only ?? []) if (!WORKLOADS.some((w) => w.id === id)) throw new InvalidArgumentError(`unknown workload ${id}`)
  for (const id of o.systems ?? []) if (!(SYSTEM_IDS as string[]).includes(id)) throw new InvalidArgumentError(`unknown system ${id}`)
  const plan: PlanOptions = { mode: o.quick ? 'quick' : 'full', window: o.window, scaleMax: o.scaleMax, scaleBudgetS: o.scaleBudget }
  const specs = WORKLOADS.filter((w) => o.only === undefined || o.only.includes(w.id))
    .flatMap((w) => w.plan(plan))
    .filter((s) => o.systems === undefined || o.systems.includes(s.system))
  if (o.list) {
    for (const s of specs) process.stdout.write(`${s.workload} ${s.case} ${s.system} n=${s.n}\n`)
    return 0
  }

  const filtered = o.only !== undefined || o.systems !== undefined
  const name = o.name ?? (filtered && !o.update ? 'results-partial' : o.quick ? 'results-quick' : 'results')
  const command = ['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' ')
  const startedAt = new Date().toISOString()
  let report: Report = { machine: machine(), command, startedAt, mode: plan.mode, results: [] }
  let update: NonNullable<Report['updates']>[number] | undefined
  if (o.update) {
    report = parseJsonl(await readFile(join(o.out, `${name}.jsonl`), 'utf8'))
    if (report.mode !== plan.mode) throw new InvalidArgumentError(`${name}.jsonl holds a ${report.mode} run; add or drop --quick`)
    update = { command, startedAt, loadAverage: machine().loadAverage }
    report.updates = [...(report.updates ?? []), update]
  }
  /** Adds a result, replacing the same run from an earlier suite (--update). */
  const record = (result: Result): void => {
    const at = report.results.findIndex((r) => runKey(r) === runKey(result))
    if (at >= 0) report.results[at] = result
    else report.results.push(result)
  }
  const m = report.machine
  progress(`${specs.length} runs (${plan.mode}) on ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}`)
  const t0 = Date.now()
  for (const [i, spec] of specs.entries()) {
    progress(`[${i + 1}/${specs.length}] ${spec.workload} ${spec.case} ${spec.system} n=${spec.n}`)
    let result: Result = await runSpec(spec)
    if (result.error !== undefined && result.role === 'peer' && !result.error.startsWith('timed out')) {
      // Another system's crash (e.g. a save its own timer fires after shutdown) is run once
      // more rather than failing the suite; the first failure stays in the result. A hang is
      // not retried: it would only add another timeout.
      progress(`  FAILED (retrying once): ${result.error.split('\n')[0]}`)
      const first = result.error
      result = { ...(await runSpec(spec)), retriedAfter: first }
    }
    record(result)
    if (update) update.until = new Date().toISOString()
    progress(
      result.error
        ? `  FAILED: ${result.error.split('\n')[0]}`
        : `  ${result.primary.name}: ${Math.round(result.primary.value * 100) / 100} ${result.primary.unit}  (${result.wallMs} ms)`,
    )
    // Written after every run: a long suite interrupted still leaves its results.
    await writeReport(report, o.out, name)
  }
  const files = await writeReport(report, o.out, name)
  progress(`done in ${Math.round((Date.now() - t0) / 1000)} s: ${files.jsonl}, ${files.md}`)
  const failed = report.results.filter((r) => r.error !== undefined)
  for (const f of failed) progress(`FAILED ${f.workload} ${f.case} ${f.system}: ${f.error}`)
  return failed.length === 0 ? 0 : 1
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`bench: ${err.message}\n`)
    process.exit(2)
  },
)
