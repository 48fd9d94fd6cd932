// An entity with a long history still replicates (issue #11, item 1): 100,000 updates to one
// entity while a replica is away, then its return and a late joiner — on real libp2p nodes
// with classic-level on disk. The catch-up's wire bytes are compared with the entity's
// compact snapshot (Backend.save).
import { expect } from 'chai'
import { silentLogger, type Backend } from '@convergent/core'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { open, type Replica } from '../src/index.js'
import { BACKENDS, tempDir, waitFor } from './helpers.js'

const UPDATES = 100_000
const WINDOW = 2_000 // writes in flight at once (they share group commits)

/** Bytes this replica received from `peer` so far. */
const bytesFrom = (r: Replica, peer: string): number => r.stats().peers[peer]?.bytesIn ?? 0

describe('long history: an entity updated 100,000 times replicates', function () {
  this.timeout(180_000)
  const figures: string[] = []
  after(() => {
    if (figures.length > 0) console.log(`      ${figures.join('\n      ')}`)
  })

  for (const backend of BACKENDS) {
    it(`${backend}: to a replica that was away, to a late joiner, and later writes still reach them`, async () => {
      const dirs = await Promise.all([tempDir(), tempDir(), tempDir()])
      const opened: Replica[] = []
      const openAt = async (i: number, peers: string[] = []): Promise<Replica> => {
        const r = await open({ dir: dirs[i]!.dir, peers, logger: silentLogger, durability: 'process' })
        opened.push(r)
        return r
      }
      try {
        const a = await openAt(0)
        let b = await openAt(1, a.multiaddrs)
        const hot = a.collection<{ n: number; m: number }>('stock', { backend })
        await hot.put('sku-1', { n: 0, m: 0 })
        await waitFor(async () => (await b.collection('stock').get('sku-1')) !== undefined, 'b has the entity', 20_000)
        await b.close()

        for (let i = 1; i <= UPDATES; i += WINDOW) {
          await Promise.all(Array.from({ length: Math.min(WINDOW, UPDATES - i + 1) }, (_, j) => hot.put('sku-1', { n: i + j, m: (i + j) % 7 })))
        }
        const want = { n: UPDATES, m: UPDATES % 7 }
        const snapshotBytes = await compactSnapshotBytes(a, backend)

        const started = Date.now()
        b = await openAt(1, a.multiaddrs)
        await waitFor(async () => (await b.collection('stock').get('sku-1'))?.n === want.n, 'b caught up', 120_000)
        expect(await b.collection('stock').get('sku-1')).to.deep.equal(want)
        const catchUpMs = Date.now() - started
        const wire = bytesFrom(b, a.peerId)

        await hot.put('sku-1', { n: -1, m: -1 })
        await waitFor(async () => (await b.collection('stock').get('sku-1'))?.n === -1, 'a later write reaches b', 20_000)

        const joinStarted = Date.now()
        const c = await openAt(2, b.multiaddrs)
        await waitFor(async () => (await c.collection('stock').get('sku-1'))?.n === -1, 'the late joiner has it', 120_000)
        const joinMs = Date.now() - joinStarted
        const joinWire = bytesFrom(c, b.peerId)

        figures.push(
          `${backend}: compact snapshot ${kb(snapshotBytes)}; return after ${UPDATES} updates: ${catchUpMs} ms, ${kb(wire)} on the wire ` +
            `(${(wire / snapshotBytes).toFixed(2)}× the snapshot); late joiner: ${joinMs} ms, ${kb(joinWire)} (${(joinWire / snapshotBytes).toFixed(2)}×)`,
        )
        expect(wire).to.be.at.most(2 * snapshotBytes + 64 * 1024) // the target: ≤ 2× the compact snapshot (plus sync overhead)
        expect(joinWire).to.be.at.most(2 * snapshotBytes + 64 * 1024)
      } finally {
        await Promise.all(opened.map((r) => r.close().catch(() => undefined)))
        await Promise.all(dirs.map((d) => d.cleanup()))
      }
    })
  }
})

const kb = (n: number): string => `${(n / 1024).toFixed(1)} KiB`

/** The size of the entity's compact snapshot, as its backend saves it. */
async function compactSnapshotBytes(r: Replica, backend: string): Promise<number> {
  const b = (backend === 'yjs' ? yjsBackend() : automergeBackend()) as Backend
  // The document as stored (a test reaches into the replica: no public API hands out raw state).
  const entities = (
    r as unknown as {
      entities: {
        readStored(col: unknown, id: string): Promise<{ snapshot?: Uint8Array; deltas: Uint8Array[] } | undefined>
        collections: Map<string, unknown>
      }
    }
  ).entities
  const stored = await entities.readStored(entities.collections.get('stock'), 'sku-1')
  return b.save(b.load(stored!.snapshot, stored!.deltas, new Uint8Array(16).fill(1))).byteLength
}
