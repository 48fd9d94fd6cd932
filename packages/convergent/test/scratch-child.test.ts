import { spawn } from 'node:child_process'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { startCast, stopCast, sleep, dumpStore } from './hostile/harness.js'
describe('scratch child attacker', function () {
  this.timeout(120_000)
  it('measure', async () => {
    const cast = await startCast()
    try {
      await cast.victim.collection('p', { backend: 'yjs' }).put('k', { v: 1 })
      cast.honest.collection('p', { backend: 'yjs' })
      await cast.victim.sync()
      for (const mode of ['ctl', 'g1b', 'g1c', 'ctl', 'g1b', 'g1c']) {
        const child = spawn(process.execPath, [fileURLToPath(new URL('./scratch-child-attacker.js', import.meta.url)), cast.victim.multiaddrs[0]!, cast.victim.peerId, mode, '3'])
        let out = ''
        child.stdout.on('data', (d) => (out += d))
        child.stderr.on('data', (d) => (out += d))
        while (!out.includes('ready')) await sleep(20)
        const h = monitorEventLoopDelay({ resolution: 10 }); h.enable()
        let lastCpu = process.cpuUsage(); const gaps: number[] = []
        const t = setInterval(() => { const c = process.cpuUsage(); gaps.push((c.user - lastCpu.user + c.system - lastCpu.system) / 1000); lastCpu = c }, 10)
        await new Promise((r) => child.on('exit', r))
        h.disable(); clearInterval(t); gaps.sort((a, b) => a - b)
        console.log(mode, 'p99', (h.percentile(99) / 1e6).toFixed(1), 'max', (h.max / 1e6).toFixed(1), 'cpu-gap p99', gaps[Math.floor(gaps.length * 0.99)]!.toFixed(1), 'max', gaps[gaps.length - 1]!.toFixed(1), out.trim().split('\n').pop())
      }
      void dumpStore
    } finally { await stopCast(cast) }
  })
})
