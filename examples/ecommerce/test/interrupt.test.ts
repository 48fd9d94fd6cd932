import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { isAlive } from '../src/index.js'

const DEMO = fileURLToPath(new URL('../src/demo.js', import.meta.url))

/** Ctrl-C on `npm start`: every service stops, the temp folder goes, the exit code says so. */
describe('demo interrupted with SIGINT', function () {
  this.timeout(60_000)
  let out = ''
  before(() => (out = mkdtempSync(join(tmpdir(), 'ecommerce-report-'))))
  after(() => rmSync(out, { recursive: true, force: true }))

  it('stops every service process and removes its data', async () => {
    const child = spawn(process.execPath, [DEMO, '--quick', '--orders', '400', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    const servicePids = () => [...stdout.matchAll(/ pid (\d+)/g)].map((m) => Number(m[1]))
    try {
      // Interrupt once the workload is running (all three services are up by then).
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the workload never started:\n${stdout}`)), 20_000)
        child.stdout.on('data', (chunk: Buffer) => {
          stdout += chunk.toString()
          if (stdout.includes('① Normal traffic')) {
            clearTimeout(timer)
            resolve()
          }
        })
      })
      child.kill('SIGINT')
      const code = await exited
      const pids = servicePids()
      expect(pids, stdout).to.have.length(3)
      expect(code, stdout).to.equal(130)
      for (const pid of pids) expect(isAlive(pid), `service pid ${pid}`).to.equal(false)
      const removed = /Removed (\S+)/.exec(stdout)?.[1]
      expect(removed, stdout).to.be.a('string')
      expect(existsSync(removed!)).to.equal(false)
      expect(existsSync(join(out, 'report.html'))).to.equal(false)
    } finally {
      // Whatever failed above: leave no demo or service process behind.
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      for (const pid of servicePids()) if (isAlive(pid)) process.kill(pid, 'SIGKILL')
    }
  })
})
