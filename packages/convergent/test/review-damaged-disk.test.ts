// Review: what the most damaged disk does to a replica — the records that are NOT entity
// deltas/snapshots (signed heads, unsigned markers, push proofs, the policy and its evidence,
// counter/refused collection lists, the read audit and its mark, subject keys, collection
// metas, the store's own records). Real classic-level in temp folders; a loopback network
// between an admin replica (whose folder is damaged) and an honest member.
import { cp } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'chai'
import { ClassicLevel } from 'classic-level'
import { LoopbackHub, Replica, type Logger, type PolicyDocument } from '@convergent/core'
import { Keyring, recordingLogger, tempDir, waitFor } from '@convergent/core/testing'
import { editRaw, openClusterReplica, type Raw } from './damaged-disk-helpers.js'

const ADMIN = 'a-admin'
const MEMBER = 'b-member'
/** A member that joins late, with an empty folder. */
const LATE = 'c-late'
/** Revoked in policy v2. */
const GONE = 'z-gone'
const POLICY: PolicyDocument = {
  roles: { member: [MEMBER, LATE, GONE] },
  collections: { '*': { read: ['*'], write: ['*'] }, stock: { read: ['*'], write: ['*'], counter: true } },
}
const PERSONAL = { subject: (c: { customerId: string }) => c.customerId, fields: ['email'], auditReads: true }

const keys = new Keyring()
const cleanups: (() => Promise<unknown>)[] = []

afterEach(async function () {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined)
})

async function folder(): Promise<string> {
  const { dir, cleanup } = await tempDir('convergent-damaged-disk-')
  cleanups.push(cleanup)
  return dir
}

function openReplica(db: string, hub: LoopbackHub, id: string, logger: Logger = recordingLogger()): Promise<Replica> {
  return openClusterReplica(keys, ADMIN, db, hub, id, logger)
}

/** Resolves with the replica, or rejects — or with 'hang' after ms. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | 'hang'> {
  let timer: NodeJS.Timeout | undefined
  const hang = new Promise<'hang'>((resolve) => (timer = setTimeout(() => resolve('hang'), ms)))
  try {
    return await Promise.race([p, hang])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * A pristine pair of folders: the admin's (every kind of non-entity record in it) and the
 * member's. Made once per suite, copied for each case.
 */
async function pristine(): Promise<{ admin: string; member: string }> {
  const dir = await folder()
  const admin = join(dir, 'admin')
  const member = join(dir, 'member')
  const hub = new LoopbackHub()
  const a = await openReplica(admin, hub, ADMIN)
  const b = await openReplica(member, hub, MEMBER)
  try {
    await a.policy.set(POLICY)
    await waitFor(() => b.policy.get() !== undefined, 'member adopts the policy')
    await a.policy.set({ ...POLICY, revoked: [GONE] }) // v2 with a revocation
    await waitFor(() => b.policy.get()?.version === 2, 'member adopts v2')
    const orders = a.collection<{ n: number }>('orders')
    await orders.put('o1', { n: 1 })
    // A push from the member: the admin keeps its proof and the member's signed head.
    await b.collection<{ n: number }>('orders').put('o2', { n: 2 })
    await waitFor(async () => (await orders.get('o2')) !== undefined, 'o2 reaches the admin')
    await b.collection<{ n: number }>('notes', { backend: 'yjs' }).put('y1', { n: 1 })
    await waitFor(async () => (await a.collection<{ n: number }>('notes').get('y1')) !== undefined, 'y1 reaches the admin')
    await a.counter('stock').increment('s1', 10)
    const customers = a.collection<{ customerId: string; email?: string }>('customers', { personal: PERSONAL })
    await customers.put('c1', { customerId: 's1', email: 'one@example.com' })
    await customers.get('c1') // an audited read
    await a.collection<{ n: number }>('junk').put('j', { n: 1 })
    await a.dropCollection('junk')
    await a.sync()
    await b.sync()
    await new Promise((r) => setTimeout(r, 100)) // audit entries go with the next batch
  } finally {
    await a.close()
    await b.close()
  }
  return { admin, member }
}

async function rawRecords(db: string): Promise<[string, Uint8Array][]> {
  const raw: Raw = new ClassicLevel<string, Uint8Array>(db, { keyEncoding: 'utf8', valueEncoding: 'view' })
  await raw.open()
  try {
    return (await raw.iterator().all()).map(([k, v]) => [k, new Uint8Array(v)])
  } finally {
    await raw.close()
  }
}

type Damage = 'flip' | 'truncate' | 'move' | 'delete'

async function damage(db: string, key: string, how: Damage): Promise<void> {
  await editRaw(db, async (raw) => {
    const value = await raw.get(key)
    if (value === undefined) throw new Error(`no record ${JSON.stringify(key)}`)
    const bytes = new Uint8Array(value)
    if (how === 'flip') {
      bytes[bytes.length - 1]! ^= 0x40
      await raw.put(key, bytes)
    } else if (how === 'truncate') {
      await raw.put(key, bytes.subarray(0, Math.min(3, bytes.length)))
    } else if (how === 'move') {
      await raw.batch([
        { type: 'del', key },
        { type: 'put', key: key.slice(0, -1) + String.fromCharCode(key.charCodeAt(key.length - 1) ^ 1), value: bytes },
      ])
    } else {
      await raw.del(key)
    }
  })
}

interface Outcome {
  /** 'ok', 'hang', or the code and message open() rejected with. */
  open: string
  /** What the damaged replica logged: message [code]. */
  logged: string[]
  converged?: boolean | string
}

const ORDER_IDS = ['o1', 'o2', 'a-new', 'b-new']

function linesOf(logger: ReturnType<typeof recordingLogger>): string[] {
  return logger.lines.map((l) => `${l.message} [${typeof l.fields?.code === 'string' ? l.fields.code : ''}]`)
}

/** Both replicas hold every order, the same value on each side. */
async function sameOrders(a: Replica, b: Replica): Promise<boolean> {
  for (const id of ORDER_IDS) {
    const [x, y] = [await a.collection('orders').get(id), await b.collection('orders').get(id)]
    if (x === undefined || y === undefined || JSON.stringify(x) !== JSON.stringify(y)) return false
  }
  return true
}

/**
 * Copies the pristine folders, damages the admin's with `harm`, opens both on a fresh hub and
 * checks the admin opens, then that both converge on new writes of each side.
 */
async function attempt(
  base: { admin: string; member: string },
  harm: (db: string) => Promise<void>,
  ready?: (a: Replica) => Promise<void>,
): Promise<Outcome & { a?: Replica; b?: Replica; dir?: string; adminDir: string }> {
  const dir = await folder()
  const admin = join(dir, 'admin')
  const member = join(dir, 'member')
  await cp(base.admin, admin, { recursive: true })
  await cp(base.member, member, { recursive: true })
  await harm(admin)
  const hub = new LoopbackHub()
  const logger = recordingLogger()
  const b = await openReplica(member, hub, MEMBER)
  cleanups.push(() => b.close())
  let a: Replica | 'hang'
  try {
    a = await within(openReplica(admin, hub, ADMIN, logger), 15_000)
  } catch (err) {
    return { open: `${(err as { code?: string }).code ?? ''} ${(err as Error).message}`, logged: linesOf(logger), b, dir, adminDir: admin }
  }
  if (a === 'hang') return { open: 'hang', logged: linesOf(logger), b, dir, adminDir: admin }
  const ar = a
  cleanups.push(() => ar.close())
  let converged: boolean | string
  try {
    await ready?.(ar)
    await ar.collection<{ n: number }>('orders').put('a-new', { n: 3 })
    await b.collection<{ n: number }>('orders').put('b-new', { n: 4 })
    await ar.sync()
    await b.sync()
    await waitFor(
      async () => {
        if (await sameOrders(ar, b)) return true
        await ar.sync()
        return false
      },
      'both sides converge',
      8_000,
    )
    converged = true
  } catch (err) {
    converged = (err as Error).message
  }
  return { open: 'ok', logged: linesOf(logger), converged, a: ar, b, dir, adminDir: admin }
}

describe('review: a damaged disk, records other than entity data', function () {
  this.timeout(180_000)
  let base: { admin: string; member: string }
  let records: [string, Uint8Array][]

  let removeBase: () => Promise<void> = async () => undefined

  before(async function () {
    const { dir, cleanup } = await tempDir('convergent-damaged-disk-base-')
    removeBase = cleanup
    base = { admin: join(dir, 'admin'), member: join(dir, 'member') }
    const made = await pristine()
    await cp(made.admin, base.admin, { recursive: true })
    await cp(made.member, base.member, { recursive: true })
    for (const c of cleanups.splice(0).reverse()) await c()
    records = await rawRecords(base.admin)
  })

  after(async () => removeBase())

  // Exploration, run with SWEEP=1 (SWEEP_MODES=flip,truncate,move,delete): prints a table.
  ;(process.env.SWEEP === '1' ? it : it.skip)('sweep (exploration): every non-entity record damaged, one at a time', async function () {
    const interesting = records.map(([k]) => k).filter((k) => !k.startsWith('!deltas!') && !k.startsWith('!snapshots!') && !k.startsWith('!leaves!'))
    const table: string[] = []
    const modes = (process.env.SWEEP_MODES ?? 'flip').split(',') as Damage[]
    for (const mode of modes)
      for (const key of interesting) {
        const out = await attempt(base, (db) => damage(db, key, mode))
        table.push(
          `${mode} ${JSON.stringify(key)}: open=${out.open.slice(0, 200)} converged=${String(out.converged).slice(0, 100)} logged=${out.logged.length}`,
        )
        for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined)
      }
    console.log(table.join('\n'))
  })

  const metaKey = (prefix: string): string => {
    const found = records.map(([k]) => k).find((k) => k.startsWith(prefix))
    if (found === undefined) throw new Error(`the pristine folder has no record ${prefix}`)
    return found
  }

  /** The replica opened on the damaged folder, reported the damage with ERR_STORE_CORRUPT, and converged. */
  function expectSurvived(out: Outcome, named: string): void {
    expect(out.open, 'open() on the damaged folder').to.equal('ok')
    expect(out.converged, 'converges with the honest member afterwards').to.equal(true)
    expect(
      out.logged.some((l) => l.includes('ERR_STORE_CORRUPT') && l.includes(named)),
      `an ERR_STORE_CORRUPT line naming ${named}; logged: ${out.logged.join(' | ')}`,
    ).to.equal(true)
  }

  // ---- HOLE 1 (high): the replica's lists of collection names ---------------------------------
  for (const name of ['refused-collections', 'counter-collections']) {
    it(`HOLE 1 (fixed): a flipped byte in the '${name}' meta record made Replica.open() reject (ERR_STORE_CORRUPT); now it is moved aside, logged, and the replica opens and converges`, async function () {
      const out = await attempt(base, (db) => damage(db, `!meta!${name}`, 'flip'))
      expectSurvived(out, name)
    })
  }

  // ---- HOLE 2 (high, fixed): the stored policy and the kept revocations -----------------------
  /** Locked down at open (said so), then the member's policy (v2) arrives and un-locks it. */
  const lockedThenAdopts = async (a: Replica): Promise<void> => {
    await waitFor(() => a.policy.get()?.version === 2, "the damaged admin adopts the member's policy")
    expect(a.policy.get()?.revoked, 'the revocation of v2 holds').to.deep.equal([GONE])
  }
  const saidLockedDown = (out: Outcome): boolean => out.logged.some((l) => /allows nothing until an admin's policy arrives \[ERR_STORE_CORRUPT\]/.test(l))

  for (const [name, how] of [
    ['cluster-policy', 'flip'],
    ['cluster-policy', 'truncate'],
    ['cluster-policy-evidence', 'flip'],
  ] as const) {
    it(`HOLE 2 (fixed): a ${how} of the '${name}' record made Replica.open() reject; now it is moved aside, logged, the replica opens fail-closed (README: "A replica whose stored policy no longer verifies (a damaged record …) fails closed") until an admin's policy arrives`, async function () {
      const out = await attempt(base, (db) => damage(db, `!meta!${name}`, how), lockedThenAdopts)
      expectSurvived(out, name)
      expect(saidLockedDown(out), out.logged.join(' | ')).to.equal(true)
    })
  }

  it('HOLE 2 (fixed): the policy record copied under the evidence key (a record duplicated under another key) made Replica.open() reject; now it opens fail-closed', async function () {
    const out = await attempt(
      base,
      (db) => editRaw(db, async (raw) => raw.put('!meta!cluster-policy-evidence', (await raw.get('!meta!cluster-policy'))!)),
      lockedThenAdopts,
    )
    expectSurvived(out, 'cluster-policy-evidence')
    expect(saidLockedDown(out), out.logged.join(' | ')).to.equal(true)
  })

  it("HOLE 2 (fixed): locked down by a damaged policy record, the replica reads, writes and serves nothing until an admin's policy arrives", async function () {
    const dirs = await copies(async (admin) => damage(admin, '!meta!cluster-policy', 'flip'))
    const hub = new LoopbackHub()
    const logger = recordingLogger()
    const a = await opened(dirs.admin, hub, ADMIN, logger) // alone: no policy can arrive
    expect(a.policy.get()).to.equal(undefined)
    let err: unknown
    try {
      await a.collection<{ n: number }>('orders').put('x', { n: 1 })
    } catch (e) {
      err = e
    }
    expect((err as { code?: string } | undefined)?.code).to.equal('ERR_FORBIDDEN')
    expect(linesOf(logger).some((l) => l.includes('ERR_STORE_CORRUPT') && l.includes('cluster-policy'))).to.equal(true)
    // The admin's policy comes back from the member once it connects: the replica un-locks.
    const b = await opened(dirs.member, hub, MEMBER)
    await waitFor(() => a.policy.get()?.version === 2, 'the admin adopts v2 from the member')
    await a.collection<{ n: number }>('orders').put('x', { n: 1 })
    await waitFor(async () => (await b.collection('orders').get('x')) !== undefined, 'x reaches the member')
  })

  // ---- HOLE 3 (high): the read audit and the subject keys -------------------------------------
  for (const prefix of ['!meta!audit/reads-mark', '!meta!audit/reads/']) {
    it(`HOLE 3 (fixed): a flipped byte in a ${prefix.slice(6)} record made Replica.open() reject (ERR_STORE_CORRUPT); now it is moved aside, logged, and the replica opens and converges`, async function () {
      const key = metaKey(prefix)
      const out = await attempt(base, (db) => damage(db, key, 'flip'))
      expectSurvived(out, key.slice(6))
      if (prefix.endsWith('/')) expect(out.logged.join('\n'), 'the log line says the audit trail has a gap').to.include('gap')
      // The audit goes on: a new audited read is recorded, after the seqs already given out.
      const seqs = async (): Promise<number[]> => {
        const got: number[] = []
        for await (const e of out.a!.readAudit()) got.push(e.seq)
        return got
      }
      const before = await seqs()
      await out.a!.collection<{ customerId: string; email?: string }>('customers', { personal: PERSONAL }).get('c1')
      await waitFor(async () => (await seqs()).length > before.length, 'a new audit entry')
      const after = await seqs()
      expect(after[after.length - 1], 'a new seq, past every one given out before').to.be.greaterThan(Math.max(0, ...before, Number(key.slice(-16)) || 0))
      expect(out.a!.stats().store.corruptRecords, 'counted').to.be.greaterThan(0)
    })
  }

  it("HOLE 3 (fixed): a flipped byte in a subject key record ('personal/k/<id>') made Replica.open() reject; now the key is deleted (never kept aside, out of forget()'s reach), logged, and comes back from the member by key exchange: c1's email opens again", async function () {
    const key = metaKey('!meta!personal/k/')
    const out = await attempt(base, (db) => damage(db, key, 'flip'))
    expectSurvived(out, key.slice(6))
    const customers = out.a!.collection<{ customerId: string; email?: string }>('customers', { personal: PERSONAL })
    // The key comes back from the member by key exchange; the field opens again.
    await waitFor(
      async () => {
        if ((await customers.get('c1'))?.email === 'one@example.com') return true
        await out.a!.sync()
        return false
      },
      "c1's email opens again once the key is back",
      8_000,
    )
    await out.a!.close()
    const quarantined = (await rawRecords(join(out.dir!, 'admin'))).filter(([k]) => k.startsWith('!quarantine!')).map(([k]) => k)
    expect(
      quarantined.filter((k) => k.includes('personal/k/')),
      'no subject key kept aside',
    ).to.deep.equal([])
  })

  it("HOLE 3 (fixed): a damaged 'personal/compact-pending' marker (finished at the next open) made Replica.open() reject; now it is taken as present: the store is compacted again and the marker deleted", async function () {
    const out = await attempt(base, (db) =>
      editRaw(db, async (raw) => raw.put('!meta!personal/compact-pending', (await raw.get('!meta!refused-collections'))!)),
    )
    expectSurvived(out, 'personal/compact-pending')
    await out.a!.close()
    const left = (await rawRecords(join(out.dir!, 'admin'))).map(([k]) => k)
    expect(left, 'the marker is deleted once compacted').not.to.include('!meta!personal/compact-pending')
  })

  // ---- HOLE 4 (high): a collection's meta record ------------------------------------------------
  for (const [name, how] of [
    ['customers', 'flip'],
    ['customers', 'move'],
    ['notes', 'flip'],
    ['notes', 'move'],
  ] as const) {
    it(`HOLE 4 (fixed): a ${how} of one collection's meta record ('!collections!${name}') made Replica.open() reject (every collection down); now it is moved aside, logged, and the collection brought back from its entities' heads (its backend, its data; no collection made up from a moved key)`, async function () {
      const pristineNames = records
        .map(([k]) => k)
        .filter((k) => k.startsWith('!collections!'))
        .map((k) => k.slice('!collections!'.length))
      const out = await attempt(base, (db) => damage(db, `!collections!${name}`, how))
      expectSurvived(out, name)
      const a = out.a!
      expect(a.collections().sort()).to.deep.equal([...pristineNames].sort())
      expect(out.logged.some((l) => l.includes(`collection '${name}' had no sound meta record`) && l.includes('ERR_STORE_CORRUPT'))).to.equal(true)
      // Its entities read back with the backend they were written with.
      expect(await a.collection<{ n: number }>('notes').get('y1')).to.deep.equal({ n: 1 })
      expect(await a.collection<{ customerId: string; email?: string }>('customers', { personal: PERSONAL }).get('c1')).to.deep.include({
        customerId: 's1',
        email: 'one@example.com',
      })
      // The meta record is written again; the damaged one is aside, not a collection.
      await a.close()
      const admin = new Map(await rawRecords(out.adminDir))
      expect(admin.has(`!collections!${name}`), 'the meta record is written again').to.equal(true)
      expect([...admin.keys()].filter((k) => k.startsWith('!collections!')).length).to.equal(pristineNames.length)
    })
  }

  // ---- HOLE 5 (medium): the store's format record ------------------------------------------------
  it("HOLE 5 (fixed): a flipped byte in the store's 'format' record made open() reject for good, though every other record shows the folder is sealed (format >= 1); now the folder is taken as the current format, the record rewritten and the damage reported", async function () {
    const out = await attempt(base, (db) => damage(db, '!store!format', 'flip'))
    expectSurvived(out, 'format')
    expect(out.a!.stats().store.damage.join(' ')).to.match(/format record \('format' in the store keyspace\) failed its check/)
  })

  // ---- HOLE 6 (low): what the error says ---------------------------------------------------------
  it('HOLE 6 (fixed): the ERR_STORE_CORRUPT of a damaged meta record named neither the record nor the folder, and promised "the entity is fetched again from peers"', async function () {
    const out = await attempt(base, (db) => damage(db, '!meta!refused-collections', 'flip'))
    // Whether open() rejects or logs (after HOLE 1's fix), the words must name the record.
    const said = out.open === 'ok' ? out.logged.join('\n') : out.open
    expect(said).to.include('meta record "refused-collections"')
    expect(said).to.include(` in ${join(out.dir!, 'admin')} `)
    expect(said).not.to.include('the entity is fetched again from peers')
  })

  // ---- HOLE 7 (high): a lost entity head ----------------------------------------------------------
  for (const how of ['delete', 'move'] as const) {
    it(`HOLE 7: an entity's head record lost (${how}) — the entity silently vanishes here and anti-entropy never brings it back (the stored digest leaf still counts it)`, async function () {
      const key = records.map(([k]) => k).find((k) => k.startsWith('!heads!orders') && k.endsWith('\u0000o2'))!
      const out = await attempt(base, (db) => damage(db, key, how))
      expect(out.open).to.equal('ok')
      expect(out.converged, 'o2 comes back from the member').to.equal(true)
      // Fixed: the digest is checked against the heads at open (Replica.verifyDigests), the leaf rebuilt, counted and logged.
      expect(out.logged.join('\n')).to.include("the digest of 'orders' disagreed with its stored heads")
    })
  }

  /** Copies of the pristine folders, `harm` done to the admin's; the late joiner's folder is empty. */
  async function copies(harm: (admin: string, member: string) => Promise<void>): Promise<{ admin: string; member: string; late: string }> {
    const dir = await folder()
    const out = { admin: join(dir, 'admin'), member: join(dir, 'member'), late: join(dir, 'late') }
    await cp(base.admin, out.admin, { recursive: true })
    await cp(base.member, out.member, { recursive: true })
    await harm(out.admin, out.member)
    return out
  }

  async function opened(db: string, hub: LoopbackHub, id: string, logger?: Logger): Promise<Replica> {
    const r = await openReplica(db, hub, id, logger)
    cleanups.push(() => r.close())
    return r
  }

  /** Whether a late joiner that reaches only the admin gets o2 (the member's write) from it. */
  async function lateJoinerGetsO2(late: Replica): Promise<boolean> {
    try {
      await waitFor(
        async () => {
          await late.sync()
          return (await late.collection('orders').get('o2')) !== undefined && (await late.collection('orders').get('o1')) !== undefined
        },
        'the late joiner gets o1 and o2',
        6_000,
      )
      return true
    } catch {
      return false
    }
  }

  it("probe (control for HOLE 8): undamaged, a late joiner that reaches only the admin gets the member's o2 from it (relayed with its signed head)", async function () {
    const dirs = await copies(async () => undefined)
    const hub = new LoopbackHub()
    await opened(dirs.admin, hub, ADMIN)
    const late = await opened(dirs.late, hub, LATE)
    expect(await lateJoinerGetsO2(late)).to.equal(true)
  })

  // ---- HOLE 8 (medium): a relay's damaged signed head of another author ------------------------
  it("HOLE 8 (fixed, with 8b): the admin's stored signed head of the member's actor (meta head/orders NUL o2 NUL <actor>) flipped was never counted, logged nor moved aside; now it is found at open, moved aside, counted and logged, and the entity kept (dropping it, to fetch it again with its heads, lost the admin's own writes: review2-damaged-disk HOLE 3)", async function () {
    const key = records.map(([k]) => k).find((k) => k.startsWith('!meta!head/orders\u0000o2\u0000'))!
    const dirs = await copies((admin) => damage(admin, key, 'flip'))
    const logger = recordingLogger()
    const admin = await opened(dirs.admin, new LoopbackHub(), ADMIN, logger)
    await waitFor(() => admin.stats().store.corruptRecords > 0, 'the damaged head found at open (SignedHeads.checkStored)', 5_000)
    expect(logger.lines.some((l) => l.message.includes('moved aside') && l.message.includes('takes them from a replica that holds its head'))).to.equal(true)
    expect(await admin.collection('orders').get('o2'), 'the entity is kept').to.deep.equal({ n: 2 })
    await admin.close()
    expect(
      (await rawRecords(dirs.admin)).some(([k]) => k === key),
      'moved aside',
    ).to.equal(false)
  })

  it("HOLE 8b (fixed: the admin's next round asks the member for o2 whole and keeps the head it brings, SyncClient.refetchHeads): after the member's head of o2 was lost at the admin, a late joiner that reaches only the admin never got o2 (refused there for want of that head), even after the member came and went", async function () {
    const key = records.map(([k]) => k).find((k) => k.startsWith('!meta!head/orders\u0000o2\u0000'))!
    const dirs = await copies((admin) => damage(admin, key, 'flip'))
    const hub = new LoopbackHub()
    const logger = recordingLogger()
    const admin = await opened(dirs.admin, hub, ADMIN, logger)
    await waitFor(() => logger.lines.some((l) => l.message.includes('takes them from a replica that holds its head')), 'the damaged head found at open', 5_000)
    const member = await opened(dirs.member, hub, MEMBER)
    await waitFor(() => admin.peers().includes(MEMBER), 'the member connected')
    await admin.sync() // the admin's round asks the member for o2 whole (refetchHeads) and keeps the head it brings
    await waitFor(() => logger.lines.some((l) => l.message.includes("stored 1 signed head(s) of 'o2'")), 'the head stored again', 5_000)
    await member.close()
    const late = await opened(dirs.late, hub, LATE)
    expect(await lateJoinerGetsO2(late), 'the late joiner converges through the admin').to.equal(true)
  })

  it('HOLE 8c (fixed: kept as meta records): a lost head still asked of peers after a restart — the admin, alone when it found the damage, restarts; its next round with the member fetches it', async function () {
    const key = records.map(([k]) => k).find((k) => k.startsWith('!meta!head/orders\u0000o2\u0000'))!
    const dirs = await copies((admin) => damage(admin, key, 'flip'))
    const hub = new LoopbackHub()
    const first = recordingLogger()
    const alone = await openReplica(dirs.admin, hub, ADMIN, first)
    await waitFor(() => first.lines.some((l) => l.message.includes('takes them from a replica that holds its head')), 'the damaged head found at open', 5_000)
    await new Promise((r) => setTimeout(r, 100)) // the marker goes with the next batch
    await alone.close()
    const logger = recordingLogger()
    const admin = await opened(dirs.admin, hub, ADMIN, logger)
    const member = await opened(dirs.member, hub, MEMBER)
    await waitFor(() => admin.peers().includes(MEMBER), 'the member connected')
    await admin.sync()
    await waitFor(() => logger.lines.some((l) => l.message.includes("stored 1 signed head(s) of 'o2'")), 'the head stored again after the restart', 5_000)
    await member.close()
    const late = await opened(dirs.late, hub, LATE)
    expect(await lateJoinerGetsO2(late), 'the late joiner converges through the admin').to.equal(true)
  })

  it("probe (control for HOLE 9): with its policy record, the member refuses the revoked peer's write", async function () {
    const dirs = await copies(async () => undefined)
    const hub = new LoopbackHub()
    const member = await opened(dirs.member, hub, MEMBER)
    const gone = await opened(join(dirs.late, 'gone'), hub, GONE)
    await gone.collection<{ n: number }>('orders').put('evil', { n: 666 })
    await gone.sync().catch(() => undefined)
    await new Promise((r) => setTimeout(r, 500))
    expect(await member.collection('orders').get('evil')).to.equal(undefined)
    expect(member.policy.get()?.version).to.equal(2)
  })

  // ---- HOLE 9 (medium, fixed): a lost policy record ------------------------------------------------
  for (const [how, harm] of [
    ['delete', (db: string) => damage(db, '!meta!cluster-policy', 'delete')],
    ['move', (db: string) => damage(db, '!meta!cluster-policy', 'move')],
    // A folder of the previous release has no 'cluster-policy-adopted' record: the evidence tells.
    [
      'delete, no adopted-version record',
      (db: string) =>
        editRaw(db, async (raw) => {
          await raw.del('!meta!cluster-policy')
          await raw.del('!meta!cluster-policy-adopted')
        }),
    ],
  ] as const) {
    it(`HOLE 9 (fixed): the member's policy record lost (${how}) reopened it with no policy — every key holder could do everything, a revoked peer's write was taken; now it opens locked down until an admin's policy arrives`, async function () {
      const dirs = await copies((_admin, member) => harm(member))
      const hub = new LoopbackHub()
      const logger = recordingLogger()
      const member = await opened(dirs.member, hub, MEMBER, logger)
      expect(
        linesOf(logger).some((l) => /cluster-policy.*missing.*allows nothing/.test(l) && l.includes('ERR_STORE_CORRUPT')),
        linesOf(logger).join(' | '),
      ).to.equal(true)
      const gone = await opened(join(dirs.late, 'gone'), hub, GONE) // revoked in v2; knows no policy
      await gone.collection<{ n: number }>('orders').put('evil', { n: 666 })
      await gone.sync().catch(() => undefined)
      await new Promise((r) => setTimeout(r, 500))
      expect(member.policy.get(), 'no policy in force: locked down').to.equal(undefined)
      // The admin's policy un-locks it; the revoked peer's write was never taken.
      await opened(dirs.admin, hub, ADMIN)
      await waitFor(() => member.policy.get()?.version === 2, 'the member adopts v2 from the admin')
      await gone.sync().catch(() => undefined)
      await new Promise((r) => setTimeout(r, 300))
      expect(await member.collection('orders').get('evil'), "a revoked peer's write").to.equal(undefined)
      expect(await member.collection('orders').get('o1'), 'the member reads again').to.not.equal(undefined)
    })
  }

  it('HOLE 2/9 (fixed): a locked-down admin alone signs the next version above the one it lost (v3, not v1), and the revocation it lacks still holds in the cluster', async function () {
    const dirs = await copies(async (admin) => damage(admin, '!meta!cluster-policy', 'flip'))
    const hub = new LoopbackHub()
    const a = await opened(dirs.admin, hub, ADMIN)
    const set = await a.policy.set(POLICY) // no peer to learn v2 from
    expect(set.version).to.equal(3)
    const b = await opened(dirs.member, hub, MEMBER)
    await waitFor(() => b.policy.get()?.version === 3, 'the member adopts v3')
    expect(b.policy.get()?.revoked, 'v2 kept as evidence: its revocation holds').to.deep.equal([GONE])
  })

  it('probe (HOLE 9): a folder that never adopted a policy still opens in "no policy yet" mode (every key holder may do everything)', async function () {
    const hub = new LoopbackHub()
    const logger = recordingLogger()
    const fresh = await opened(join(await folder(), 'fresh'), hub, LATE, logger)
    await fresh.collection<{ n: number }>('orders').put('x', { n: 1 })
    expect(await fresh.collection('orders').get('x')).to.deep.equal({ n: 1 })
    expect(linesOf(logger).filter((l) => l.includes('ERR_STORE_CORRUPT'))).to.deep.equal([])
  })

  it("probe (HOLE 9, upgrade): a folder of the previous release (a policy, no 'cluster-policy-adopted' record) opens with its policy, not locked down", async function () {
    const dirs = await copies((_admin, member) => editRaw(member, (raw) => raw.del('!meta!cluster-policy-adopted')))
    const hub = new LoopbackHub()
    const logger = recordingLogger()
    const member = await opened(dirs.member, hub, MEMBER, logger)
    expect(member.policy.get()?.version).to.equal(2)
    expect(await member.collection('orders').get('o1')).to.not.equal(undefined)
    expect(linesOf(logger).filter((l) => l.includes('ERR_STORE_CORRUPT'))).to.deep.equal([])
  })

  // ---- probes that held ---------------------------------------------------------------------------
  it('probe: every change-feed record flipped, one at a time: the replica opens and converges', async function () {
    for (const key of records.map(([k]) => k).filter((k) => k.startsWith('!feed!'))) {
      const out = await attempt(base, (db) => damage(db, key, 'flip'))
      expect(out.open, key).to.equal('ok')
      expect(out.converged, key).to.equal(true)
      for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined)
    }
  })

  it('probe: every entity head flipped or truncated: opens, converges, the damage is counted', async function () {
    for (const how of ['flip', 'truncate'] as const) {
      for (const key of records.map(([k]) => k).filter((k) => k.startsWith('!heads!orders'))) {
        const out = await attempt(base, (db) => damage(db, key, how))
        expect(out.open, key).to.equal('ok')
        expect(out.converged, key).to.equal(true)
        expect(out.a!.stats().store.corruptRecords, key).to.be.greaterThan(0)
        for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined)
      }
    }
  })

  it('probe: signed heads and push proofs (meta head/…, proof/…) flipped, truncated, moved or deleted: opens and converges', async function () {
    for (const how of ['flip', 'truncate', 'move', 'delete'] as const) {
      for (const key of records.map(([k]) => k).filter((k) => k.startsWith('!meta!head/') || k.startsWith('!meta!proof/'))) {
        const out = await attempt(base, (db) => damage(db, key, how))
        expect(out.open, `${how} ${key}`).to.equal('ok')
        expect(out.converged, `${how} ${key}`).to.equal(true)
        for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined)
      }
    }
  })

  it("probe: the store's batch record flipped: opens, says in stats().store.damage that lost writes cannot be told, converges", async function () {
    const out = await attempt(base, (db) => damage(db, '!store!batch', 'flip'))
    expect(out.open).to.equal('ok')
    expect(out.converged).to.equal(true)
    expect(out.a!.stats().store.damage.join(' ')).to.match(/last batch failed its checksum/)
  })

  it('probe: a damaged drop marker (garbage bytes under a drop key) is moved aside and reported; nothing is dropped', async function () {
    const out = await attempt(base, (db) => editRaw(db, (raw) => raw.put('!store!drop\u0000orders', new Uint8Array([1, 2, 3, 4, 5, 6, 7]))))
    expect(out.open).to.equal('ok')
    expect(out.converged).to.equal(true)
    expect(out.a!.stats().store.damage.join(' ')).to.match(/drop marker of collection 'orders' failed its checksum/)
  })

  it('probe: a damaged feed floor, an unsigned-change marker and a quarantine record of garbage: opens and converges', async function () {
    const out = await attempt(base, (db) =>
      editRaw(db, async (raw) => {
        const junk = (await raw.get('!meta!refused-collections'))! // sealed under another key: fails its check
        await raw.put('!store!feedfloor\u0000orders', junk)
        await raw.put('!meta!unsigned/orders\u0000zz', junk)
        await raw.put('!quarantine!garbage', junk)
      }),
    )
    expect(out.open).to.equal('ok')
    expect(out.converged).to.equal(true)
  })

  it('probe: a garbage key in the heads keyspace of a collection (junk bytes): opens and converges', async function () {
    const out = await attempt(base, (db) => editRaw(db, (raw) => raw.put('!heads!orders\u00002352\u0000zz', new Uint8Array([1, 0, 0, 0, 0, 9]))))
    expect(out.open).to.equal('ok')
    expect(out.converged).to.equal(true)
  })
})
