// Review 3 of the damaged-disk repairs: the worst cases left untested — damaged or garbage
// 'lost-head/' markers (heads.ts, loadWanted), many damaged read-audit and subject-key records
// under one prefix (each counted once, the scans linear), and a list of collection names
// damaged on a store opened read-only. Real classic-level in temp folders, a loopback network
// (as review-damaged-disk.test.ts).
import { join } from 'node:path'
import { expect } from 'chai'
import { LoopbackHub, Replica, type Logger, type PolicyDocument } from '@convergent/core'
import { recordingLogger, waitFor } from '@convergent/core/testing'
import { classicLevelStore } from '@convergent/level'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { damagedDiskSuite, editRaw } from './damaged-disk-helpers.js'

const ADMIN = 'a-admin'
const MEMBER = 'b-member'
const POLICY: PolicyDocument = { roles: { member: [MEMBER] }, collections: { '*': { read: ['*'], write: ['*'] } } }
const PERSONAL = { subject: (c: { customerId: string }) => c.customerId, fields: ['email'], auditReads: true }

const { keys, cleanups, folder, openReplica, rawKeys } = damagedDiskSuite(ADMIN, 'convergent-review3-disk-')

async function flip(db: string, key: string): Promise<void> {
  await editRaw(db, async (raw) => {
    const bytes = new Uint8Array((await raw.get(key))!)
    bytes[bytes.length - 1]! ^= 0x40
    await raw.put(key, bytes)
  })
}

/** Meta records written through the store: they pass its check, whatever they hold. */
async function writeMetas(db: string, records: Record<string, Uint8Array>): Promise<void> {
  const store = classicLevelStore(db)
  await store.open()
  try {
    await store.write(Object.entries(records).map(([key, bytes]) => ({ type: 'meta' as const, key, bytes })))
  } finally {
    await store.close()
  }
}

function linesOf(logger: ReturnType<typeof recordingLogger>): string[] {
  return logger.lines.map((l) => `${l.message} [${typeof l.fields?.code === 'string' ? l.fields.code : ''}]`)
}

/** `store` with every meta record it hands out under `prefix` counted (as review2-damaged-disk HOLE 5). */
function countingMetas(store: ReturnType<typeof classicLevelStore>, prefix: string): { read: number } {
  const counter = { read: 0 }
  const metas = store.metas.bind(store)
  store.metas = async function* (p: string, after?: string) {
    for await (const entry of metas(p, after)) {
      if (entry[0].startsWith(prefix)) counter.read++
      yield entry
    }
  }
  return counter
}

function openOn(store: ReturnType<typeof classicLevelStore>, logger: Logger): Promise<Replica> {
  return Replica.open({
    store,
    backends: [automergeBackend(), yjsBackend()],
    network: new LoopbackHub().createNetwork(ADMIN),
    trust: keys.trust(ADMIN, [ADMIN]),
    logger,
    syncIntervalMs: 0,
  })
}

describe('review 3: the damaged-disk repairs, worst cases', function () {
  this.timeout(300_000)

  // ---- 'lost-head/' markers ------------------------------------------------------------------------

  /** The admin's and the member's folders: the member wrote o2, the admin holds it with the member's signed head. */
  async function headFolders(): Promise<{ admin: string; member: string; head: string }> {
    const dir = await folder()
    const dirs = { admin: join(dir, 'admin'), member: join(dir, 'member') }
    const hub = new LoopbackHub()
    const a = await openReplica(dirs.admin, hub, ADMIN)
    const b = await openReplica(dirs.member, hub, MEMBER)
    await a.policy.set(POLICY)
    await waitFor(() => b.policy.get() !== undefined, 'the member adopts the policy')
    await a.collection<{ n: number }>('orders').put('o1', { n: 1 })
    await b.collection<{ n: number }>('orders').put('o2', { n: 2 })
    await waitFor(async () => (await a.collection('orders').get('o2')) !== undefined, 'o2 reaches the admin')
    await a.close()
    await b.close()
    const [head] = await rawKeys(dirs.admin, '!meta!head/orders\u0000o2\u0000')
    if (head === undefined) throw new Error("the admin holds no signed head of the member's o2")
    return { ...dirs, head }
  }

  it('lost-head markers damaged (garbage bytes, a flipped byte) or of garbage that passes the check (no id, an empty or overlong id, an unknown collection): open works, nothing crashes, each damaged one is moved aside, counted and logged, every garbage one deleted — and a valid marker beside them still fetches its head from the member', async function () {
    const dirs = await headFolders()
    // The valid marker: the member's head of o2 gone here, and asked of peers after the restart.
    await editRaw(dirs.admin, (raw) => raw.del(dirs.head))
    await writeMetas(dirs.admin, {
      'lost-head/orders\u0000o2': new Uint8Array(0),
      'lost-head/orders\u0000o7': new Uint8Array(0), // flipped below
      'lost-head/orders': new Uint8Array([1, 2, 3]),
      'lost-head/orders\u0000': new Uint8Array(0),
      ['lost-head/orders\u0000' + 'x'.repeat(2000)]: new Uint8Array(0),
      'lost-head/nope\u0000o1': new Uint8Array(0),
      'lost-head/orders\u0000o1\u0000extra': new Uint8Array(0),
    })
    await flip(dirs.admin, '!meta!lost-head/orders\u0000o7')
    await editRaw(dirs.admin, (raw) => raw.put('!meta!lost-head/orders\u0000o8', new Uint8Array([0xde, 0xad])))
    const hub = new LoopbackHub()
    const logger = recordingLogger()
    const a = await openReplica(dirs.admin, hub, ADMIN, logger)
    const b = await openReplica(dirs.member, hub, MEMBER)
    await waitFor(() => a.peers().includes(MEMBER), 'the member connected')
    await waitFor(
      async () => {
        if (logger.lines.some((l) => l.message.includes("stored 1 signed head(s) of 'o2'"))) return true
        await a.sync()
        return false
      },
      'the head of o2 stored again (the valid marker)',
      10_000,
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; logged: ${linesOf(logger).join(' | ')}`)
    })
    expect(a.stats().store.corruptRecords, 'the two damaged markers, each counted once').to.equal(2)
    for (const id of ['o7', 'o8']) {
      expect(
        linesOf(logger).some((l) => l.includes('ERR_STORE_CORRUPT') && l.includes(`lost-head/orders\\u0000${id}`)),
        `an ERR_STORE_CORRUPT line naming the ${id} marker; logged: ${linesOf(logger).join(' | ')}`,
      ).to.equal(true)
    }
    // A few rounds more: a marker of no valid id must not upset a round with the member.
    for (let i = 0; i < 3; i++) await a.sync()
    const bad = linesOf(logger).filter((l) => /could not|ERR_INTERNAL|ERR_INVALID|malformed/i.test(l))
    expect(bad, linesOf(logger).join(' | ')).to.deep.equal([])
    expect(await a.collection('orders').get('o2'), 'o2 still held').to.deep.equal({ n: 2 })
    await b.close()
    await a.close()
    expect(await rawKeys(dirs.admin, '!meta!lost-head/'), 'every marker gone: the damaged moved aside, the garbage deleted, the valid one done').to.deep.equal(
      [],
    )
    const aside = (await rawKeys(dirs.admin, '!quarantine!')).filter((k) => k.includes('lost-head/'))
    expect(aside.length, 'the two damaged markers moved aside').to.equal(2)
  })

  // ---- many damaged read-audit and subject-key records -------------------------------------------

  it('many damaged read-audit entries (100 of 400): open works, reading the audit counts each once (a second read finds none) and reads each entry once (linear: not a scan from the start per damaged entry)', async function () {
    const dir = await folder()
    const db = join(dir, 'admin')
    {
      const a = await openReplica(db, new LoopbackHub(), ADMIN)
      const customers = a.collection<{ customerId: string; email?: string }>('customers', { personal: PERSONAL })
      await customers.put('c1', { customerId: 's1', email: 'one@example.com' })
      for (let i = 0; i < 400; i++) await customers.get('c1')
      await waitFor(async () => {
        let n = 0
        for await (const _ of a.readAudit()) n++
        return n >= 400
      }, '400 audit entries stored')
      await a.close()
    }
    const all = await rawKeys(db, '!meta!audit/reads/')
    const damaged = all.filter((_, i) => i % 4 === 1) // not the first: the mark lets open read only that one
    for (const key of damaged) await flip(db, key)
    const store = classicLevelStore(db)
    const counter = countingMetas(store, 'audit/reads/')
    const logger = recordingLogger()
    const a = await openOn(store, logger)
    cleanups.push(() => a.close())
    const seqs: number[] = []
    for await (const e of a.readAudit()) seqs.push(e.seq)
    expect(seqs.length, 'every intact entry read').to.equal(all.length - damaged.length)
    expect(a.stats().store.corruptRecords, 'each damaged entry counted once').to.equal(damaged.length)
    expect(counter.read, 'audit records read: each at most once (plus the one open reads)').to.be.at.most(all.length + 1)
    const again: number[] = []
    for await (const e of a.readAudit()) again.push(e.seq)
    expect(again, 'a second read: the same entries').to.deep.equal(seqs)
    expect(a.stats().store.corruptRecords, 'a second read counts nothing again (the damaged ones were moved aside)').to.equal(damaged.length)
    const gaps = linesOf(logger).filter((l) => l.includes('ERR_STORE_CORRUPT') && l.includes('gap'))
    expect(gaps.length, 'one line per damaged entry').to.equal(damaged.length)
  })

  it('many damaged subject keys (100 of 400): open works, each is counted once and deleted, and the scan at open reads each key record once (linear)', async function () {
    const dir = await folder()
    const db = join(dir, 'admin')
    {
      const a = await openReplica(db, new LoopbackHub(), ADMIN)
      const customers = a.collection<{ customerId: string; email?: string }>('customers', { personal: { ...PERSONAL, auditReads: false } })
      for (let i = 0; i < 400; i += 50)
        await Promise.all(Array.from({ length: 50 }, (_, j) => customers.put(`c${i + j}`, { customerId: `s${i + j}`, email: `${i + j}@example.com` })))
      await a.close()
    }
    const all = await rawKeys(db, '!meta!personal/k/')
    expect(all.length, 'one key per subject').to.equal(400)
    const damaged = all.filter((_, i) => i % 4 === 0)
    for (const key of damaged) await flip(db, key)
    const store = classicLevelStore(db)
    const counter = countingMetas(store, 'personal/k/')
    const logger = recordingLogger()
    const a = await openOn(store, logger)
    cleanups.push(() => a.close())
    expect(a.stats().store.corruptRecords, 'each damaged key counted once').to.equal(damaged.length)
    expect(counter.read, 'key records read at open: each at most once').to.be.at.most(all.length)
    const lost = linesOf(logger).filter((l) => l.includes('ERR_STORE_CORRUPT') && l.includes('A subject key'))
    expect(lost.length, 'one line per damaged key').to.equal(damaged.length)
    await a.close()
    expect((await rawKeys(db, '!meta!personal/k/')).length, 'the damaged keys deleted, the others kept').to.equal(all.length - damaged.length)
  })

  // ---- read-only (inspect) stores ----------------------------------------------------------------

  it("a damaged list of collection names ('refused-collections') on a store opened for inspection: open works and leaves it where it is (quarantine() is refused there: open rejected)", async function () {
    const dir = await folder()
    const db = join(dir, 'admin')
    {
      const a = await openReplica(db, new LoopbackHub(), ADMIN)
      await a.collection<{ n: number }>('junk').put('j', { n: 1 })
      await a.dropCollection('junk')
      await a.collection<{ n: number }>('orders').put('o1', { n: 1 })
      await a.close()
    }
    await flip(db, '!meta!refused-collections')
    const before = await rawKeys(db, '')
    const logger = recordingLogger()
    const a = await openOn(classicLevelStore(db, { inspect: true }), logger)
    cleanups.push(() => a.close())
    expect(await a.collection('orders').get('o1')).to.deep.equal({ n: 1 })
    expect(
      linesOf(logger).some((l) => l.includes('ERR_STORE_CORRUPT') && l.includes('refused-collections') && l.includes('read-only')),
      linesOf(logger).join(' | '),
    ).to.equal(true)
    await a.close()
    expect(await rawKeys(db, ''), 'nothing moved aside').to.deep.equal(before)
  })
})
