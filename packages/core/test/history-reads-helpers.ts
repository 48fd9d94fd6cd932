/**
 * Shared set-up of the reviews of the history-read budget (review2/3/4-history-reads): a
 * loopback cluster where SUPPORT holds an old base, and changes made under bound actors.
 */
import { expect } from 'chai'
import * as A from '@automerge/automerge'
import type { Replica } from '../src/index.js'
import { applyRemoteDelta, HISTORY_READS_PER_MINUTE } from '../src/replication/apply.js'
import type { ReplicationContext } from '../src/replication/context.js'
import { boundActor } from '../src/trust/actor-binding.js'
import { concatBytes, toHex } from '../src/hash.js'
import { encodeHeaded } from '../src/replication/heads.js'
import { ADMIN, ORDERS, SUPPORT, type Keyring } from './trust-helpers.js'
import { headOf, headsCluster } from './heads-helpers.js'
import { ctxOf, savedDoc } from './counter-helpers.js'
import { insertOnOldBase, oldBase } from './old-base-helpers.js'

export const op = (o: object) => o as unknown as A.DecodedChange['ops'][number]
export const hashOf = (change: Uint8Array): string => A.decodeChange(change).hash
/** The actor `peer` writes under with this nonce (bound to it). */
export const actorOf = (peer: string, nonce: number): string => toHex(boundActor(peer, new Uint8Array(16).fill(nonce)))

/**
 * SUPPORT (the receiver) holding an old base of `n` changes (unbound actor, vouched for by
 * ADMIN); ADMIN is an honest author or relay, ORDERS the member. `from(peer)` hands it a delta,
 * `spent(key)` is what a budget key has spent this minute, `list()` the base's list as stored.
 */
export async function oldBaseAtSupport(keys: Keyring, replicas: Replica[], n = 300) {
  const { r } = await headsCluster(keys, replicas, [ADMIN, ORDERS, SUPPORT])
  const ctx: ReplicationContext = ctxOf(r[SUPPORT]!)
  const base = oldBase(n)
  const from = (peer: string) => (delta: Uint8Array) => applyRemoteDelta(ctx, peer, 'notes', 'automerge', 'e', delta)
  expect(await from(ADMIN)(base.saved)).to.equal('applied')
  const spent = (peer: string) => HISTORY_READS_PER_MINUTE - ctx.historyReads.left(peer, ctx.clock.now())
  const list = async (): Promise<number[]> => [...(A.load<{ l?: number[] }>(await savedDoc(r[SUPPORT]!, 'notes', 'e')).l ?? [])]
  return { r, ctx, base, from, spent, list }
}

/** ORDERS's change on top of `dep`, valid in shape but starting its ops past where it may: refused once read (op-refs). */
export function badAfter(base: ReturnType<typeof oldBase>, dep: Uint8Array, nonce = 1): Uint8Array {
  return A.encodeChange({
    actor: actorOf(ORDERS, nonce),
    author: null,
    seq: 1,
    startOp: base.startOp + 50,
    time: 0,
    message: null,
    deps: [hashOf(dep)],
    ops: [op({ action: 'set', obj: '_root', key: 'z', value: 1, datatype: 'int', pred: [] })],
  })
}

/**
 * ORDERS sends ADMIN's genuine change h (an insert on the old base, with its head) ahead of a
 * change of its own that op-refs refuses, up to 50 times or until ADMIN's minute is spent (what
 * it was before the refund: review3 HOLE 1). h and its head, and the deltas sent.
 */
export async function replayBehindBad(
  keys: Keyring,
  at: Awaited<ReturnType<typeof oldBaseAtSupport>>,
): Promise<{ h: Uint8Array; hHead: Uint8Array; sent: number }> {
  const { base, from, spent } = at
  const h = insertOnOldBase(base, actorOf(ADMIN, 2), 8)
  const hHead = await headOf(keys, h, ADMIN, 'e')
  const bad = badAfter(base, h)
  const delta = encodeHeaded(concatBytes([h, bad]), [hHead, await headOf(keys, bad, ORDERS, 'e')])
  let sent = 0
  while (sent < 50 && spent(ADMIN) < HISTORY_READS_PER_MINUTE) {
    expect(await from(ORDERS)(delta)).to.equal('invalidDelta')
    sent++
  }
  return { h, hHead, sent }
}
