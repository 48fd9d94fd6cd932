import { spawn } from 'node:child_process'

export const BACKENDS = ['yjs', 'automerge'] as const
export type BackendName = (typeof BACKENDS)[number]

/** Runs a Node script in a child process (killed after timeoutMs) and collects its output. */
export function runNode(
  file: string,
  args: string[] = [],
  options: { cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file, ...args], options.cwd === undefined ? {} : { cwd: options.cwd })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000)
    child.on('error', reject)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

export { dump, recordingLogger, tempDir, waitFor } from '@convergent/core/testing'
