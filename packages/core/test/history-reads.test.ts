/**
 * What one peer may make a replica read of an entity's history to judge its deltas (op-refs:
 * an op named on an old base is looked up among the changes since that base): bounded per peer
 * and minute (HISTORY_READS_PER_MINUTE). Past it, a delta that needs reads is refused unread as
 * a rate; deltas that need none still apply, other peers are not touched, and the entity holds
 * what it held (review2-op-refs HOLE 5: one 118-byte insert read every later change).
 */
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import { applyRemoteDelta, HISTORY_READS_PER_MINUTE } from '../src/replication/apply.js'
import { LoopbackHub, type Replica } from '../src/index.js'
import { memoryReplica } from './helpers.js'
import { ctxOf, savedDoc } from './counter-helpers.js'
import { insertOnOldBase, oldBase } from './old-base-helpers.js'

const actor = (i: number): string => 'cc'.repeat(15) + i.toString(16).padStart(2, '0')

describe('history a peer may have read to judge its deltas', function () {
  this.timeout(60_000)
  const replicas: Replica[] = []
  afterEach(async () => {
    await Promise.all(replicas.splice(0).map((r) => r.close()))
  })

  it("a peer past its minute's budget has its deltas that need history read refused unread (rateLimited), the entity unchanged; its other deltas and other peers' still apply", async () => {
    const warnings: string[] = []
    const r = await memoryReplica({
      network: new LoopbackHub().createNetwork('R'),
      logger: { warn: (m: string) => warnings.push(m), error: (m: string) => warnings.push(m) },
    })
    replicas.push(r)
    const ctx = ctxOf(r)
    const base = oldBase(300)
    const apply = (peer: string, delta: Uint8Array) => applyRemoteDelta(ctx, peer, 'lists', 'automerge', 'e', delta)
    expect(await apply('P0', base.saved)).to.equal('applied') // a whole document: not judged by reads
    expect(ctx.historyReads.left('P1', ctx.clock.now())).to.equal(HISTORY_READS_PER_MINUTE)

    // P1's insert on the old base reads the ~300 changes since it, and is charged for them.
    expect(await apply('P1', insertOnOldBase(base, actor(1), 5))).to.equal('applied')
    const left = ctx.historyReads.left('P1', ctx.clock.now())
    expect(HISTORY_READS_PER_MINUTE - left).to.be.within(290, 320)

    // P1 spends the rest: its next such delta is refused unread, and leaves the entity as it was.
    ctx.historyReads.take('P1', ctx.clock.now(), left)
    // (The document is Automerge's own, not written through a collection: read it whole.)
    const listOf = async (): Promise<number[]> => (A.load<{ l: number[] }>(await savedDoc(r, 'lists', 'e')).l ?? []).slice()
    const before = await listOf()
    expect(before).to.have.members([1, 5])
    expect(await apply('P1', insertOnOldBase(base, actor(2), 6))).to.equal('rateLimited')
    expect(await listOf()).to.deep.equal(before)
    expect(ctx.historyReads.left('P1', ctx.clock.now())).to.equal(0)
    // Logged, naming the peer charged (the inbound rate's drops are not: this one is rare).
    expect(warnings.filter((w) => w.includes('P1 has had') && w.includes('history read'))).to.have.length(1)

    // Another peer is not touched by P1's budget: the same delta applies from it.
    expect(await apply('P2', insertOnOldBase(base, actor(2), 6))).to.equal('applied')

    // A delta of P1 that needs no read (a change on the document's heads, judged ahead) still applies.
    const current = A.load<Record<string, unknown>>(await savedDoc(r, 'lists', 'e'), { actor: actor(3) })
    const next = A.change(current, { time: 0 }, (d) => void (d['note'] = 'on the heads'))
    expect(await apply('P1', A.getLastLocalChange(next)!)).to.equal('applied')
    expect(await listOf()).to.have.members([1, 5, 6])
  })
})
