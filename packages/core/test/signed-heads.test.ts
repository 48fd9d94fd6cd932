// Signed heads (issue #13, item 3): every change of an actor bound to a peer must come with that
// peer's signed head, whoever relays it. The pieces (Merkle proofs, actor binding, head proofs,
// headed deltas) and what they do on loopback replicas: a relay keeps the author, a forger's
// head for another replica's actor is refused, a crash between a write and its head is repaired.
import { expect } from 'chai'
import { encode } from 'cborg'
import fc from 'fast-check'
import * as A from '@automerge/automerge'
import { applyRemoteDelta } from '../src/replication/apply.js'
import { decodeHeaded, encodeHeaded } from '../src/replication/heads.js'
import { actorOwnedBy, boundActor } from '../src/trust/actor-binding.js'
import { leafHash, merkleTree, verifyInclusion } from '../src/trust/merkle.js'
import {
  decodeHeadList,
  encodeHeadProof,
  encodeHeadList,
  headKey,
  headPrefixOf,
  headProofId,
  HeadVerifier,
  signHeads,
  unsignedKey,
  type HeadLeaf,
} from '../src/trust/signed-heads.js'
import { memoryLevelStore } from '@convergent/level'
import { StoreCorruptError } from '../src/index.js'
import { checkProof } from '../src/trust/feed-proof.js'
import { sha256, toHex } from '../src/hash.js'
import type { ChangeEntry } from '../src/index.js'
import { memoryReplica, storeWith, tempDir, waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustMember, trustSuite } from './trust-helpers.js'
import { adminAheadByTwo, headOf, headsCluster, LATE, notes, NOTES_POLICY } from './heads-helpers.js'
import { ctxOf, diskMember, forkChange, savedDoc, type State } from './counter-helpers.js'
import { LoopbackHub } from '../src/index.js'

describe('signed heads: the pieces', () => {
  it('a Merkle inclusion proof (RFC 9162) verifies for every leaf of trees of 1 to 70 leaves, and not for another leaf, index or root (the size is signed with the root)', () => {
    for (let n = 1; n <= 70; n++) {
      const hashes = Array.from({ length: n }, (_, i) => leafHash(new TextEncoder().encode(`leaf ${i}`)))
      const { root, paths } = merkleTree(hashes)
      for (let i = 0; i < n; i++) {
        expect(verifyInclusion(hashes[i]!, i, n, paths[i]!, root), `leaf ${i} of ${n}`).to.equal(true)
        expect(verifyInclusion(hashes[(i + 1) % n]!, i, n, paths[i]!, root)).to.equal(n === 1)
        if (n > 1) expect(verifyInclusion(hashes[i]!, (i + 1) % n, n, paths[i]!, root)).to.equal(false)
        expect(verifyInclusion(hashes[i]!, i, n, paths[i]!, sha256('another root'))).to.equal(false)
      }
    }
  })

  it('a flipped bit in any hash of a proof path never verifies (fast-check)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 200 }), fc.nat(), fc.nat(), fc.integer({ min: 1, max: 255 }), (n, pick, at, flip) => {
        const hashes = Array.from({ length: n }, (_, i) => leafHash(new Uint8Array([i & 255, i >> 8])))
        const { root, paths } = merkleTree(hashes)
        const i = pick % n
        const path = paths[i]!.map((h) => Uint8Array.from(h))
        const j = at % path.length
        path[j]![at % 32]! ^= flip
        return !verifyInclusion(hashes[i]!, i, n, path, root)
      }),
      { numRuns: 300 },
    )
  })

  it('a bound actor names its peer: another peer id, another length or non-hex does not own it', () => {
    const actor = toHex(boundActor(ADMIN, new Uint8Array(16).fill(3)))
    expect(actor).to.have.length(48)
    expect(actorOwnedBy(actor, ADMIN)).to.equal(true)
    expect(actorOwnedBy(actor, ORDERS)).to.equal(false)
    expect(actorOwnedBy(actor.slice(0, 32), ADMIN)).to.equal(false)
    expect(actorOwnedBy(actor.toUpperCase(), ADMIN)).to.equal(false)
  })

  describe('head proofs', () => {
    const { keys } = trustSuite()
    const leafOf = (owner: string, id = 'n1'): HeadLeaf => ({
      id,
      actor: toHex(boundActor(owner, new Uint8Array(16).fill(9))),
      seq: 3,
      hash: toHex(sha256('change')),
    })
    const sign = (signer: string, leaves: HeadLeaf[], collection = 'notes', namespace = 'default') =>
      signHeads({ namespace, collection, author: signer, time: 1 }, leaves, (data) => keys.trust(signer, [ADMIN]).sign(data))
    const verifier = () => new HeadVerifier('default', (peer, data, sig) => keys.trust(peer, [ADMIN]).verify(peer, data, sig))

    it('its owner’s head verifies; one for another namespace, collection or entity, or for an actor its signer does not own, does not', async () => {
      const v = verifier()
      const [own] = (await sign(ADMIN, [leafOf(ADMIN)])).proofs
      expect(await v.check(own!, { collection: 'notes', id: 'n1' })).to.include({ author: ADMIN, seq: 3 })
      expect(await v.check(own!, { collection: 'orders', id: 'n1' })).to.have.property('refused')
      expect(await v.check(own!, { collection: 'notes', id: 'n2' })).to.have.property('refused')
      const [elsewhere] = (await sign(ADMIN, [leafOf(ADMIN)], 'notes', 'other')).proofs
      expect(await v.check(elsewhere!, { collection: 'notes', id: 'n1' })).to.have.property('refused')
      // ORDERS signs a head of ADMIN's actor: a valid signature, but not the actor's owner.
      const [forged] = (await sign(ORDERS, [leafOf(ADMIN)])).proofs
      expect(await v.check(forged!, { collection: 'notes', id: 'n1' }))
        .to.have.property('refused')
        .that.matches(/does not own it/)
    })

    it('heads of one statement checked at once (a catch-up applies several entities together) verify its signature once; a bad signature refuses them all, each counted', async () => {
      let calls = 0
      const counting = (tamper: boolean) =>
        new HeadVerifier('default', (peer, data, sig) => {
          calls++
          return keys.trust(peer, [ADMIN]).verify(peer, data, tamper ? sig.map((b, i) => (i === 0 ? b ^ 1 : b)) : sig)
        })
      const leaves = Array.from({ length: 9 }, (_, i) => leafOf(ADMIN, `n${i}`))
      const { proofs } = await sign(ADMIN, leaves)
      const all = (v: HeadVerifier, budget: () => boolean = () => true) =>
        Promise.all(proofs.map((p, i) => v.check(p, { collection: 'notes', id: `n${i}` }, budget)))
      const good = await all(counting(false))
      expect(good.every((h) => !('refused' in h))).to.equal(true)
      expect(calls).to.equal(1)
      calls = 0
      let asked = 0
      const bad = await all(counting(true), () => (asked++, true))
      expect(bad.every((h) => 'refused' in h && /does not verify/.test(h.refused))).to.equal(true)
      expect([calls, asked], 'one signature check, one budget unit').to.deep.equal([1, 1])
    })

    it('every leaf of a statement proves itself alone; a flipped byte anywhere in a proof is refused, never thrown', async () => {
      const v = verifier()
      const leaves = Array.from({ length: 9 }, (_, i) => leafOf(ADMIN, `n${i}`))
      const { proofs } = await sign(ADMIN, leaves)
      for (let i = 0; i < leaves.length; i++) expect(await v.check(proofs[i]!, { collection: 'notes', id: `n${i}` })).to.include({ id: `n${i}` })
      const proof = proofs[4]!
      for (let at = 0; at < proof.byteLength; at += 7) {
        const bad = Uint8Array.from(proof)
        bad[at]! ^= 0x55
        const checked = await v.check(bad, { collection: 'notes', id: 'n4' })
        expect('refused' in checked || (checked.id === 'n4' && checked.author === ADMIN), `byte ${at}`).to.equal(true)
      }
      expect(await v.check(new Uint8Array([1, 2, 3]), { collection: 'notes', id: 'n4' })).to.have.property('refused')
    })

    it('a push’s heads are checked once for the whole push: garbled ones (another root, entry, count or owner) are refused, never thrown', async () => {
      const hub = new LoopbackHub()
      const r = await memoryReplica({ network: hub.createNetwork(SUPPORT), trust: keys.trust(SUPPORT, [ADMIN]), syncIntervalMs: 0 })
      try {
        const heads = ctxOf(r).heads!
        const ids = ['n0', 'n1', 'n2']
        const signed = await sign(
          ADMIN,
          ids.map((id) => leafOf(ADMIN, id)),
        )
        const push = { statement: signed.statement, signature: signed.signature, leaves: signed.leaves as (Uint8Array | null)[] }
        const ok = await heads.verifyPush('notes', push, ids, ORDERS)
        expect(Array.isArray(ok) && ok.every((m) => m?.size === 1)).to.equal(true)
        const refusedFor = async (p: typeof push, forIds = ids) => {
          const got = await heads.verifyPush('notes', p, forIds, ORDERS)
          return Array.isArray(got) ? 'accepted' : got.reason
        }
        expect(await refusedFor({ ...push, leaves: [push.leaves[1]!, push.leaves[0]!, push.leaves[2]!] })).to.equal('badSignature') // another root
        expect(await refusedFor(push, ['n0', 'n9', 'n2'])).to.equal('badSignature') // a leaf for another entry
        expect(await refusedFor({ ...push, leaves: push.leaves.slice(0, 2) }, ids.slice(0, 2))).to.equal('badSignature') // another count
        expect(await refusedFor({ ...push, leaves: [push.leaves[0]!, null, push.leaves[2]!] })).to.equal('badSignature') // a leaf left out
        expect(await refusedFor({ ...push, statement: new Uint8Array([1, 2, 3]) })).to.equal('badSignature')
        const forged = await sign(
          ORDERS,
          ids.map((id) => leafOf(ADMIN, id)),
        )
        expect(await refusedFor({ statement: forged.statement, signature: forged.signature, leaves: forged.leaves })).to.equal('badSignature') // not the owner
      } finally {
        await r.close()
      }
    })

    it('a headed delta is framed byte for byte as cborg encodes { d, h }, at every length boundary (fast-check)', () => {
      const sizes = fc.constantFrom(0, 1, 23, 24, 255, 256, 65_535, 65_536, 70_000)
      fc.assert(
        fc.property(sizes, fc.array(fc.oneof(sizes, fc.nat(600)), { maxLength: 30 }), fc.nat(24), (d, hs, many) => {
          const delta = new Uint8Array(d).fill(7)
          const heads = [...hs, ...Array.from({ length: many === 24 ? 300 : 0 }, () => 3)].map((n, i) => new Uint8Array(n).fill(i))
          const expected = Buffer.concat([Buffer.from('CVH\x01', 'latin1'), encode({ d: delta, h: heads })])
          return Buffer.from(encodeHeaded(delta, heads)).equals(expected)
        }),
        { numRuns: 200 },
      )
    })

    it('a head proof is framed byte for byte as cborg encodes { s, g, l, i, p }, at every length boundary (fast-check)', () => {
      const sizes = fc.constantFrom(0, 1, 23, 24, 255, 256, 65_535, 65_536)
      const index = fc.oneof(fc.constantFrom(0, 23, 24, 255, 256, 65_535, 65_536, 0xffffffff), fc.nat())
      fc.assert(
        fc.property(sizes, sizes, fc.oneof(sizes, fc.nat(300)), index, fc.array(fc.constant(32), { maxLength: 30 }), (s, g, l, i, p) => {
          const proof = {
            statement: new Uint8Array(s).fill(1),
            signature: new Uint8Array(g).fill(2),
            leaf: new Uint8Array(l).fill(3),
            index: i,
            path: p.map((n, k) => new Uint8Array(n).fill(k)),
          }
          return Buffer.from(encodeHeadProof(proof)).equals(encode({ s: proof.statement, g: proof.signature, l: proof.leaf, i: proof.index, p: proof.path }))
        }),
        { numRuns: 300 },
      )
    })

    it('a headed delta decodes to its delta and heads; garbage, truncation and nesting are refused', () => {
      const headed = encodeHeaded(new Uint8Array([0x85, 0x6f, 0x4a, 0x83, 1]), [new Uint8Array([1]), new Uint8Array([2])])
      expect(decodeHeaded(headed).heads).to.have.length(2)
      expect(() => decodeHeaded(headed.subarray(0, headed.byteLength - 1))).to.throw(/undecodable|not/)
      expect(() => decodeHeaded(encodeHeaded(headed, []))).to.throw(/inside a headed delta/)
      expect(() => decodeHeaded(new Uint8Array([0x43, 0x56, 0x48, 0x01, 0xff]))).to.throw()
    })
  })
})

describe('signed heads on replicas (loopback)', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  const cluster = (ids: string[]) => headsCluster(keys, replicas, ids)

  it('a relayed write keeps its author: a late joiner that reaches only a relay takes the writer’s changes, vouched by the writer’s own signed head, and its feed names the writer with the head as proof', async () => {
    const { hub, r } = await cluster([ADMIN, SUPPORT])
    await notes(r[ADMIN]!).put('n1', { text: 'by admin' })
    await notes(r[ADMIN]!).put('n1', { text: 'by admin, again' })
    await waitFor(async () => (await notes(r[SUPPORT]!).get('n1'))?.text === 'by admin, again', 'SUPPORT has it')
    await r[ADMIN]!.close() // the author is gone; only the relay is left
    const late = await trustMember(keys, replicas, hub, LATE)
    await waitFor(() => late.policy.get() !== undefined, 'LATE adopts')
    await late.sync()
    expect((await notes(late).get('n1'))?.text).to.equal('by admin, again')
    // What LATE keeps to relay further: ADMIN's head of its actor, signed by ADMIN. Stored in
    // the entity's write, which may still be on its way to the store when get() answers from memory.
    await waitFor(async () => (await ctxOf(late).heads!.stored('notes', 'n1')).size > 0, 'LATE stored the head')
    const stored = await ctxOf(late).heads!.stored('notes', 'n1')
    expect(stored.size).to.equal(1)
    const [actor] = [...stored.keys()]
    expect(actorOwnedBy(actor!, ADMIN)).to.equal(true)
    expect(stored.get(actor!)!.leaf.seq).to.equal(2)
    // Its change feed names ADMIN as the author, with ADMIN's head as the proof, and the proof re-verifies offline.
    const entries: ChangeEntry[] = []
    for await (const e of notes(late).changes()) entries.push(e)
    expect(entries.map((e) => [e.author, e.proof])).to.deep.equal([[ADMIN, headProofId([actor!])]])
    const verify = (peer: string, data: Uint8Array, sig: Uint8Array) => keys.trust(peer, [ADMIN]).verify(peer, data, sig)
    const proof = await late.proofOf('notes', entries[0]!.proof!, 'n1')
    expect(await checkProof(proof, entries[0]!.proof!, { namespace: 'default', collection: 'notes', id: 'n1', author: ADMIN }, verify)).to.include({
      ok: true,
      author: ADMIN,
    })
    expect(await checkProof(proof, entries[0]!.proof!, { collection: 'notes', id: 'n1', author: SUPPORT }, verify)).to.include({ ok: false })
    expect(await checkProof(proof, entries[0]!.proof!, { collection: 'notes', id: 'n2', author: ADMIN }, verify)).to.include({ ok: false })
  })

  it('an entity two writers changed reaches a late joiner whole through a relay: its feed entry names both heads (origin: the relay), the proof re-verifies offline with both authors, and a damaged or swapped head is flagged', async () => {
    const { hub, r } = await cluster([ADMIN, ORDERS, SUPPORT])
    await notes(r[ADMIN]!).put('n1', { text: 'by admin' })
    await waitFor(async () => (await notes(r[ORDERS]!).get('n1')) !== undefined, 'ORDERS has it')
    await notes(r[ORDERS]!).update('n1', (d) => void (d.by = 'orders'))
    await waitFor(async () => (await notes(r[SUPPORT]!).get('n1'))?.by === 'orders', 'SUPPORT has both')
    await r[ADMIN]!.close()
    await r[ORDERS]!.close() // both authors gone; only the relay is left
    const late = await trustMember(keys, replicas, hub, LATE)
    await waitFor(() => late.policy.get() !== undefined, 'LATE adopts')
    await late.sync()
    expect(await notes(late).get('n1')).to.deep.equal({ text: 'by admin', by: 'orders' })
    // The relay's own round with LATE may have brought it and still be committing it: its feed entry is waited for.
    let entries: ChangeEntry[] = []
    await waitFor(async () => {
      entries = []
      for await (const e of notes(late).changes()) entries.push(e)
      return entries.length > 0
    }, 'the feed entry')
    expect(entries).to.have.length(1)
    const entry = entries[0]!
    const actors = [...(await ctxOf(late).heads!.stored('notes', 'n1')).keys()]
    expect(actors.map((a) => actorOwnedBy(a, ADMIN) || actorOwnedBy(a, ORDERS))).to.deep.equal([true, true])
    expect([entry.author, entry.proof]).to.deep.equal([SUPPORT, headProofId(actors)])
    const verify = (peer: string, data: Uint8Array, sig: Uint8Array) => keys.trust(peer, [ADMIN]).verify(peer, data, sig)
    const where = { namespace: 'default', collection: 'notes', id: 'n1', author: SUPPORT }
    const proof = (await late.proofOf('notes', entry.proof!, 'n1'))!
    expect(await checkProof(proof, entry.proof!, where, verify)).to.deep.include({ ok: true, authors: [ADMIN, ORDERS].sort() })
    // Another entity, another collection: refused.
    expect(await checkProof(proof, entry.proof!, { ...where, id: 'n2' }, verify)).to.include({ ok: false })
    // A byte flipped in the second head, the heads swapped, one dropped, or garbage: refused, never thrown.
    const [first, second] = decodeHeadList(proof)
    const flipped = Uint8Array.from(second!)
    flipped[flipped.byteLength - 40]! ^= 1
    for (const bad of [encodeHeadList([first, flipped]), encodeHeadList([second, first]), encodeHeadList([first]), new Uint8Array([0xff, 1])]) {
      expect(await checkProof(bad, entry.proof!, where, verify)).to.include({ ok: false })
    }
    // A proof id naming one of the two: the feed would credit one author with the other's changes — its head verifies, but the origin is not its author.
    const one = headProofId([actors.find((a) => actorOwnedBy(a, ORDERS))!])
    expect(await checkProof(await late.proofOf('notes', one, 'n1'), one, where, verify)).to.include({ ok: false })
  })

  it('a writer that signs its own head for another replica’s actor gets its forgery refused (badSignature), and nothing changes', async () => {
    const { r } = await cluster([ADMIN, ORDERS, SUPPORT])
    await notes(r[ADMIN]!).put('n1', { text: 'one' })
    await waitFor(async () => (await notes(r[SUPPORT]!).get('n1')) !== undefined, 'n1 at SUPPORT')
    const base = await savedDoc(r[ADMIN]!, 'notes', 'n1')
    const last = A.decodeChange(A.getAllChanges(A.load<State>(base)).at(-1)!)
    const forged = forkChange(base, last.actor, (d) => void (d.text = 'forged'))
    const ctx = ctxOf(r[SUPPORT]!)
    expect(await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', encodeHeaded(forged, [await headOf(keys, forged, ORDERS)]))).to.equal('badSignature')
    // Headed but without a head for the actor: refused as forbidden (a headed sender sends every head).
    expect(await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', encodeHeaded(forged, []))).to.equal('forbidden')
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.equal('one')
    expect(r[SUPPORT]!.stats().peers[ORDERS]?.dropped).to.include({ badSignature: 1, forbidden: 1 })
  })

  it('a forger that holds a change under another replica’s actor cannot pass it on by anti-entropy: honest replicas keep the genuine history and converge', async () => {
    const { r } = await cluster([ADMIN, ORDERS, SUPPORT])
    await notes(r[ADMIN]!).put('n1', { text: 'one' })
    await waitFor(async () => (await notes(r[SUPPORT]!).get('n1')) !== undefined && (await notes(r[ORDERS]!).get('n1')) !== undefined, 'n1 everywhere')
    const base = await savedDoc(r[ADMIN]!, 'notes', 'n1')
    const last = A.decodeChange(A.getAllChanges(A.load<State>(base)).at(-1)!)
    const forged = forkChange(base, last.actor, (d) => void (d.text = 'forged'))
    // ORDERS' own replica takes the forgery (its checks switched off: it runs the forger's code) …
    const forger = ctxOf(r[ORDERS]!) as { heads: unknown }
    const heads = forger.heads
    forger.heads = undefined
    expect(await applyRemoteDelta(ctxOf(r[ORDERS]!), ADMIN, 'notes', 'automerge', 'n1', forged)).to.equal('applied')
    forger.heads = heads
    // … and serves it by anti-entropy, as relays do; then ADMIN writes its genuine next changes.
    for (const n of [SUPPORT, ADMIN]) await r[n]!.sync()
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.equal('one')
    await notes(r[ADMIN]!).put('n1', { text: 'two' })
    await notes(r[ADMIN]!).put('n1', { text: 'three' })
    for (let i = 0; i < 3; i++) for (const n of [SUPPORT, ADMIN]) await r[n]!.sync()
    expect([(await notes(r[ADMIN]!).get('n1'))?.text, (await notes(r[SUPPORT]!).get('n1'))?.text]).to.deep.equal(['three', 'three'])
  })

  it('a push that overtook the one it depends on waits here, vouched by its head, and applies when that one comes; a forged one never waits', async () => {
    const { hub, r } = await cluster([ADMIN, ORDERS, SUPPORT])
    const { c1, c2 } = await adminAheadByTwo(hub, r)
    const headed = async (change: Uint8Array) => encodeHeaded(change, [await headOf(keys, change)])
    const ctx = ctxOf(r[SUPPORT]!)
    // A forgery of the next change under ADMIN's actor, with ADMIN's genuine head of c2: its hash is not the head's.
    const base = await savedDoc(r[ADMIN]!, 'notes', 'n1')
    const [upToC1] = A.applyChanges(A.init<State>(), A.getAllChanges(A.load<State>(base)).slice(0, -1))
    const forgedC2 = forkChange(A.save(upToC1), A.decodeChange(c2).actor, (d) => void (d.text = 'forged'))
    expect(await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', encodeHeaded(forgedC2, [await headOf(keys, c2)]))).to.equal('later')
    // The genuine c2 first: it waits (nothing shows yet) …
    expect(await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', await headed(c2))).to.equal('applied')
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.equal('one')
    // … and c1 brings both, with no anti-entropy round.
    expect(await applyRemoteDelta(ctx, ORDERS, 'notes', 'automerge', 'n1', await headed(c1))).to.equal('applied')
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.equal('three')
  })

  it('changes waiting here are judged with their stored heads when a whole document brings what they wait for', async () => {
    const { hub, r } = await cluster([ADMIN, SUPPORT])
    const { all, c1, c2 } = await adminAheadByTwo(hub, r)
    const ctx = ctxOf(r[SUPPORT]!)
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', encodeHeaded(c2, [await headOf(keys, c2)]))).to.equal('applied')
    // A relay that holds up to c1 sends the entity whole, with c1's head: c1 applies, and releases
    // c2, which its head (stored here when c2 came) still vouches for.
    const [upToC1] = A.applyChanges(A.init<State>(), all.slice(0, -1))
    expect(await applyRemoteDelta(ctx, ADMIN, 'notes', 'automerge', 'n1', encodeHeaded(A.save(upToC1), [await headOf(keys, c1)]))).to.equal('applied')
    expect((await notes(r[SUPPORT]!).get('n1'))?.text).to.equal('three')
  })

  it('markers and heads from a damaged disk: garbage markers are deleted, a record that fails its check stops the scan with a warning, an undecodable head vouches for nothing — nothing throws', async () => {
    const inner = memoryLevelStore()
    let damaged = false
    const warnings: string[] = []
    const store = storeWith(inner, {
      metas(prefix: string) {
        return (async function* (): AsyncGenerator<[string, Uint8Array]> {
          for await (const entry of inner.metas(prefix)) {
            if (damaged && entry[0].startsWith('unsigned/z')) throw new StoreCorruptError({ keyspace: 'meta', key: entry[0] })
            yield entry
          }
        })()
      },
    })
    const hub = new LoopbackHub()
    const admin = await memoryReplica({
      store,
      network: hub.createNetwork(ADMIN),
      trust: keys.trust(ADMIN, [ADMIN]),
      logger: { warn: (m: string) => warnings.push(m), error: (m: string) => warnings.push(m) },
    })
    replicas.push(admin)
    await admin.policy.set(NOTES_POLICY)
    await notes(admin).put('n1', { text: 'x' })
    const heads = ctxOf(admin).heads!
    await waitFor(async () => (await heads.stored('notes', 'n1')).size === 1, 'the head stored')
    const [actor] = [...(await heads.stored('notes', 'n1')).keys()]
    // Garbage markers (no collection, no seq, a collection that does not exist), then one that fails its check.
    const garbage = ['unsigned/', 'unsigned/no-nul', 'unsigned/ghost\u0000x', 'unsigned/notes\u0000NaN']
    await inner.write([
      ...garbage.map((key) => ({ type: 'meta' as const, key, bytes: new Uint8Array([0xff, 0xfe]) })),
      { type: 'meta', key: 'unsigned/z', bytes: new Uint8Array([1]) },
    ])
    damaged = true
    expect(await heads.recover(ctxOf(admin).entities.collections)).to.equal(0)
    for (const key of garbage) expect(await inner.getMeta(key), key).to.equal(undefined)
    expect(await inner.getMeta('unsigned/z')).to.not.equal(undefined) // left for the next open
    expect(warnings.some((w) => w.includes('could not read every marker'))).to.equal(true)
    // A head record that does not decode: not relayed, not trusted.
    await inner.write([{ type: 'meta', key: headKey('notes', 'n1', actor!), bytes: new Uint8Array([0xa1, 0x61, 0x73, 0x00]) }])
    expect((await heads.stored('notes', 'n1', [actor!])).size).to.equal(0)
    expect((await heads.storedVerified('notes', 'n1')).size).to.equal(0)
  })

  it('dropCollection deletes the collection’s heads and markers with it', async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const hub = new LoopbackHub()
      const admin = await diskMember(keys, dir, ADMIN, hub)
      await admin.policy.set(NOTES_POLICY)
      await notes(admin).put('n1', { text: 'x' })
      await waitFor(async () => (await ctxOf(admin).heads!.stored('notes', 'n1')).size === 1, 'the head stored')
      await admin.dropCollection('notes')
      await admin.close()
      const { classicLevelStore } = await import('@convergent/level')
      const store = classicLevelStore(dir)
      await store.open()
      const left: string[] = []
      for (const prefix of [headPrefixOf('notes'), unsignedKey('notes', 0).slice(0, -16)]) for await (const [key] of store.metas(prefix)) left.push(key)
      await store.close()
      expect(left).to.deep.equal([])
    } finally {
      await cleanup()
    }
  })

  it('a crash between a write and the signing of its head: the next open signs it, and a late joiner takes the write whole', async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const hub = new LoopbackHub()
      let admin = await diskMember(keys, dir, ADMIN, hub)
      await admin.policy.set(NOTES_POLICY)
      await notes(admin).put('n1', { text: 'before the crash' })
      await admin.close()
      // What the crash would have left: the write and its marker, no head.
      const { classicLevelStore } = await import('@convergent/level')
      const store = classicLevelStore(dir)
      await store.open()
      const heads: string[] = []
      for await (const [key] of store.metas(headPrefixOf('notes'))) heads.push(key)
      expect(heads).to.have.length(1)
      const seq = await store.lastSeq('notes')
      await store.write([
        { type: 'delMeta', key: heads[0]! },
        { type: 'meta', key: unsignedKey('notes', seq), bytes: new TextEncoder().encode('n1') },
      ])
      await store.close()
      admin = await diskMember(keys, dir, ADMIN, hub)
      replicas.push(admin)
      await waitFor(async () => (await ctxOf(admin).heads!.stored('notes', 'n1')).size === 1, 'the head signed again at open')
      const late = await trustMember(keys, replicas, hub, LATE)
      await waitFor(() => late.policy.get() !== undefined, 'LATE adopts')
      await late.sync()
      expect((await notes(late).get('n1'))?.text).to.equal('before the crash')
    } finally {
      await cleanup()
    }
  })
})
