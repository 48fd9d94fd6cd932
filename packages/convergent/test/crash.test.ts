import { fork } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { expect } from 'chai'
import { open } from '../src/index.js'
import { BACKENDS, tempDir } from './helpers.js'

const CHILD = fileURLToPath(new URL('./hot-writer-child.js', import.meta.url))

/**
 * Runs the hot writer in `dir` until a random moment after its first acknowledged update,
 * SIGKILLs it; returns the highest acknowledged n per id. (Counting from the first ack, not
 * from start-up: on a busy machine, with every batch fsynced, the first acks may take longer
 * than the whole random window.)
 */
async function writeAndKill(dir: string, backend: string): Promise<Map<string, number>> {
  const child = fork(CHILD, [dir, backend], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const acked = new Map<string, number>()
  let writing!: () => void
  const isWriting = new Promise<void>((resolve) => (writing = resolve))
  child.on('message', (m: { type: string; values?: [string, number][] }) => {
    for (const [id, n] of m.values ?? []) acked.set(id, Math.max(acked.get(id) ?? 0, n))
    if (acked.size > 0) writing()
  })
  const gone = Promise.all([once(child, 'exit'), once(child, 'disconnect')])
  try {
    await Promise.race([isWriting, gone.then(() => Promise.reject(new Error(`the writer exited early (code ${child.exitCode})`)))])
    await sleep(150 + Math.floor(Math.random() * 350))
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await gone // every message it sent has been read
  }
  return acked
}

describe('Replica on classic-level: a writer killed while hot entities are being folded', function () {
  this.timeout(60_000)

  for (const backend of BACKENDS) {
    it(`${backend}: every acknowledged update survives, and writing on after the crash reuses delta slots cleanly`, async () => {
      const { dir, cleanup } = await tempDir('convergent-crash-')
      try {
        let expected = new Map<string, number>()
        for (let round = 0; round < 3; round++) {
          const acked = await writeAndKill(dir, backend)
          expect(acked.size, 'the writer acknowledged nothing before it was killed').to.be.greaterThan(0)
          const replica = await open({ dir, network: false, compactAfter: 4, syncIntervalMs: 0 })
          try {
            const col = replica.collection<{ n: number; pad: string }>('c', { backend })
            for (const [id, n] of acked) {
              const value = await col.get(id)
              // Single writer, increments only: the stored value is at least every acknowledged one.
              expect(value?.n, id).to.be.at.least(n)
              expect(value?.n, id).to.be.at.least(expected.get(id) ?? 0)
              expect(value?.pad).to.equal('p'.repeat(100))
            }
            // Write on from the recovered state: folds and slot reuse start from what the crash left.
            for (let k = 0; k < 10; k++) for (const id of acked.keys()) await col.update(id, (v) => void (v.n += 1))
            expected = new Map([...acked.keys()].map((id) => [id, 0]))
            for (const id of acked.keys()) expected.set(id, (await col.get(id))!.n)
          } finally {
            await replica.close()
          }
        }
        // A last clean reopen reads exactly what was written after the last crash.
        const replica = await open({ dir, network: false, compactAfter: 4, syncIntervalMs: 0 })
        try {
          const col = replica.collection<{ n: number; pad: string }>('c', { backend })
          for (const [id, n] of expected) expect((await col.get(id))?.n, id).to.equal(n)
        } finally {
          await replica.close()
        }
      } finally {
        await cleanup()
      }
    })
  }
})
