import '@convergent/libp2p/polyfill'
import { ConvergentNode } from '../peers/convergent.js'
import { TcpMeter } from '../lib/tcp-meter.js'
import { median, mb } from '../lib/stats.js'
import { now, waitFor } from '../lib/time.js'
import { entityId } from '../lib/values.js'

export interface ProbeInput {
  backend: 'yjs' | 'automerge'
  dirA: string
  dirB: string
  n: number
  rounds: number
}

export interface ProbeOutput {
  openMs: number
  rssAfterOpenMB: number
  readMs: number
  rssAfterReadsMB: number
  rssTwoReplicasMB: number
  roundMs: number
  roundAppBytes: number
  roundWireBytes: number
  roundMessages: number
  entitiesDiffering: number
}

/** RSS after a full GC: what the replica holds, not garbage not yet collected. */
function rssMB(): number {
  ;(globalThis as { gc?: () => void }).gc?.()
  return mb(process.memoryUsage().rss)
}

/** W5's measuring half, in a fresh process: see w5-scale.ts. */
async function probe(input: ProbeInput): Promise<ProbeOutput> {
  const t0 = now()
  const a = await ConvergentNode.open(input.backend, { dir: input.dirA }, { syncIntervalMs: 0 })
  const openMs = Math.round(now() - t0)
  const rssAfterOpenMB = rssMB()

  const t1 = now()
  for (let k = 0; k < 1000; k++) await a.collection.get(entityId(Math.floor(Math.random() * input.n)))
  const readMs = Math.round(now() - t1)
  const rssAfterReadsMB = rssMB()

  const meter = await TcpMeter.start(a.port!)
  const b = await ConvergentNode.open(input.backend, { dir: input.dirB, join: { port: meter.port, token: a.token } }, { syncIntervalMs: 0 })
  try {
    // One side (the lower peer id) runs a round on connect; the other runs one ~2 s later only
    // if none began. Measure after the first has finished and the fallback window has passed.
    const rounds = (n: ConvergentNode, peer: string) => n.replica.stats().peers[peer]?.syncRounds ?? 0
    await waitFor('the on-connect round', () => rounds(a, b.token) + rounds(b, a.token) >= 1, 120_000)
    await new Promise((resolve) => setTimeout(resolve, 3_000))
    const times: number[] = []
    const appBytes: number[] = []
    const wireBytes: number[] = []
    let messages = 0
    let differing = 0
    for (let r = 0; r < input.rounds; r++) {
      meter.reset()
      const t = now()
      const [result] = await b.replica.sync()
      times.push(now() - t)
      if (result === undefined) throw new Error('sync() ran no round: B is not connected to A')
      appBytes.push(result.bytesSent + result.bytesReceived)
      wireBytes.push(meter.total)
      messages = result.messages
      differing += result.entitiesDiffering
    }
    return {
      openMs,
      rssAfterOpenMB,
      readMs,
      rssAfterReadsMB,
      rssTwoReplicasMB: rssMB(),
      roundMs: Math.round(median(times) * 100) / 100,
      roundAppBytes: median(appBytes),
      roundWireBytes: median(wireBytes),
      roundMessages: messages,
      entitiesDiffering: differing,
    }
  } finally {
    await b.close()
    await a.close()
    await meter.close()
  }
}

const input = JSON.parse(process.argv[2]!) as ProbeInput
probe(input).then(
  (output) => {
    // Exit once the result is out: a lingering socket must not keep the probe alive.
    process.send!(output, () => process.exit(0))
  },
  (err: Error) => {
    process.stderr.write(`W5 probe failed: ${err.stack ?? err.message}\n`)
    process.exit(1)
  },
)
