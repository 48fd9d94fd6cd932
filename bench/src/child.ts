// One benchmark run in its own process: no JIT warmth, heap or leftover sockets from other runs
// (or other systems) leak into its numbers. The parent (runner.ts) sends the spec as argv.
import '@convergent/libp2p/polyfill'
import { progress } from './lib/log.js'
import type { Measurement, RunSpec } from './lib/result.js'
import { workload } from './workloads/index.js'

export type ChildMessage = { ok: true; measurement: Measurement } | { ok: false; error: string }

const spec = JSON.parse(process.argv[2]!) as RunSpec
const tag = `${spec.workload} ${spec.case} ${spec.system} n=${spec.n}`

void workload(spec.workload)
  .run(spec, (m) => progress(`  ${tag}: ${m}`))
  .then(
    (measurement): ChildMessage => ({ ok: true, measurement }),
    (err: Error): ChildMessage => ({ ok: false, error: err.stack ?? String(err) }),
  )
  .then((message) => {
    // Exit once the result is out: a peer's lingering timer must not hold the suite up.
    process.send!(message, () => process.exit(message.ok ? 0 : 1))
  })
