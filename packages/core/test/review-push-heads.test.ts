// Review of push heads checked once per push, and of the audit of anti-entropy changes (a change
// one head of its author covers is recorded as the author's). Each test names the hole it shows;
// a fixed hole's test passes, an open one is skipped with its description.
import { expect } from 'chai'
import { decodeMessage, encodeSignedPush } from '../src/internal.js'
import type { PolicyDocument, Replica } from '../src/index.js'
import { waitFor } from './helpers.js'
import { ADMIN, feedOf, ORDERS, SUPPORT, trustSuite } from './trust-helpers.js'
import type { State } from './counter-helpers.js'
import { adminAndHeldSupport, NOTES_TOPIC as TOPIC } from './heads-helpers.js'

const POLICY: PolicyDocument = {
  roles: { admin: [ADMIN], orders: [ORDERS], support: [SUPPORT] },
  collections: { notes: { read: ['*'], write: ['admin', 'orders', 'support'] } },
}
const notes = (r: Replica) => r.collection<State>('notes', { backend: 'automerge' })

describe('review: push heads and the audit of anti-entropy changes', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  // HOLE P1 (medium: gossip of any writer delayed to the next anti-entropy round, at will): the
  // heads `k` travel outside the push's signature. A member that gets a signed push first and
  // republishes it with its heads stripped (or garbled, or swapped for an older statement of the
  // same author over the same entities) makes the receiver's deltas wait ('later', counted as
  // duplicates) — and the receiver then stored the push's proof as complete: the genuine copy,
  // heads and all, arriving next, was a "duplicate" and never applied. Fixed: a delta that
  // waits ('later') leaves the push incomplete, as a failed write does; a replay is applied.
  it('HOLE P1 (fixed): a copy of a push with its heads stripped, arriving first, does not make the genuine copy a duplicate', async () => {
    const { hub, admin, holding, support } = await adminAndHeldSupport(keys, replicas, POLICY)
    const evil = hub.createNetwork(ORDERS)
    await evil.start({ onMessage: () => {}, onRequest: async () => new Uint8Array(), onPeerConnected: () => {}, onPeerDisconnected: () => {} })
    evil.subscribe(TOPIC)
    await waitFor(() => support.peers().includes(ORDERS), 'the member is connected')
    notes(support) // subscribes to its topic
    holding.cut()
    await new Promise((r) => setTimeout(r, 100))
    await notes(admin).put('n1', { text: 'by admin' })
    await waitFor(() => holding.held.length === 1, "ADMIN's push held back")
    const body = decodeMessage(holding.held[0]!, 1 << 22).body as { p: Uint8Array; g: Uint8Array; d: Uint8Array[]; k?: unknown }
    expect(body.k, 'the push carries its heads').to.not.equal(undefined)
    const duplicates = () => support.stats().peers[ORDERS]?.deltasDuplicate ?? 0
    await evil.publish(TOPIC, encodeSignedPush({ payload: body.p, signature: body.g, deltas: body.d }))
    await waitFor(() => duplicates() === 1, 'the stripped copy waits')
    expect(await feedOf(support, 'notes')).to.deep.equal([])
    holding.release() // the genuine copy, with its heads
    // (Not get(): a miss there fetches the entity from a peer.) Applied from the push: its proof is the push's.
    await waitFor(
      async () => (await feedOf(support, 'notes')).some((e) => e.author === ADMIN && /^[0-9a-f]{32}$/.test(e.proof ?? '')),
      'the genuine copy is applied',
      5000,
    )
  })
})
