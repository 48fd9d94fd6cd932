// Review s30: open({ dir, network: false }) ran as the folder's peer id for a while (837059a)
// and stranded what a folder used offline by earlier releases holds under 'local'; taken back
// (939ff00): offline replicas run as 'local'. This holds them to it until 'local' is migrated.
import { join } from 'node:path'
import { expect } from 'chai'
import { Replica, silentLogger } from '@convergent/core'
import { classicLevelStore } from '@convergent/level'
import { automergeBackend } from '@convergent/automerge'
import { yjsBackend } from '@convergent/yjs'
import { open } from '../src/index.js'
import { tempDir } from './helpers.js'

describe('review s30: a folder used offline before this release', function () {
  this.timeout(30_000)
  let dir = ''
  let cleanup: () => Promise<void> = async () => undefined

  beforeEach(async function () {
    ;({ dir, cleanup } = await tempDir('convergent-s30-offline-'))
  })

  afterEach(async function () {
    await cleanup()
  })

  /** What open({ dir, network: false }) did in earlier releases: the same store, no peer id (so 'local'). */
  async function previousReleaseOffline(): Promise<Replica> {
    const replica = await Replica.open({ store: classicLevelStore(join(dir, 'db')), backends: [yjsBackend(), automergeBackend()], logger: silentLogger })
    expect(replica.peerId).to.equal('local')
    return replica
  }

  // HOLE 2 (fixed by taking 837059a back): rights of a counter incremented offline under an
  // earlier release are held by 'local'; run as the folder's peer id, the same offline service
  // was another holder and could not spend them (nobody could), though the value showed them.
  it('HOLE 2 (fixed): counter rights taken offline under the previous release are still spendable offline after the upgrade', async function () {
    const before = await previousReleaseOffline()
    await before.counter('stock', { min: 0 }).increment('mug', 3)
    await before.close()

    const after = await open({ dir, network: false, logger: silentLogger })
    try {
      const stock = after.counter('stock', { min: 0 })
      expect(await stock.value('mug')).to.equal(3)
      expect(await stock.rights('mug'), `rights of ${after.peerId} (those of 'local': ${await stock.rights('mug', 'local')})`).to.equal(3)
      await stock.decrement('mug', 1)
      expect(await stock.value('mug')).to.equal(2)
    } finally {
      await after.close()
    }
  })
})
