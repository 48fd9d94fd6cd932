import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * The runner gives each run a root of its own (and removes it once the run's process is gone),
 * so a crashed run, or a peer that still saves after shutdown, leaves nothing behind.
 */
export const TMP_ROOT_ENV = 'CONVERGENT_BENCH_TMP'

export interface TempDir {
  dir: string
  cleanup: () => Promise<void>
}

/** A fresh directory under the run's root (or the OS temp dir), removed by the returned cleanup. */
export async function tempDir(label: string): Promise<TempDir> {
  const dir = await mkdtemp(join(process.env[TMP_ROOT_ENV] ?? tmpdir(), `convergent-bench-${label}-`))
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true, maxRetries: 3 }) }
}
