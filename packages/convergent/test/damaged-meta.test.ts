// Damaged meta records of the personal-data features, as a damaged disk or an older bug could
// leave them (each record's checksum passes: the bytes were written that way): a subject key
// record of the wrong shape or under another id, and a read-audit seq mark out of range. The
// replica opens, reports them, and goes on with the rest.
import { join } from 'node:path'
import { encode } from 'cborg'
import { expect } from 'chai'
import { ClassicLevel } from 'classic-level'
import { Replica } from '@convergent/core'
import { storedSubjectKeys } from '@convergent/core/internal'
import { recordingLogger } from '@convergent/core/testing'
import { classicLevelStore } from '@convergent/level'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { tempDir, waitFor } from './helpers.js'

const PERSONAL = { subject: (c: { customerId: string }) => c.customerId, fields: ['email'], auditReads: true }

/** A replica on the classic-level folder `db`, without a network. */
function openAt(db: string, logger = recordingLogger()): Promise<Replica> {
  return Replica.open({ store: classicLevelStore(db), backends: [yjsBackend(), automergeBackend()], logger, syncIntervalMs: 0 })
}

describe('Damaged meta records of personal data and the read audit', function () {
  this.timeout(30_000)

  it('a key record of the wrong shape or under another id is skipped and reported; a mark out of range is not trusted', async () => {
    const { dir, cleanup } = await tempDir('convergent-damaged-meta-')
    const db = join(dir, 'db')
    const opened = (logger = recordingLogger()) => openAt(db, logger)
    try {
      let replica = await opened()
      const customers = replica.collection<{ customerId: string; email?: string }>('customers', { personal: PERSONAL })
      await customers.put('c1', { customerId: 's1', email: 'one@example.com' })
      await customers.get('c1') // one audited read: seq 1
      await replica.close()

      // Write the damage straight into the folder.
      const store = classicLevelStore(db)
      await store.open()
      await store.write([
        { type: 'meta', key: 'personal/k/short', bytes: encode({ c: 'customers', s: 's2', k: new Uint8Array(5) }) },
        { type: 'meta', key: 'personal/k/0000000000000000000000000', bytes: encode({ c: 'customers', s: 's3', k: new Uint8Array(32).fill(7) }) },
        { type: 'meta', key: 'personal/k/junk', bytes: new Uint8Array([0xff, 0x00, 0x13]) },
        { type: 'meta', key: 'audit/reads-mark', bytes: new Uint8Array(8).fill(0xff) },
      ])
      expect((await storedSubjectKeys(store)).size, 'the dump opens only the one sound key').to.equal(1)
      await store.close()

      const logger = recordingLogger()
      replica = await opened(logger)
      expect(logger.lines.filter((l) => /stored subject key is unreadable/.test(l.message))).to.have.length(3)
      const again = replica.collection<{ customerId: string; email?: string }>('customers', { personal: PERSONAL })
      expect(await again.get('c1')).to.deep.equal({ customerId: 's1', email: 'one@example.com' })
      await again.put('c2', { customerId: 's2', email: 'two@example.com' }) // a new, sound key for s2
      expect(await again.get('c2')).to.deep.equal({ customerId: 's2', email: 'two@example.com' })
      // Audit entries go with the next batch (a read does not wait for them): poll.
      let seqs: number[] = []
      await waitFor(async () => {
        seqs = []
        for await (const e of replica.readAudit()) seqs.push(e.seq)
        return seqs.length >= 3
      }, 'three audit entries')
      // The mark of 2^64 − 1 is ignored: numbering goes on from the entries (1, then 2, 3).
      expect(seqs).to.deep.equal([1, 2, 3])
      await replica.close()
    } finally {
      await cleanup()
    }
  })

  it("a forget tombstone or a destroyed key's marker failing the store's check: the replica opens, and the subject stays forgotten", async () => {
    const { dir, cleanup } = await tempDir('convergent-damaged-meta-')
    const db = join(dir, 'db')
    const opened = (logger = recordingLogger()) => openAt(db, logger)
    try {
      let replica = await opened()
      const customers = replica.collection<{ customerId: string; email?: string }>('customers', { personal: PERSONAL })
      await customers.put('c1', { customerId: 's1', email: 'one@example.com' })
      await replica.forget('s1')
      await replica.close()

      // Flip the last byte of the tombstone and of the destroyed key's marker, below the store.
      const raw = new ClassicLevel<string, Uint8Array>(db, { keyEncoding: 'utf8', valueEncoding: 'view' })
      await raw.open()
      const damaged: string[] = []
      for (const [key, value] of await raw.iterator().all()) {
        if (!key.startsWith('!meta!personal/t/') && !key.startsWith('!meta!personal/d/')) continue
        const bytes = new Uint8Array(value)
        bytes[bytes.length - 1]! ^= 0x40
        await raw.put(key, bytes)
        damaged.push(key)
      }
      await raw.close()
      expect(damaged, 'one tombstone, one marker').to.have.length(2)

      for (let open = 0; open < 2; open++) {
        const logger = recordingLogger()
        replica = await opened(logger)
        if (open === 0) {
          const corrupt = logger.lines.filter((l) => l.fields?.code === 'ERR_STORE_CORRUPT').map((l) => l.message)
          expect(
            corrupt.some((m) => m.includes('personal/t/') && m.includes('stays forgotten')),
            corrupt.join(' | '),
          ).to.equal(true)
          expect(
            corrupt.some((m) => m.includes('personal/d/')),
            corrupt.join(' | '),
          ).to.equal(true)
        }
        // Still forgotten (this open, and the next: the lost tombstone's place is kept).
        const again = replica.collection<{ customerId: string; email?: string }>('customers', { personal: PERSONAL })
        let code: string | undefined
        await again.put('c2', { customerId: 's1', email: 'again@example.com' }).catch((err: { code?: string }) => (code = err.code))
        expect(code, `open ${open}: a write of the forgotten subject's personal fields`).to.equal('ERR_FORGOTTEN')
        // update() of the entity still works; its field reads as absent.
        await again.update('c1', (c) => c)
        expect(await again.get('c1')).to.deep.equal({ customerId: 's1' })
        await replica.close()
      }
    } finally {
      await cleanup()
    }
  })
})
