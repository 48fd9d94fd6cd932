import { arch, cpus, loadavg, platform, release, totalmem } from 'node:os'
import { execFileSync } from 'node:child_process'

export interface Machine {
  cpu: string
  cores: number
  memoryGiB: number
  os: string
  node: string
  /** 1-minute load average when the suite started: other work on the machine skews numbers. */
  loadAverage: number
  commit: string | undefined
}

/** What the numbers were measured on: they mean little without it. */
export function machine(): Machine {
  const list = cpus()
  return {
    cpu: list[0]?.model.trim() ?? 'unknown',
    cores: list.length,
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    os: `${platform()} ${release()} ${arch()}`,
    node: process.version,
    loadAverage: Math.round(loadavg()[0]! * 100) / 100,
    commit: gitCommit(),
  }
}

function gitCommit(): string | undefined {
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== ''
    return dirty ? `${rev}+dirty` : rev
  } catch {
    return undefined
  }
}
