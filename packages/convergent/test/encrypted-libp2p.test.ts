// Encryption at rest end to end: two replicas with their own at-rest keys, classic-level on disk,
// libp2p over TCP on 127.0.0.1. Bursts of writes replicate (group commits: the receiver writes
// its change feed as pages), the receiver restarts on its folder and its change feed reads back
// whole and numbered on, and no file of either folder holds a written value in plain.
import { randomBytes } from 'node:crypto'
import { expect } from 'chai'
import { silentLogger } from '@convergent/core'
import { open, type Replica } from '../src/index.js'
import { folderBytes, replicasAfterEach, waitFor } from './helpers.js'

describe('Encryption at rest over real libp2p (classic-level, TCP on 127.0.0.1)', function () {
  this.timeout(60_000)
  const { folder, opened } = replicasAfterEach('convergent-enc-p2p-')

  it("bursts replicate between encrypted replicas; the receiver's change feed survives a restart; no file holds a value in plain", async function () {
    const marker = `mkr-${randomBytes(6).toString('hex')}`
    const [dirA, dirB] = [await folder(), await folder()]
    const keyB = randomBytes(32)
    const a = await open({ dir: dirA, listen: ['/ip4/127.0.0.1/tcp/0'], encryption: { key: randomBytes(32) }, logger: silentLogger, syncIntervalMs: 500 })
    opened(a)
    const startB = async (): Promise<Replica> =>
      open({ dir: dirB, listen: ['/ip4/127.0.0.1/tcp/0'], peers: a.multiaddrs, encryption: { key: keyB }, logger: silentLogger, syncIntervalMs: 500 })
    let b = await startB()
    opened(b) // closed again by the afterEach if the test fails before it closes it (close() twice is harmless)
    const items = a.collection<{ n: number; note: string }>('items')
    for (let burst = 0; burst < 5; burst++) {
      await Promise.all(Array.from({ length: 40 }, (_, i) => items.put(`i${burst}-${i}`, { n: burst * 40 + i, note: `${marker}-${burst}-${i}` })))
    }
    await waitFor(async () => (await b.collection('items').get('i4-39')) !== undefined, 'the last write reached b', 30_000)
    await waitFor(
      async () => {
        for (let n = 0; n < 200; n++) if ((await b.collection('items').get(`i${Math.floor(n / 40)}-${n % 40}`)) === undefined) return false
        return true
      },
      'all 200 reached b',
      30_000,
    )
    // The change feed holds what is durable: poll until the last group commit is on disk.
    let seqsBefore: number[] = []
    await waitFor(
      async () => {
        seqsBefore = []
        for await (const c of b.collection('items').changes({ since: 0 })) {
          seqsBefore.push(c.seq)
          if (seqsBefore.length === 200) break
        }
        return seqsBefore.length === 200
      },
      "b's change feed holds all 200",
      30_000,
    )
    expect(seqsBefore, 'one change-feed entry per entity received').to.have.length(200)
    await b.close()

    b = await startB()
    opened(b)
    const seqs: number[] = []
    for await (const c of b.collection('items').changes({ since: 0 })) {
      seqs.push(c.seq)
      if (seqs.length === seqsBefore.length) break
    }
    expect(seqs, 'the change feed reads back whole after a restart').to.deep.equal(seqsBefore)
    expect(seqs).to.deep.equal(
      seqs.map((_, i) => i + 1),
      'numbered 1, 2, 3 … with no gap',
    )
    await items.put('after', { n: 1_000, note: `${marker}-after` })
    await waitFor(async () => (await b.collection('items').get('after')) !== undefined, 'a write after the restart reached b', 30_000)
    let next: number[] = []
    await waitFor(
      async () => {
        next = []
        for await (const c of b.collection('items').changes({ since: seqs.length })) {
          next.push(c.seq)
          break
        }
        return next.length === 1
      },
      "the write after the restart is in b's change feed",
      30_000,
    )
    expect(next, 'numbered on past the entries read back').to.deep.equal([seqs.length + 1])
    await a.close()
    await b.close()
    for (const dir of [dirA, dirB]) expect((await folderBytes(dir)).includes(marker), `${dir} holds a value in plain`).to.equal(false)
  })
})
