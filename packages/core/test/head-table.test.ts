// Head tables (issue #13, W3): a catch-up batch carries each statement of signed heads once,
// with its leaves and a multiproof, instead of a whole head proof per entity. The pieces —
// multiproofs, packing and unpacking, what a hostile table gets — and a late joiner on loopback.
import { expect } from 'chai'
import fc from 'fast-check'
import { randomBytes } from 'node:crypto'
import { decodeMessage, MessageType } from '../src/replication/messages/envelope.js'
import { decodeHeaded, encodeHeaded, headsFor, isHeaded, withHeads, withHeadsLength } from '../src/replication/heads.js'
import { wholeStateOf } from '../src/replication/durable.js'
import { maxTableLeaves, packHeads, type HeadTable, type OutgoingHead } from '../src/replication/messages/head-table.js'
import {
  decodeDeltasRequest,
  decodeRangeResponse,
  decodeRootsRequest,
  encodeDeltasRequest,
  encodeRangeResponse,
  encodeRootsRequest,
} from '../src/replication/messages/sync.js'
import { leafHash, merkleTree, multiproof, rebuildRoot } from '../src/trust/merkle.js'
import { decodeHeadProof, encodeHeadProof, headKey, HeadVerifier, provenRecords, signHeads, type HeadLeaf } from '../src/trust/signed-heads.js'
import { actorOwnedBy, boundActor } from '../src/trust/actor-binding.js'
import { toHex } from '../src/hash.js'
import { waitFor } from './helpers.js'
import { ADMIN, ORDERS, SUPPORT, trustMember, trustSuite } from './trust-helpers.js'
import { headsCluster, LATE, notes } from './heads-helpers.js'
import { ctxOf } from './counter-helpers.js'

const LIMIT = 4 * 1024 * 1024

async function count(c: { keys(): AsyncGenerator<string> }): Promise<number> {
  let n = 0
  for await (const _ of c.keys()) n++
  return n
}

/** A statement over `n` leaves of entities `${prefix}i`, signed with a fixed fake signature. */
async function statement(n: number, prefix: string, signature = 7): Promise<OutgoingHead[]> {
  const leaves: HeadLeaf[] = Array.from({ length: n }, (_, i) => ({
    id: `${prefix}${i}`,
    actor: toHex(randomBytes(24)),
    seq: 1 + i,
    hash: toHex(randomBytes(32)),
  }))
  const signed = await signHeads({ namespace: 'ns', collection: 'c', author: 'peer', time: 1 }, leaves, async () => new Uint8Array(64).fill(signature))
  return signed.proofs.map((record) => ({ record, proof: decodeHeadProof(record) }))
}

/** What the receiver should end with: each entry's delta and the set of its head records. */
function expected(entries: [string, Uint8Array, OutgoingHead[]][]): [string, string, string[]][] {
  return entries.map(([id, delta, heads]) => [id, toHex(delta), heads.map((h) => toHex(h.record)).sort()])
}

/** What the receiver got, in the same form. */
function received(entries: [string, unknown][]): [string, string, string[]][] {
  return entries.map(([id, slot]) => {
    const bytes = slot as Uint8Array
    if (!isHeaded(bytes)) return [id, toHex(bytes), []]
    const { delta, heads } = decodeHeaded(bytes)
    return [id, toHex(delta), heads.map(toHex).sort()]
  })
}

function deltasRequest(entries: [string, Uint8Array][], table: HeadTable): Uint8Array {
  return encodeDeltasRequest({ collection: 'c', backend: 'automerge', entries, table })
}

const decodeRequest = (bytes: Uint8Array) => decodeDeltasRequest(decodeMessage(bytes, LIMIT).body)

describe('head tables: multiproofs', () => {
  it('some leaves of a tree and the multiproof rebuild its root and each leaf’s inclusion path; all leaves need no hash, one leaf its path (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }).chain((count) => fc.tuple(fc.constant(count), fc.uniqueArray(fc.nat(count - 1), { minLength: 1, maxLength: count }))),
        ([count, picked]) => {
          const hashes = Array.from({ length: count }, (_, i) => leafHash(new TextEncoder().encode(`leaf ${i}`)))
          const tree = merkleTree(hashes)
          const indexes = [...picked].sort((a, b) => a - b)
          const proof = multiproof(
            count,
            indexes.map((index) => ({ index, path: tree.paths[index]! })),
          )
          expect(proof).to.not.equal(undefined)
          if (indexes.length === count) expect(proof).to.have.length(0)
          if (indexes.length === 1) expect(proof).to.have.length(tree.paths[indexes[0]!]!.length)
          const rebuilt = rebuildRoot(
            count,
            indexes.map((index) => ({ index, hash: hashes[index]! })),
            proof!,
          )
          if ('refused' in rebuilt) throw new Error(rebuilt.refused)
          expect(toHex(rebuilt.root)).to.equal(toHex(tree.root))
          expect(rebuilt.paths.map((p) => p.map(toHex))).to.deep.equal(indexes.map((i) => tree.paths[i]!.map(toHex)))
        },
      ),
      { numRuns: 300 },
    )
  })

  it('a root rebuilt with a hash too many or too few, leaves out of order or out of the tree is refused; a changed leaf or hash rebuilds another root', () => {
    const hashes = Array.from({ length: 10 }, (_, i) => leafHash(new Uint8Array([i])))
    const tree = merkleTree(hashes)
    const leaves = [2, 7].map((index) => ({ index, hash: hashes[index]! }))
    const proof = multiproof(
      10,
      leaves.map(({ index }) => ({ index, path: tree.paths[index]! })),
    )!
    expect(rebuildRoot(10, leaves, [...proof, hashes[0]!])).to.deep.equal({ refused: '1 hashes more than the leaves need' })
    expect(rebuildRoot(10, leaves, proof.slice(1))).to.have.property('refused')
    expect(rebuildRoot(10, [...leaves].reverse(), proof)).to.deep.equal({ refused: 'leaf indexes not in ascending order' })
    expect(rebuildRoot(10, [leaves[0]!, { index: 10, hash: hashes[0]! }], proof)).to.have.property('refused')
    expect(rebuildRoot(0, leaves, proof)).to.have.property('refused')
    const other = rebuildRoot(10, [leaves[0]!, { index: 7, hash: hashes[6]! }], proof)
    expect('root' in other && toHex(other.root)).to.not.equal(toHex(tree.root))
    const flipped = proof.map((h, i) => (i === 0 ? Uint8Array.from(h, (b, j) => (j === 0 ? b ^ 1 : b)) : h))
    const again = rebuildRoot(10, leaves, flipped)
    expect('root' in again && toHex(again.root)).to.not.equal(toHex(tree.root))
    // Paths that do not fit the tree (a damaged record) make no multiproof.
    expect(multiproof(10, [{ index: 2, path: tree.paths[2]!.slice(1) }])).to.equal(undefined)
    expect(
      multiproof(10, [
        { index: 2, path: tree.paths[2]! },
        { index: 2, path: tree.paths[2]! },
      ]),
    ).to.equal(undefined)
  })
})

describe('head tables: packing and unpacking', () => {
  it('a requester asks for tables only beside heads (z with v); older requesters, which omit z, are sent head proofs in the deltas', () => {
    const asked = (m: Parameters<typeof encodeRootsRequest>[0]) => decodeRootsRequest(decodeMessage(encodeRootsRequest(m), LIMIT).body)
    expect(asked({ heads: true, headTables: true })).to.include({ heads: true, headTables: true })
    expect(asked({ heads: true })).to.not.have.property('headTables')
    expect(asked({ headTables: true })).to.not.have.property('headTables')
  })

  it('a batch packed with its heads in a table decodes to every entry’s delta with exactly its heads, in DeltasRequests and RangeResponses (fast-check)', async () => {
    const statements = [await statement(40, 'a', 1), await statement(5, 'b', 2), await statement(1, 'c', 3)]
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            heads: fc.uniqueArray(fc.tuple(fc.nat(2), fc.nat(39)), { maxLength: 3, selector: ([s, i]) => `${s} ${i}` }),
            delta: fc.uint8Array({ minLength: 1, maxLength: 40 }),
          }),
          { minLength: 1, maxLength: 30 },
        ),
        async (spec) => {
          const entries = spec.map(({ heads, delta }, i): [string, Uint8Array, OutgoingHead[]] => {
            const picked = heads.map(([s, index]) => statements[s]![index % statements[s]!.length]!)
            const distinct = [...new Map(picked.map((h) => [toHex(h.record), h])).values()]
            return [`e${i}`, delta, distinct]
          })
          const packed = packHeads(entries)
          const request = decodeRequest(deltasRequest(packed.entries, packed.table))
          expect(received(request.entries)).to.deep.equal(expected(entries))
          const response = decodeRangeResponse(decodeMessage(encodeRangeResponse({ entries: packed.entries, table: packed.table }), LIMIT).body)
          expect(received(response.entries)).to.deep.equal(expected(entries))
          // Every head went in the table (none is past its bound here), unless one leaf is given to two
          // entries (never so honestly: a leaf names its entity), whose statement then goes as proofs.
          const records = entries.flatMap(([, , heads]) => heads.map((h) => toHex(h.record)))
          if (new Set(records).size === records.length) for (const [, bytes] of packed.entries) expect(isHeaded(bytes)).to.equal(false)
        },
      ),
      { numRuns: 150 },
    )
  })

  it('the same heads in a table take under half the bytes of head proofs in every delta (64 entities of one statement: ~0.5 KB a head against ~0.1 KB)', async () => {
    const heads = await statement(64, 'p')
    const entries = heads.map((h, i): [string, Uint8Array, OutgoingHead[]] => [`p${i}`, new Uint8Array(150).fill(1), [h]])
    const full = deltasRequest(
      entries.map(([id, delta, hs]) => [
        id,
        encodeHeaded(
          delta,
          hs.map((h) => h.record),
        ),
      ]),
      [],
    )
    const packed = packHeads(entries)
    const compact = deltasRequest(packed.entries, packed.table)
    expect(packed.table).to.have.length(1)
    expect(packed.table[0]![3]).to.have.length(0) // all 64 leaves of the tree: no hash needed
    const perHead = (bytes: Uint8Array) => (bytes.byteLength - 64 * 150) / 64
    expect(perHead(full)).to.be.greaterThan(400)
    expect(perHead(compact)).to.be.lessThan(120)
  })

  it('heads it cannot put in a table stay in their delta as proofs: a damaged path, past the table’s bound', async () => {
    const heads = await statement(8, 'x')
    // A damaged record: its path no longer leads to the statement's root (the hash the table
    // takes from it, the right half's root: a damaged hash the table does not use is harmless).
    const path = heads[0]!.proof.path
    const damaged = { ...heads[0]!, proof: { ...heads[0]!.proof, path: path.map((h, i) => (i === path.length - 1 ? new Uint8Array(32) : h)) } }
    const packed = packHeads([
      ['x0', new Uint8Array([1]), [damaged]],
      ['x1', new Uint8Array([2]), [heads[1]!]],
    ])
    // Both leaves share the statement: the row would not rebuild its root, so both stay proofs.
    expect(packed.table).to.have.length(0)
    expect(received(packed.entries)).to.deep.equal(
      expected([
        ['x0', new Uint8Array([1]), [damaged]],
        ['x1', new Uint8Array([2]), [heads[1]!]],
      ]),
    )
    // One entry with more heads than a table of one entry may hold: the rest in its delta.
    const many = (await statement(100, 'm')).map((h) => h)
    const one = packHeads([['m', new Uint8Array([3]), many]])
    expect(one.table[0]![2]).to.have.length(maxTableLeaves(1))
    expect(decodeHeaded(one.entries[0]![1]).heads).to.have.length(100 - maxTableLeaves(1))
    expect(received(decodeRequest(deltasRequest(one.entries, one.table)).entries)).to.deep.equal(expected([['m', new Uint8Array([3]), many]]))
  })

  it('a batch of heads with long names is packed within what the receiver rebuilds (16 MB): the rest of its heads go as proofs in their deltas, and it decodes whole', async function () {
    this.timeout(60_000)
    const entries = 2200
    const long = async (signature: number): Promise<OutgoingHead[]> => {
      const leaves: HeadLeaf[] = Array.from({ length: entries }, (_, i) => ({
        id: `${'e'.repeat(1000)}${i}`,
        actor: toHex(randomBytes(24)),
        seq: 1,
        hash: toHex(randomBytes(32)),
      }))
      const signed = await signHeads({ namespace: 'n'.repeat(1000), collection: 'c'.repeat(1000), author: 'a'.repeat(250), time: 1 }, leaves, async () =>
        new Uint8Array(64).fill(signature),
      )
      return signed.proofs.map((record) => ({ record, proof: decodeHeadProof(record) }))
    }
    const [a, b] = [await long(1), await long(2)]
    const batch = a.map((h, i): [string, Uint8Array, OutgoingHead[]] => [`${'e'.repeat(1000)}${i}`, new Uint8Array([i & 255]), [h, b[i]!]])
    const packed = packHeads(batch)
    const inTable = packed.table.reduce((n, row) => n + row[2].length, 0)
    expect(inTable)
      .to.be.greaterThan(3000)
      .and.lessThan(2 * entries) // ~3.9 KB rebuilt a head: ~4,300 fit in 16 MB
    const message = encodeRangeResponse({ entries: packed.entries, table: packed.table })
    const decoded = decodeRangeResponse(decodeMessage(message, 64 * 1024 * 1024).body)
    expect(received(decoded.entries)).to.deep.equal(expected(batch))
  })

  it('the length of a headed delta, counted without making it, is its length (sizing batches)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 70_000 }), fc.array(fc.integer({ min: 0, max: 70_000 }), { maxLength: 30 }), (delta, records) => {
        const heads = records.map((n) => ({ record: new Uint8Array(n) }))
        expect(withHeadsLength(new Uint8Array(delta), heads)).to.equal(withHeads(new Uint8Array(delta), heads).byteLength)
      }),
      { numRuns: 200 },
    )
  })

  it('a head a table proved skips only its own path walk: the table proves its rebuilt proofs; the same leaf with another path beside it is still checked in full and refused', async () => {
    const author = 'peer'
    const leaves: HeadLeaf[] = Array.from({ length: 8 }, (_, i) => ({
      id: `p${i}`,
      actor: toHex(boundActor(author, new Uint8Array(16).fill(i))),
      seq: 1,
      hash: toHex(randomBytes(32)),
    }))
    const signed = await signHeads({ namespace: 'ns', collection: 'c', author, time: 1 }, leaves, async () => new Uint8Array(64).fill(5))
    const verifier = new HeadVerifier('ns', async () => true)
    const checkOf = (record: Uint8Array, i: number) => verifier.check(record, { collection: 'c', id: `p${i}` })
    const table = (): [string, Uint8Array][] => {
      const heads = signed.proofs.map((record) => ({ record, proof: decodeHeadProof(record) }))
      const packed = packHeads(heads.map((h, i): [string, Uint8Array, OutgoingHead[]] => [`p${i}`, new Uint8Array([i]), [h]]))
      return decodeRangeResponse(decodeMessage(encodeRangeResponse(packed), LIMIT).body).entries as [string, Uint8Array][]
    }
    // Honest: every rebuilt proof checks (its path proven by the table).
    const rebuilt = table().map(([, slot]) => decodeHeaded(slot).heads[0]!)
    for (let i = 0; i < rebuilt.length; i++) expect(await checkOf(rebuilt[i]!, i)).to.not.have.property('refused')
    // Unpacking proves each rebuilt proof (once).
    const again = table().map(([, slot]) => decodeHeaded(slot).heads[0]!)
    expect(again.map((r) => provenRecords.proves(r))).to.deep.equal(again.map(() => true))
    expect(provenRecords.proves(again[0]!)).to.equal(false)
    // Proven again, then the same leaf sent with a path one hash off: refused, not passed on the table's fact.
    table()
    const proof = decodeHeadProof(signed.proofs[3]!)
    const bent = encodeHeadProof({ ...proof, path: proof.path.map((h, k) => (k === 0 ? new Uint8Array(32).fill(9) : h)) })
    expect(await checkOf(bent, 3)).to.deep.include({ refused: "a head whose inclusion path does not lead to its statement's root" })
    // A fact is used once: the genuine proof of leaf 4 checks in full after its fact was taken.
    expect(await checkOf(signed.proofs[4]!, 4)).to.not.have.property('refused')
    expect(await checkOf(signed.proofs[4]!, 4)).to.not.have.property('refused')
  })

  it('what tables proved is bounded in bytes, whatever peers send: the oldest facts go first, a record past the bound is not kept', () => {
    const record = (size: number, fill: number) => new Uint8Array(size).fill(fill)
    provenRecords.add(record(9 * 1024 * 1024, 1))
    expect(provenRecords.proves(record(9 * 1024 * 1024, 1))).to.equal(false)
    provenRecords.add(record(5 * 1024 * 1024, 2))
    provenRecords.add(record(5 * 1024 * 1024, 3))
    expect(provenRecords.proves(record(5 * 1024 * 1024, 2))).to.equal(false)
    expect(provenRecords.proves(record(5 * 1024 * 1024, 3))).to.equal(true)
  })

  it('a hostile table is a malformed message: a changed leaf, a hash too many, a head for an entry that is not there or not inline, a statement that does not decode, more leaves than its bound', async () => {
    const heads = await statement(4, 'h')
    const entries = heads.map((h, i): [string, Uint8Array, OutgoingHead[]] => [`h${i}`, new Uint8Array([i]), [h]])
    const { entries: bare, table } = packHeads(entries)
    const row = table[0]!
    const hostile: [string, HeadTable, [string, Uint8Array][]?][] = [
      [
        'do not rebuild',
        [[row[0], row[1], row[2].map(([e, leaf, i], j) => [e, j === 0 ? Uint8Array.from(leaf, (b, k) => (k === 3 ? b ^ 1 : b)) : leaf, i]), row[3]]],
      ],
      ['more than the leaves need', [[row[0], row[1], row[2], [new Uint8Array(32)]]]],
      ['entry', [[row[0], row[1], row[2].map(([, leaf, i]): [number, Uint8Array, number] => [9, leaf, i]), row[3]]]],
      ['undecodable|head statement', [[new Uint8Array([1, 2, 3]), row[1], row[2], row[3]]]],
      ['not in ascending order', [[row[0], row[1], [...row[2]].reverse(), row[3]]]],
    ]
    for (const [why, t] of hostile) expect(() => decodeRequest(deltasRequest(bare, t)), why).to.throw(new RegExp(why))
    const tooMany: HeadTable = Array.from({ length: 4 }, () => [
      row[0],
      row[1],
      Array.from({ length: 40 }, (_, i): [number, Uint8Array, number] => [0, row[2][0]![1], i]),
      [],
    ])
    expect(() => decodeRequest(deltasRequest(bare, tooMany))).to.throw(/more than 72 leaves/)
    // A table naming a ticket (a delta sent in parts) in a range response.
    const ticket = { ticket: 1, size: 10_000_000, hash: new Uint8Array(32) }
    const withTicket = encodeRangeResponse({ entries: [[bare[0]![0], ticket], ...bare.slice(1)], table })
    expect(() => decodeRangeResponse(decodeMessage(withTicket, LIMIT).body)).to.throw(/not inline/)
  })
})

describe('head tables on replicas (loopback)', function () {
  this.timeout(60_000)
  const { keys, replicas } = trustSuite()

  for (const tables of [true, false]) {
    it(
      tables
        ? 'a late joiner catches up through a relay with the heads in tables (no head proof inside any delta), stores every head, and relays them on to the next joiner'
        : 'a relay that sends no head tables (an older replica) sends head proofs inside the deltas, and the late joiner catches up all the same',
      async () => {
        const { hub, r } = await headsCluster(keys, replicas, [ADMIN, SUPPORT])
        if (!tables) ctxOf(r[SUPPORT]!).heads!.readsHeadTables = () => false
        for (let i = 0; i < 40; i++) await notes(r[ADMIN]!).put(`n${i}`, { text: `note ${i}` })
        await waitFor(async () => (await count(notes(r[SUPPORT]!))) === 40, 'SUPPORT has them')
        await r[ADMIN]!.close() // only the relay is left
        const late = await trustMember(keys, replicas, hub, LATE)
        // Every batch LATE receives, both ways: what the relay pushes to it and what it answers LATE's requests with.
        const batches: { type: number; headedEntries: number; tableLeaves: number }[] = []
        const look = (bytes: Uint8Array) => {
          const msg = decodeMessage(bytes, LIMIT)
          if (msg.type !== MessageType.DeltasRequest && msg.type !== MessageType.RangeResponse) return
          const body = msg.body as { e: [string, unknown][]; t?: HeadTable }
          batches.push({
            type: msg.type,
            headedEntries: body.e.filter(([, d]) => d instanceof Uint8Array && isHeaded(d)).length,
            tableLeaves: (body.t ?? []).reduce((n, row) => n + row[2].length, 0),
          })
        }
        const net = hub.started(LATE)!
        const serve = net.serve.bind(net)
        net.serve = (from, data) => (look(data), serve(from, data))
        const request = net.request.bind(net)
        net.request = async (peer, data, options) => {
          const response = await request(peer, data, options)
          look(response)
          return response
        }
        await waitFor(() => late.policy.get() !== undefined, 'LATE adopts')
        await late.sync()
        // (The relay's own round with LATE may still be applying its push: waited for, not raced.)
        await waitFor(async () => (await count(notes(late))) === 40, 'LATE has all 40')
        for (let i = 0; i < 40; i++) expect((await notes(late).get(`n${i}`))?.text).to.equal(`note ${i}`)
        expect(batches.length).to.be.greaterThan(0)
        expect(batches.reduce((n, b) => n + b.tableLeaves, 0)).to.be.at.least(tables ? 40 : 0)
        expect(batches.reduce((n, b) => n + b.headedEntries, 0)).to.equal(tables ? 0 : 40)
        // The heads are stored in the batch of their change, which may land a tick after the value shows.
        const headsStored = async () =>
          (await Promise.all(Array.from({ length: 40 }, (_, i) => ctxOf(late).heads!.stored('notes', `n${i}`)))).map((h) => h.size)
        await waitFor(async () => (await headsStored()).every((n) => n === 1), 'LATE stored every head')
        expect(await headsStored()).to.deep.equal(Array.from({ length: 40 }, () => 1))
        // And the heads LATE stored vouch for the writes to the next joiner, which reaches only LATE.
        await r[SUPPORT]!.close()
        const next = await trustMember(keys, replicas, hub, ORDERS)
        await waitFor(() => next.policy.get() !== undefined, 'the next joiner adopts')
        await next.sync()
        await waitFor(async () => (await count(notes(next))) === 40, 'the next joiner has all 40')
        for (let i = 0; i < 40; i++) expect((await notes(next).get(`n${i}`))?.text).to.equal(`note ${i}`)
        expect(next.stats().droppedByReason.forbidden + next.stats().droppedByReason.badSignature).to.equal(0)
      },
    )
  }

  it('an entity served whole before the push of its last write has stored its head (or after a crash lost it) goes with a head signed then, not without one (the peer would wait a round)', async () => {
    const { r } = await headsCluster(keys, replicas, [ADMIN, SUPPORT])
    await notes(r[ADMIN]!).put('n1', { text: 'one' })
    await waitFor(async () => (await notes(r[SUPPORT]!).get('n1')) !== undefined, 'SUPPORT has it')
    const ctx = ctxOf(r[ADMIN]!)
    const col = ctx.entities.collections.get('notes')!
    const [actor] = [...(await ctx.heads!.stored('notes', 'n1')).keys()]
    expect(actorOwnedBy(actor!, ADMIN)).to.equal(true)
    await ctx.entities.addToTick([{ type: 'delMeta', key: headKey('notes', 'n1', actor!) }]) // as if not signed yet
    expect((await ctx.heads!.stored('notes', 'n1')).size).to.equal(0)
    const whole = (await wholeStateOf(ctx.entities, col, 'n1'))!
    const heads = await headsFor(ctx, col, 'n1', whole, SUPPORT, 'whole')
    expect(heads.map((h) => [h.proof.index, decodeHeadProof(h.record).statement.byteLength > 0])).to.deep.equal([[0, true]])
    // SUPPORT takes it as ADMIN's: the head checks out there.
    const checked = await ctxOf(r[SUPPORT]!).heads!.verifyAll(
      heads.map((h) => h.record),
      { collection: 'notes', id: 'n1' },
      ADMIN,
    )
    expect(checked.refused).to.equal(undefined)
    expect([...checked.heads.values()].map((h) => [h.actor, h.author])).to.deep.equal([[actor, ADMIN]])
  })
})
