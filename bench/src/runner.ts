import { fork } from 'node:child_process'
import { loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import type { ChildMessage } from './child.js'
import { describeSystem } from './peers/catalog.js'
import type { Result, RunSpec } from './lib/result.js'
import { now } from './lib/time.js'
import { tempDir, TMP_ROOT_ENV } from './lib/tmp.js'
import { workload } from './workloads/index.js'

const CHILD = fileURLToPath(new URL('./child.js', import.meta.url))

/** Runs one spec in a child process; a crash, a failure or a timeout becomes an error result. */
export async function runSpec(spec: RunSpec): Promise<Result> {
  const system = describeSystem(spec.system)
  const base = {
    workload: spec.workload,
    case: spec.case,
    title: workload(spec.workload).title,
    system: spec.system,
    label: system.label,
    role: system.role,
    ...(system.backend ? { backend: system.backend } : {}),
    n: spec.n,
    params: spec.params,
    startedAt: new Date().toISOString(),
    loadAverage: Math.round(loadavg()[0]! * 100) / 100,
  }
  const root = await tempDir('run')
  const t0 = now()
  const outcome = await new Promise<ChildMessage>((resolve) => {
    const child = fork(CHILD, [JSON.stringify(spec)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, [TMP_ROOT_ENV]: root.dir },
    })
    let message: ChildMessage | undefined
    const timer = setTimeout(() => {
      message ??= { ok: false, error: `timed out after ${Math.round(spec.timeoutMs / 1000)} s` }
      child.kill('SIGKILL')
    }, spec.timeoutMs)
    child.on('message', (m) => {
      message ??= m as ChildMessage
    })
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve(message ?? { ok: false, error: `the run crashed (exit code ${code}, signal ${signal})` })
    })
  })
  const wallMs = Math.round(now() - t0)
  await root.cleanup()
  if (outcome.ok) return { ...base, ...outcome.measurement, n: outcome.measurement.n ?? spec.n, wallMs }
  return {
    ...base,
    wallMs,
    error: outcome.error,
    primary: { name: 'failed', value: NaN, unit: '', better: 'higher' },
    metrics: {},
  }
}
