/**
 * `npm start`: the e-commerce demo. Starts inventory, orders and payments as separate
 * processes, drives the scripted workload through a partition and its heal, prints a summary,
 * writes an HTML report, stops every process it started, and exits 0 only if every invariant
 * held. Ctrl-C stops everything cleanly (and removes the temp folders unless --keep).
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Command, InvalidArgumentError } from 'commander'
import { ProgressBar } from './driver/progress.js'
import { renderReport } from './driver/report-html.js'
import { runScenario, type ScenarioResult } from './driver/scenario.js'
import { renderSummary } from './driver/summary.js'

const DEFAULT_OUT = fileURLToPath(new URL('../../out/', import.meta.url))

interface CliOptions {
  quick?: boolean
  orders?: number
  out: string
  keep?: boolean
  seed: number
}

function positiveInt(value: string): number {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer')
  return n
}

async function main(): Promise<void> {
  const program = new Command()
    .name('npm start --')
    .description('Convergent e-commerce demo: three services stay correct through a network partition.')
    .option('--quick', 'short mode (60 orders, no pacing)')
    .option('--orders <n>', 'orders to place in all (default 240, quick 60)', positiveInt)
    .option('--out <dir>', 'where to write report.html and report.json', DEFAULT_OUT)
    .option('--keep', "keep the services' data folders and logs")
    .option('--seed <n>', 'seed of the workload', positiveInt, 42)
    .parse(process.argv)
  const options = program.opts<CliOptions>()

  const bar = new ProgressBar()
  const controller = new AbortController()
  let interrupts = 0
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupts++
    if (interrupts === 1) {
      bar.log(`\n${signal}: stopping every service… (again to exit at once; services also stop when the demo exits)`)
      controller.abort()
    } else process.exit(130)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  const result = await runScenario(
    {
      quick: options.quick ?? false,
      keep: options.keep ?? false,
      seed: options.seed,
      signal: controller.signal,
      ...(options.orders ? { orders: options.orders } : {}),
    },
    { log: (line) => bar.log(line), progress: (done, total, label) => bar.update(done, total, label) },
  )
  bar.finish()

  if (result.interrupted) {
    const left = result.processesLeft.length
    console.log(
      `Interrupted. Stopped ${result.pids.length - left} of ${result.pids.length} service processes (pids ${result.pids.join(', ')})${left ? `; STILL RUNNING: ${result.processesLeft.join(', ')}` : ''}.`,
    )
    console.log(result.kept ? `Data kept in ${result.dataRoot}` : `Removed ${result.dataRoot}`)
    process.exitCode = left ? 1 : 130
    return
  }

  console.log(renderSummary(result))
  const example = describeExample(result)
  if (example) console.log(`\n${example}`)
  const outDir = resolve(options.out)
  await mkdir(outDir, { recursive: true })
  const reportPath = join(outDir, 'report.html')
  await writeFile(reportPath, renderReport(result))
  await writeFile(join(outDir, 'report.json'), JSON.stringify(result, null, 2))
  console.log(`\nReport: ${reportPath}`)
  if (result.kept) console.log(`Service data and logs kept in ${result.dataRoot}`)
  if (result.error) console.error(`\nThe scenario failed: ${result.error}`)
  process.exitCode = result.invariants.every((i) => i.ok) ? 0 : 1
}

/** One line showing the gateway view of an order that crossed the partition. */
function describeExample(r: ScenarioResult): string | null {
  const v = r.exampleView
  if (v === null) return null
  const names = new Map(r.services.map((s) => [s.peerId, s.name]))
  const holders = Object.entries(v.stock.holders)
    .filter(([, n]) => n > 0)
    .map(([peer, n]) => `${names.get(peer) ?? peer.slice(-6)} ${n}`)
    .join(', ')
  const during = v.order.channel === 'store' ? ' during the partition' : ''
  return [
    `Gateway view — GET /orders/${v.id} on the ${v.servedBy} service:`,
    `  ${v.order.channel === 'store' ? 'shop-counter' : 'web'} order placed by ${v.order.placedBy}${during}: ${v.product?.name ?? v.order.sku} × ${v.order.qty}, ${v.status}${v.payment ? ` (${v.payment.amount})` : ''};`,
    `  ${v.order.sku} stock now ${v.stock.value}; rights held: ${holders || 'none'}`,
  ].join('\n')
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
