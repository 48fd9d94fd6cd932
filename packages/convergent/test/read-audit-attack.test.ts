// Attacks on the read audit (personal/read-audit.ts) from a review: each `it` failed on the code
// it was written against and passes since the fixes; classic-level on disk; each names its hole.
import { join } from 'node:path'
import { expect } from 'chai'
import { Replica, silentLogger, systemClock, type Clock, type PersonalOptions, type ReadAuditEntry, type Store, type StoreOp } from '@convergent/core'
import { classicLevelStore } from '@convergent/level'
import { yjsBackend } from '@convergent/yjs'
import { automergeBackend } from '@convergent/automerge'
import { open, type ReplicaWithMetrics } from '../src/index.js'
import { replicasAfterEach, tempDir, waitFor } from './helpers.js'

interface Customer {
  customerId: string
  email?: string
}
const AUDITED: PersonalOptions<Customer> = { subject: (c) => c.customerId, fields: ['email'], auditReads: true }

async function entriesOf(replica: Replica, options: { since?: number; collection?: string } = {}): Promise<ReadAuditEntry[]> {
  const out: ReadAuditEntry[] = []
  for await (const e of replica.readAudit(options)) out.push(e)
  return out
}

describe('Read audit under attack (holes found by the audit)', function () {
  this.timeout(60_000)
  const suite = replicasAfterEach('convergent-read-audit-attack-')

  async function start(dir: string, options: Parameters<typeof open>[0] = {}): Promise<ReplicaWithMetrics> {
    const replica = await open({ dir, network: false, logLevel: 'silent', ...options })
    suite.opened(replica)
    return replica
  }

  // HOLE (seq reuse): the age prune deletes old entries in its OWN store batch (prune() calls
  // store.write directly), while the entry whose record() triggered it sits in the current
  // group-commit tick. If that tick is lost (crash, or a failing batch — documented as possible)
  // after the prune batch landed, the folder holds no audit entry at all; load() then finds an
  // empty log and seq restarts at 1. A consumer resuming with readAudit({ since: lastSeq }) — the
  // documented "resumable like changes()" use — silently never sees any read again until seq
  // passes its old position. Fix: persist the high-water seq (e.g. a meta `audit/next` written in
  // the same batch as each entry, or never let the prune delete the newest stored entry / do the
  // prune's deletes through the same tick), and make load() start from max(stored, high-water).
  it('seq never goes back after a reopen, even if an age prune emptied the log and the next batch was lost', async function () {
    const { dir, cleanup } = await tempDir('convergent-read-audit-seq-')
    let offset = 0
    const real = systemClock()
    const clock: Clock = { ...real, now: () => real.now() + offset }
    let failAuditBatch = false
    const wrap = (store: Store): Store =>
      new Proxy(store, {
        get(target, prop) {
          if (prop === 'write') {
            return (ops: StoreOp[]) => {
              // Stands for a crash before this tick's batch is durable: only the tick that carries
              // the new entry is lost; the prune's own delete batch goes through.
              if (failAuditBatch && ops.some((op) => op.type === 'meta' && op.key.startsWith('audit/reads/'))) {
                return Promise.reject(new Error('simulated crash before this batch was durable'))
              }
              return target.write(ops)
            }
          }
          const v = Reflect.get(target, prop, target) as unknown
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
        },
      })
    const openIt = async (): Promise<Replica> =>
      Replica.open({
        store: wrap(classicLevelStore(join(dir, 'db'))),
        backends: [yjsBackend(), automergeBackend()],
        logger: silentLogger,
        clock,
        readAudit: { maxEntries: 1000, maxAgeDays: 1 },
      })
    try {
      let replica = await openIt()
      let customers = replica.collection<Customer>('customers', { personal: AUDITED })
      await customers.put('c1', { customerId: 'p-1', email: 'ada@example.com' })
      for (let i = 1; i <= 3; i++) await customers.get('c1', { actor: `a${i}` })
      await waitFor(async () => (await entriesOf(replica)).length === 3, '3 entries stored')
      const consumerPosition = (await entriesOf(replica)).at(-1)!.seq // an exporter resumes from here
      expect(consumerPosition).to.equal(3)

      offset = 2 * 86_400_000
      failAuditBatch = true
      await customers.get('c1', { actor: 'a4' }) // seq 4 in a lost batch; the prune removes 1..3
      await waitFor(async () => (await entriesOf(replica)).length === 0, 'the age prune emptied the stored log')
      failAuditBatch = false
      await replica.close().catch(() => undefined)

      replica = await openIt()
      try {
        customers = replica.collection<Customer>('customers', { personal: AUDITED })
        await customers.get('c1', { actor: 'a5' })
        await waitFor(async () => (await entriesOf(replica)).length === 1, 'the new read stored')
        const [entry] = await entriesOf(replica)
        // The exporter asks for what came after what it already has: the new read must be there.
        expect(entry!.seq, 'seq reused after reopen').to.be.greaterThan(consumerPosition)
        expect(await entriesOf(replica, { since: consumerPosition })).to.have.length(1)
      } finally {
        await replica.close()
      }
    } finally {
      await cleanup()
    }
  })

  // HOLE (actor not validated for content): checkActor checks type and ≤ 256 bytes only. An actor
  // holding a newline or tab (e.g. taken from a request header or a user name) is recorded as
  // given and printed raw by `npx convergent audit … --reads` (TSV: fields joined by '\t', one
  // line per entry) — a caller can forge whole audit rows (log injection) in the text output
  // an auditor reads. Fix: refuse control characters (C0/C1, U+2028/2029) in checkActor
  // (ERR_INVALID_ARGUMENT, before the read, like the other checks), or escape on output.
  it('refuses an actor with control characters (newline / tab forge rows of the CLI TSV output)', async function () {
    const replica = await start(await suite.folder())
    const customers = replica.collection<Customer>('customers', { personal: AUDITED })
    await customers.put('c1', { customerId: 'p-1', email: 'ada@example.com' })
    const forged = 'agent-1\n999\t2020-01-01T00:00:00.000Z\tc1\tp-1\temail\tget\tlocal\tsomeone-else'
    for (const actor of [forged, 'a\tb', 'a\rb', 'a\u0000b', 'a\u2028b']) {
      await customers.get('c1', { actor }).then(
        () => expect.fail(`accepted actor ${JSON.stringify(actor)}`),
        (err: { code?: string }) => expect(err.code).to.equal('ERR_INVALID_ARGUMENT'),
      )
    }
  })

  // HOLE (actor "recorded as given" is not): a string with a lone surrogate passes checkActor
  // (Buffer.byteLength counts it as U+FFFD) but CBOR encodes UTF-8, so the stored actor is
  // 'agent-\uFFFD' — two different callers ('agent-\uD800', 'agent-\uDC00') are recorded as the
  // same actor. Fix: refuse non-well-formed strings (`!actor.isWellFormed()`, Node ≥ 20) in
  // checkActor.
  it('refuses an actor that is not well-formed UTF-16 (else it is not recorded as given)', async function () {
    const replica = await start(await suite.folder())
    const customers = replica.collection<Customer>('customers', { personal: AUDITED })
    await customers.put('c1', { customerId: 'p-1', email: 'ada@example.com' })
    let accepted = false
    await customers.get('c1', { actor: 'agent-\uD800' }).then(
      () => (accepted = true),
      (err: { code?: string }) => expect(err.code).to.equal('ERR_INVALID_ARGUMENT'),
    )
    if (accepted) {
      await waitFor(async () => (await entriesOf(replica)).length === 1, 'entry stored')
      expect((await entriesOf(replica))[0]!.actor, 'actor not recorded as given').to.equal('agent-\uD800')
    }
  })
})
