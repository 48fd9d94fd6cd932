import { loadSystem, type BenchNode } from '../peers/index.js'
import type { ConvergentTuning } from '../peers/convergent.js'
import { TcpMeter } from './tcp-meter.js'
import { tempDir, type TempDir } from './tmp.js'

/**
 * Opens a node of a system in a fresh temp dir (or in `dir`, made beforehand: TRUST names a
 * node's peer id in the policy before it opens); close() also removes the dir.
 */
export async function openNode(
  systemId: string,
  options: { join?: { port: number; token: string }; network?: boolean; tuning?: ConvergentTuning; dir?: TempDir } = {},
): Promise<{ node: BenchNode; dir: string; close: () => Promise<void> }> {
  const system = await loadSystem(systemId, options.tuning)
  const { dir, cleanup } = options.dir ?? (await tempDir(systemId))
  const node = await system.open({ dir, ...(options.join ? { join: options.join } : {}), ...(options.network ? { network: true } : {}) })
  return {
    node,
    dir,
    close: async () => {
      // A system failing to shut down is reported, but must not hide what the run measured.
      await node.close().catch((err: Error) => process.stderr.write(`[bench] ${systemId} close failed: ${err.message}\n`))
      await cleanup()
    },
  }
}

/**
 * Node A of a system and a TcpMeter in front of it; openB() opens B dialing A through the
 * meter, so every byte between them is counted. B opens when the workload says (W3: late).
 * `dirA` and openB's `dirB`: folders made beforehand (tempDir) to open A and B in.
 */
export async function openPair(systemId: string, tuning?: ConvergentTuning, dirA?: TempDir) {
  const a = await openNode(systemId, { network: true, ...(tuning ? { tuning } : {}), ...(dirA ? { dir: dirA } : {}) })
  if (a.node.port === undefined) throw new Error(`${systemId} has no network`)
  const meter = await TcpMeter.start(a.node.port)
  const via = { port: meter.port, token: a.node.token }
  return {
    a,
    meter,
    via,
    openB: (dirB?: TempDir) => openNode(systemId, { join: via, ...(tuning ? { tuning } : {}), ...(dirB ? { dir: dirB } : {}) }),
    async close(...others: { close: () => Promise<void> }[]) {
      for (const o of others) await o.close()
      await a.close()
      await meter.close()
    },
  }
}
