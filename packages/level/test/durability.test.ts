import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import assert from 'node:assert/strict'
import { toHex } from '@convergent/core'
import { classicLevelStore } from '../src/index.js'
import { entityDelta, entityHead, entityId } from './entity-ops.js'
import { forkStoreChild, type StoreChild } from './fork-child.js'

describe('LevelStore durability (classic-level)', function () {
  this.timeout(20_000)
  let child: StoreChild | undefined
  const dirs: string[] = []

  afterEach(async () => {
    await child?.kill() // no process left behind, even when an assertion failed
    child = undefined
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true })
  })

  it('keeps every acknowledged write when the writer is killed with SIGKILL', async function () {
    for (let round = 0; round < 4; round++) {
      const dir = await mkdtemp(join(tmpdir(), 'convergent-durability-'))
      dirs.push(dir)
      child = await forkStoreChild('write', dir)
      await sleep(200 + Math.floor(Math.random() * 400))
      await child.kill()
      const acked = child.acked
      child = undefined
      assert.ok(acked.size > 0, 'the child acknowledged nothing before it was killed')

      const store = classicLevelStore(dir)
      await store.open() // opens cleanly after the crash
      try {
        const lastSeq = await store.lastSeq('c')
        const maxAcked = Math.max(...acked)
        assert.ok(lastSeq >= maxAcked, `lastSeq ${lastSeq} is below the highest acknowledged seq ${maxAcked}`)
        for (const n of acked) {
          const entity = await store.readEntity('c', entityId(n))
          assert.notEqual(entity, undefined, `acknowledged ${entityId(n)} is missing`)
          assert.equal(toHex(entity!.head.versionHash), toHex(entityHead(n).versionHash))
          assert.deepEqual(entity!.deltas.map(toHex), [toHex(entityDelta(n))])
        }
        // Batches land whole and in order, so the feed is 1 … lastSeq without a gap.
        let expected = 1
        for await (const entry of store.feed('c', 0)) {
          assert.equal(entry.seq, expected++)
          assert.equal(entry.id, entityId(entry.seq))
        }
        assert.equal(expected - 1, lastSeq)
      } finally {
        await store.close()
      }
    }
  })
})
