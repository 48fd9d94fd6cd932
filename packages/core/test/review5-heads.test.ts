// Review 5 of signed heads (TRUST W3 and multi-author audit): the signature-keyed statement cache,
// shared in-flight signature checks, the remembered actor owners, heads relayed undecoded when an
// entity goes whole, the hand-framed headed delta, and proofs of several authors' heads.
// "HOLE n" tests failed before their fix; "probe" tests are attacks that held.
import { expect } from 'chai'
import { encode } from 'cborg'
import fc from 'fast-check'
import * as A from '@automerge/automerge'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { encodeHeaded } from '../src/replication/heads.js'
import { authorOf } from '../src/replication/head-judge.js'
import { actorOwnedBy, boundActor } from '../src/trust/actor-binding.js'
import { checkProof } from '../src/trust/feed-proof.js'
import {
  decodeHeadProof,
  encodeHeadList,
  encodeHeadProof,
  encodeLeaf,
  encodeStatement,
  headKey,
  headProofId,
  HeadVerifier,
  MAX_FEED_HEADS,
  signHeads,
  type HeadLeaf,
} from '../src/trust/signed-heads.js'
import { leafHash } from '../src/trust/merkle.js'
import { sha256, toHex } from '../src/hash.js'
import type { ChangeEntry, Replica, Store } from '../src/index.js'
import { waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustMember, trustSuite } from './trust-helpers.js'
import { headOf, headsCluster, LATE, notes } from './heads-helpers.js'
import { ctxOf, forkChange, type State } from './counter-helpers.js'

const storeOf = (r: Replica): Store => (r as unknown as { options: { store: Store } }).options.store
const feedOf = async (r: Replica): Promise<ChangeEntry[]> => {
  const out: ChangeEntry[] = []
  for await (const e of notes(r).changes()) out.push(e)
  return out
}
const NONCE = (n: number): Uint8Array => new Uint8Array(16).fill(n)

describe('review 5: signed heads', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()
  const verifyWith = (peer: string, data: Uint8Array, sig: Uint8Array) => keys.trust(peer, [ADMIN]).verify(peer, data, sig)
  const leafOf = (owner: string, id: string, nonce = 9): HeadLeaf => ({
    id,
    actor: toHex(boundActor(owner, NONCE(nonce))),
    seq: 3,
    hash: toHex(sha256(`change ${id}`)),
  })
  const signAs = (author: string, leaves: HeadLeaf[]) =>
    signHeads({ namespace: 'default', collection: 'notes', author, time: 1 }, leaves, (data) => keys.trust(author, [ADMIN]).sign(data))
  /** A head proof whose statement (one leaf: `leaf`, author `author`) is signed by nobody: it carries `signature` as it is. */
  const forgedHead = (author: string, leaf: HeadLeaf, signature: Uint8Array): Uint8Array => {
    const encoded = encodeLeaf(leaf)
    const statement = encodeStatement({ namespace: 'default', collection: 'notes', author, time: 1, root: leafHash(encoded), count: 1 })
    return encodeHeadProof({ statement, signature, leaf: encoded, index: 0, path: [] })
  }
  const inFlight = (v: HeadVerifier): number => (v as unknown as { checking: Map<string, unknown> }).checking.size

  describe('the statement cache and shared signature checks', () => {
    it('probe: a verified signature beside other statement bytes (another author, another leaf, another root) is refused, and the genuine statement still verifies from the cache', async () => {
      let calls = 0
      const v = new HeadVerifier('default', (peer, data, sig) => (calls++, Promise.resolve(verifyWith(peer, data, sig))))
      const { proofs, signature } = await signAs(ADMIN, [leafOf(ADMIN, 'n1')])
      expect(await v.check(proofs[0]!, { collection: 'notes', id: 'n1' })).to.not.have.property('refused')
      expect(calls).to.equal(1)
      for (const [author, leaf] of [
        [ADMIN, leafOf(ADMIN, 'n1', 4)], // another actor of the same author, the same entity
        [ADMIN, leafOf(ADMIN, 'n2')], // another entity
        [ORDERS, leafOf(ORDERS, 'n1')], // the statement re-authored for another member
      ] as const) {
        const checked = await v.check(forgedHead(author, leaf, signature), { collection: 'notes', id: leaf.id })
        expect(checked, `${author} ${leaf.id}`)
          .to.have.property('refused')
          .that.matches(/does not verify/)
      }
      expect(calls, 'each forgery verified on its own').to.equal(4)
      expect(await v.check(proofs[0]!, { collection: 'notes', id: 'n1' })).to.not.have.property('refused')
      expect(calls, 'the genuine one still remembered').to.equal(4)
      expect(inFlight(v)).to.equal(0)
    })

    it("probe: checked at once, a good head and another peer's copy of its statement with a bad signature each get their own verdict; a verify that throws refuses only its own; nothing stays in flight", async () => {
      let release!: () => void
      const gate = new Promise<void>((resolve) => (release = resolve))
      let calls = 0
      let throwOnce = true
      // The signature whose verify throws: the genuine one with its first byte flipped (a fixed
      // byte matched the genuine signature one time in 256, and the probe then failed).
      let throwingFirst = -1
      const v = new HeadVerifier('default', async (peer, data, sig) => {
        calls++
        await gate
        if (sig[0] === throwingFirst && throwOnce) {
          throwOnce = false
          throw new Error('key store down')
        }
        return verifyWith(peer, data, sig)
      })
      const { proofs, signature } = await signAs(ADMIN, [leafOf(ADMIN, 'n1')])
      const proof = decodeHeadProof(proofs[0]!)
      const badSig = Uint8Array.from(signature)
      badSig[5]! ^= 1
      const bad = encodeHeadProof({ ...proof, signature: badSig })
      throwingFirst = signature[0]! ^ 0xff
      const throwing = encodeHeadProof({ ...proof, signature: Uint8Array.from(signature, (b, i) => (i === 0 ? throwingFirst : b)) })
      const where = { collection: 'notes', id: 'n1' }
      const all = Promise.all([v.check(bad, where), v.check(proofs[0]!, where), v.check(bad, where), v.check(proofs[0]!, where), v.check(throwing, where)])
      expect(inFlight(v)).to.equal(3)
      release()
      const [b1, g1, b2, g2, t] = await all
      expect([b1, b2, t].every((h) => 'refused' in h)).to.equal(true)
      expect([g1, g2].every((h) => !('refused' in h))).to.equal(true)
      expect(calls, 'one verify per (signature, statement)').to.equal(3)
      expect(inFlight(v)).to.equal(0)
      // The bad signature was not remembered as good, nor the good one as bad.
      expect(await v.check(bad, where)).to.have.property('refused')
      expect(await v.check(proofs[0]!, where)).to.not.have.property('refused')
    })

    it("probe: a forger's failures are charged to it alone: its bad heads checked alongside an honest peer's good ones rate-limit the forger, never the honest peer", async () => {
      const { r } = await headsCluster(keys, replicas, [ADMIN, SUPPORT])
      const heads = ctxOf(r[SUPPORT]!).heads!
      const { proofs, signature } = await signAs(
        ADMIN,
        Array.from({ length: 12 }, (_, i) => leafOf(ADMIN, `n${i}`)),
      )
      const badSig = Uint8Array.from(signature)
      badSig[1]! ^= 1
      const forged = proofs.map((p) => encodeHeadProof({ ...decodeHeadProof(p), signature: badSig }))
      const results = await Promise.all(
        proofs.flatMap((p, i) => [
          heads.verifyAll([forged[i]!], { collection: 'notes', id: `n${i}` }, ORDERS),
          heads.verifyAll([p], { collection: 'notes', id: `n${i}` }, 'e-honest'),
        ]),
      )
      const forger = results.filter((_, i) => i % 2 === 0)
      const honest = results.filter((_, i) => i % 2 === 1)
      expect(honest.map((h) => [h.refused, h.heads.size])).to.deep.equal(proofs.map(() => [undefined, 1]))
      expect(forger.every((h) => h.refused !== undefined)).to.equal(true)
      expect((await heads.verifyAll([proofs[0]!], { collection: 'notes', id: 'n0' }, ORDERS)).reason, 'the forger is rate-limited now').to.equal('rateLimited')
      expect((await heads.verifyAll([proofs[0]!], { collection: 'notes', id: 'n0' }, 'e-honest')).refused).to.equal(undefined)
    })
  })

  describe('remembered actor owners', () => {
    it('probe: past the memo’s bound and with peer ids holding spaces (its key’s separator), every answer is the one computed afresh', () => {
      const peers = ['p', 'p q', 'p  q', `${'a'.repeat(48)} p`, ADMIN, ORDERS]
      fc.assert(
        fc.property(fc.constantFrom(...peers), fc.constantFrom(...peers), fc.integer({ min: 0, max: 255 }), (owner, asked, n) => {
          const actor = toHex(boundActor(owner, NONCE(n)))
          // The same actor asked of both, in both orders: the remembered answer of one never answers the other.
          return actorOwnedBy(actor, asked) === (owner === asked) && actorOwnedBy(actor, owner) && actorOwnedBy(actor, asked) === (owner === asked)
        }),
        { numRuns: 3000 },
      )
      // Over the bound (4096): cleared and asked again, still right.
      for (let i = 0; i < 5000; i++) expect(actorOwnedBy(toHex(boundActor(`peer ${i}`, NONCE(i & 255))), `peer ${i}`)).to.equal(true)
      expect(actorOwnedBy(toHex(boundActor('peer 1', NONCE(1))), 'peer 2')).to.equal(false)
    })
  })

  describe('headed deltas framed by hand', () => {
    it('probe: byte for byte cborg’s { d, h } at every length boundary of the delta, of each head and of the heads array (0, 23, 24, 255, 256, 65535, 65536)', () => {
      const edges = [0, 1, 23, 24, 255, 256, 65_535, 65_536]
      const same = (delta: Uint8Array, heads: Uint8Array[]) =>
        Buffer.from(encodeHeaded(delta, heads)).equals(Buffer.concat([Buffer.from('CVH\x01', 'latin1'), encode({ d: delta, h: heads })]))
      for (const n of edges) {
        expect(same(new Uint8Array(n).fill(1), [new Uint8Array(n).fill(2)]), `lengths ${n}`).to.equal(true)
        expect(
          same(
            new Uint8Array([0x85]),
            Array.from({ length: n }, (_, i) => new Uint8Array(i % 3)),
          ),
          `${n} heads`,
        ).to.equal(true)
      }
      // A delta that is a view into a larger buffer (as stores hand them out): only the view is framed.
      const big = new Uint8Array(300).map((_, i) => i & 255)
      expect(same(big.subarray(17, 17 + 256), [big.subarray(3, 30)])).to.equal(true)
    })
  })

  describe('heads relayed as stored when an entity goes whole', () => {
    it('HOLE 1: an undecodable head record on an honest relay (a store without checksums, a record of another format) was relayed as it was: the late joiner counted the relay a forger (badSignature) and, after ten, refused all its heads for the minute — its next write too', async () => {
      const { hub, r } = await headsCluster(keys, replicas, [ADMIN, SUPPORT])
      const damaged = Array.from({ length: 12 }, (_, i) => `d${String(i).padStart(2, '0')}`)
      for (const id of [...damaged, 'z-good']) await notes(r[ADMIN]!).put(id, { text: id })
      await waitFor(
        async () => (await notes(r[SUPPORT]!).get('z-good')) !== undefined && (await notes(r[SUPPORT]!).get('d11')) !== undefined,
        'SUPPORT has all',
      )
      await waitFor(async () => (await ctxOf(r[SUPPORT]!).heads!.stored('notes', 'z-good')).size === 1, 'heads stored')
      await r[ADMIN]!.close()
      // SUPPORT's store hands out garbage for the damaged entities' heads (no checksum caught it).
      const store = storeOf(r[SUPPORT]!)
      // Most hold garbage; two hold another entity's genuine head (a record under the wrong key).
      const other = [...(await ctxOf(r[SUPPORT]!).heads!.stored('notes', 'z-good')).values()][0]
      for (const [i, id] of damaged.entries()) {
        const [actor] = [...(await ctxOf(r[SUPPORT]!).heads!.stored('notes', id)).keys()]
        const bytes = i < 2 ? other!.record : new Uint8Array([0xa1, 0x61, 0x73, 0x00])
        await store.write([{ type: 'meta', key: headKey('notes', id, actor!), bytes }])
      }
      const late = await trustMember(keys, replicas, hub, LATE)
      await waitFor(() => late.policy.get() !== undefined, 'LATE adopts')
      for (let i = 0; i < 2; i++) await late.sync()
      expect((await notes(late).get('z-good'))?.text, 'the good entity arrives').to.equal('z-good')
      for (const id of damaged) expect(await notes(late).get(id), id).to.equal(undefined) // no head of ADMIN's: not taken
      // The relay writes on: its own signed write reaches LATE (gossip, or the next round).
      await notes(r[SUPPORT]!).put('y-later', { text: 'by support' })
      await waitFor(async () => (await notes(late).get('y-later')) !== undefined || (await late.sync(), false), 'the relay’s next write arrives', 3000)
      const dropped: Record<string, number> = late.stats().peers[SUPPORT]?.dropped ?? {}
      expect(dropped.badSignature ?? 0, 'an honest relay is not a forger').to.equal(0)
      expect(dropped.rateLimited ?? 0).to.equal(0)
    })
  })

  describe('audit: proofs of several authors’ heads', () => {
    it('probe: authorOf names at most 5 actors, in a proof id the feed store holds (≤ 255 bytes); 6, or an unbound actor, and the sender vouches', () => {
      const head = (owner: string, n: number) => ({ key: '', record: new Uint8Array(0), author: owner, actor: toHex(boundActor(owner, NONCE(n))), hash: '' })
      const owners = ['z'.repeat(256), ADMIN, ORDERS, SUPPORT, LATE, 'f-sixth']
      const five = owners.slice(0, MAX_FEED_HEADS).map((o, i) => head(o, i))
      const by = authorOf({ heads: five, unbound: false })!
      expect(by.author).to.equal(undefined)
      expect(Buffer.byteLength(by.proof)).to.be.at.most(255)
      expect(by.proof).to.equal(headProofId(five.map((h) => h.actor).reverse())) // sorted, whatever the order
      expect(authorOf({ heads: owners.map((o, i) => head(o, i)), unbound: false })).to.equal(undefined)
      expect(authorOf({ heads: five.slice(0, 2), unbound: true })).to.equal(undefined)
      // One author under several actors (a replica across restarts): the author is the origin.
      expect(authorOf({ heads: [head(ADMIN, 1), head(ADMIN, 2), head(ADMIN, 3)], unbound: false })).to.have.property('author', ADMIN)
    })

    it('probe: checkProof refuses a proof id that lies — duplicates naming one author as a relay’s, a list for one actor, a list of 6, an actor with no head, heads out of the id’s order — and never throws', async () => {
      const [a1, a2] = [leafOf(ADMIN, 'n1', 1), leafOf(ORDERS, 'n1', 2)]
      const h1 = (await signAs(ADMIN, [a1])).proofs[0]!
      const h2 = (await signAs(ORDERS, [a2])).proofs[0]!
      const where = { namespace: 'default', collection: 'notes', id: 'n1', author: SUPPORT }
      expect(await checkProof(encodeHeadList([h1, h2]), `h:${a1.actor},${a2.actor}`, where, verifyWith)).to.deep.include({
        ok: true,
        authors: [ADMIN, ORDERS].sort(),
      })
      const cases: [string, Uint8Array | undefined, string][] = [
        [`h:${a1.actor},${a1.actor}`, encodeHeadList([h1, h1]), 'duplicates: one author, not the relay'],
        [`h:${a1.actor}`, encodeHeadList([h1]), 'a list where one head goes'],
        [`h:${Array(6).fill(a1.actor).join(',')}`, encodeHeadList(Array(6).fill(h1)), 'six'],
        [`h:${a1.actor},${toHex(boundActor(LATE, NONCE(7)))}`, encodeHeadList([h1, undefined]), 'an actor with no head'],
        [`h:${a2.actor},${a1.actor}`, encodeHeadList([h1, h2]), 'heads out of order'],
        [`h:${a1.actor},${a2.actor}`, encodeHeadList([h1, h2, h2]), 'more heads than actors'],
        [`h:${a1.actor},`, encodeHeadList([h1, undefined]), 'an empty actor'],
        [`h:${a1.actor},${a2.actor}`, new Uint8Array([0x9f, 0x40, 0x40, 0xff]), 'an indefinite list'],
        [`h:${a1.actor},${a2.actor}`, undefined, 'nothing stored'],
      ]
      for (const [id, record, what] of cases) expect(await checkProof(record, id, where, verifyWith), what).to.include({ ok: false })
    })

    it('probe: a hostile relay that slips its own changes into an author’s — under its bound actor or an unbound one — gets them recorded as its own (relay origin; both authors’ heads, or none), never as the author’s', async () => {
      const { r } = await headsCluster(keys, replicas, [ADMIN, ORDERS, SUPPORT])
      for (const [id, own] of [
        ['n2', toHex(boundActor(ORDERS, NONCE(5)))],
        ['n3', toHex(NONCE(6))],
      ] as const) {
        const byAdmin = A.change(A.init<State>({ actor: toHex(boundActor(ADMIN, NONCE(id === 'n2' ? 8 : 9))) }), { time: 0 }, (x) => void (x.text = 'by admin'))
        const adminChange = A.getLastLocalChange(byAdmin)!
        const mine = forkChange(A.save(byAdmin), own, (x) => void (x.by = 'orders'))
        const heads = [await headOf(keys, adminChange, ADMIN, id)]
        if (id === 'n2') heads.push(await headOf(keys, mine, ORDERS, id))
        // The whole entity, as a catch-up sends it: ADMIN's change and ORDERS' own, from ORDERS.
        const delta = A.save(A.applyChanges(A.init<State>(), [adminChange, mine])[0])
        expect(await applyRemoteDelta(ctxOf(r[SUPPORT]!), ORDERS, 'notes', 'automerge', id, encodeHeaded(delta, heads)), id).to.equal('applied')
      }
      const feed = await feedOf(r[SUPPORT]!)
      expect(feed.map((e) => [e.id, e.author, e.proof?.split(',').length])).to.deep.equal([
        ['n2', ORDERS, 2],
        ['n3', ORDERS, undefined],
      ])
      const n2 = feed[0]!
      const proof = await r[SUPPORT]!.proofOf('notes', n2.proof!, 'n2')
      expect(await checkProof(proof, n2.proof!, { collection: 'notes', id: 'n2', author: ORDERS }, verifyWith)).to.deep.include({
        ok: true,
        authors: [ADMIN, ORDERS].sort(),
      })
      // What the proof cannot say: who relayed it (nothing signs that) — a rewritten origin of a
      // several-author entry still verifies; audit names it as the relay, beside the authors.
      expect(await checkProof(proof, n2.proof!, { collection: 'notes', id: 'n2', author: SUPPORT }, verifyWith)).to.deep.include({ ok: true, author: SUPPORT })
    })
  })
})
