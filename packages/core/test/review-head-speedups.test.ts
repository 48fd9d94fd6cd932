// Review of the catch-up speed-ups of signed heads (2adaadb, 57f5ed2): encodeHeadProof framed by
// hand, provenRecords (a head a table rebuilt skips its path walk at check), the authorOf memo,
// chunkActors without hashing, packHeads' latin1 group keys. Each "HOLE n" is a hole the review
// found (fixed: its test asserts the fix); each "probe" an attack or invariant that held.
import { expect } from 'chai'
import { encode } from 'cborg'
import fc from 'fast-check'
import { randomBytes } from 'node:crypto'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { decodeHeaded, isHeaded } from '../src/replication/heads.js'
import { packHeads, unpackHeads, type HeadTable, type OutgoingHead } from '../src/replication/messages/head-table.js'
import { leafHash, merkleTree, multiproof, rebuildRoot, verifyInclusion } from '../src/trust/merkle.js'
import {
  claimedHead,
  decodeHeadProof,
  encodeHeadProof,
  encodeStatement,
  HeadVerifier,
  MAX_LEAVES,
  provenRecords,
  signHeads,
  type HeadLeaf,
  type HeadProof,
} from '../src/trust/signed-heads.js'
import { MAX_SIGNATURE_BYTES } from '../src/trust/signed-push.js'
import { boundActor } from '../src/trust/actor-binding.js'
import { concatBytes, toHex } from '../src/hash.js'

const SIG = new Uint8Array(64).fill(7)
const MiB = 1024 * 1024

/** The head records an unpacked batch carries, per entry (none for a bare delta). */
function recordsOf(entries: [string, unknown][]): Uint8Array[][] {
  return entries.map(([, slot]) => (isHeaded(slot as Uint8Array) ? decodeHeaded(slot as Uint8Array).heads : []))
}

/** A statement of `n` leaves of entities `${prefix}i` by `author` (actors bound to it), signed with SIG. */
async function signed(n: number, prefix: string, author = 'peer', collection = 'c') {
  const leaves: HeadLeaf[] = Array.from({ length: n }, (_, i) => ({
    id: `${prefix}${i}`,
    actor: toHex(boundActor(author, randomBytes(16))),
    seq: 1,
    hash: toHex(randomBytes(32)),
  }))
  return signHeads({ namespace: 'ns', collection, author, time: 1 }, leaves, async () => SIG)
}

describe('review: head speed-ups (encodeHeadProof by hand, provenRecords, authorOf, packHeads keys)', () => {
  it('HOLE 1 (fixed, low: performance only): a record the memo already holds, added again at its bound, evicted the oldest facts for nothing (a head table naming the same head twice, or two replicas of one process unpacking one batch) — those heads were then walked in full', () => {
    const a = randomBytes(4 * MiB)
    const b = randomBytes(4 * MiB)
    // A and B fill the 8 MiB exactly (whatever was held before goes first: it is older).
    provenRecords.add(a)
    provenRecords.add(b)
    provenRecords.add(b) // already held: nothing to make room for
    expect(provenRecords.proves(a)).to.equal(true)
    expect(provenRecords.proves(b)).to.equal(true)
  })

  it('probe (held): every record a table rebuilds — trees of 1…4,096 leaves, any subset of them, hostile multiproof hashes — decodes to exactly what was framed and its path verifies under its statement (verifyInclusion), so the walk check skips for it could never refuse; and each is recorded once', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: 1, max: 70 }), fc.constantFrom(1, 2, 3, 255, 256, 257, 1023, 1024, 1025, MAX_LEAVES - 1, MAX_LEAVES)),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.boolean(),
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        (count, density, hostile, seed) => {
          let s = seed
          const rnd = () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
          const leaves = Array.from({ length: count }, (_, i) => randomBytes(i % 41))
          const tree = merkleTree(leaves.map(leafHash))
          let chosen = Array.from({ length: count }, (_, i) => i).filter(() => rnd() < density)
          if (chosen.length === 0) chosen = [Math.floor(rnd() * count)]
          chosen = chosen.slice(0, 600) // within one message's bounds
          let hashes = multiproof(
            count,
            chosen.map((index) => ({ index, path: tree.paths[index]! })),
          )!
          if (hostile) hashes = hashes.map(() => randomBytes(32))
          const rebuilt = rebuildRoot(
            count,
            chosen.map((index) => ({ index, hash: leafHash(leaves[index]!) })),
            hashes,
          )
          if ('refused' in rebuilt) return false
          const statement = encodeStatement({ namespace: 'ns', collection: 'c', author: 'peer', time: 1, root: rebuilt.root, count })
          const table: HeadTable = [[statement, SIG, chosen.map((index, entry): [number, Uint8Array, number] => [entry, leaves[index]!, index]), hashes]]
          const entries = chosen.map((_, entry): [string, Uint8Array] => [`e${entry}`, new Uint8Array([entry & 0xff])])
          const records = recordsOf(unpackHeads(entries, table))
          return chosen.every((index, entry) => {
            const record = records[entry]![0]!
            const p = decodeHeadProof(record)
            const same =
              toHex(p.statement) === toHex(statement) && toHex(p.signature) === toHex(SIG) && toHex(p.leaf) === toHex(leaves[index]!) && p.index === index
            const walks = verifyInclusion(leafHash(p.leaf), p.index, count, p.path, rebuilt.root)
            return same && walks && toHex(encodeHeadProof(p)) === toHex(record) && provenRecords.proves(record)
          })
        },
      ),
      { numRuns: 60 },
    )
  })

  it("probe (held): encodeHeadProof is cborg's encoding and decodes back to its input for what the code frames: index 0…4,095 at every head boundary, paths of 0…16 hashes, signatures of 0…256 bytes, statements and leaves across the 1/2/3/5-byte length heads", () => {
    const size = fc.oneof(fc.constantFrom(0, 1, 23, 24, 255, 256, 65_535, 65_536, 70_000), fc.nat(600))
    fc.assert(
      fc.property(
        fc.oneof(fc.constantFrom(0, 23, 24, 255, 256, MAX_LEAVES - 1), fc.nat(MAX_LEAVES - 1)),
        fc.integer({ min: 0, max: 16 }),
        fc.integer({ min: 0, max: MAX_SIGNATURE_BYTES }),
        size,
        size,
        (index, pathLength, sig, s, l) => {
          const p: HeadProof = {
            statement: randomBytes(s),
            signature: randomBytes(sig),
            leaf: randomBytes(l),
            index,
            path: Array.from({ length: pathLength }, () => randomBytes(32)),
          }
          const mine = encodeHeadProof(p)
          const theirs = encode({ s: p.statement, g: p.signature, l: p.leaf, i: p.index, p: p.path })
          const back = decodeHeadProof(mine)
          return (
            Buffer.from(mine).equals(theirs) &&
            toHex(back.statement) === toHex(p.statement) &&
            toHex(back.signature) === toHex(p.signature) &&
            toHex(back.leaf) === toHex(p.leaf) &&
            back.index === p.index &&
            back.path.map(toHex).join() === p.path.map(toHex).join()
          )
        },
      ),
      { numRuns: 200 },
    )
    // Views into a larger buffer frame their own bytes only.
    const big = randomBytes(1000)
    const view: HeadProof = {
      statement: big.subarray(10, 90),
      signature: big.subarray(100, 164),
      leaf: big.subarray(200, 260),
      index: 3,
      path: [big.subarray(300, 332)],
    }
    expect(Buffer.from(encodeHeadProof(view)).equals(encode({ s: view.statement, g: view.signature, l: view.leaf, i: 3, p: view.path }))).to.equal(true)
  })

  it('probe (held): a record a table proved is refused under another namespace, collection or entity, and its fact does not pass a copy with a bent path; another replica (verifier) of the process checks it in full after the first took the fact', async () => {
    const heads = await signed(8, 'p')
    const table = (): Uint8Array[] => {
      const out = packHeads(
        heads.proofs.map((record, i): [string, Uint8Array, OutgoingHead[]] => [`p${i}`, new Uint8Array([i]), [{ record, proof: decodeHeadProof(record) }]]),
      )
      expect(out.table).to.have.length(1)
      return recordsOf(unpackHeads(out.entries, out.table)).map((r) => r[0]!)
    }
    const ok = new HeadVerifier('ns', async () => true)
    const records = table()
    expect(await new HeadVerifier('other', async () => true).check(records[0]!, { collection: 'c', id: 'p0' }))
      .to.have.property('refused')
      .that.match(/signed for/)
    expect(await ok.check(records[0]!, { collection: 'd', id: 'p0' }))
      .to.have.property('refused')
      .that.match(/signed for/)
    expect(await ok.check(records[0]!, { collection: 'c', id: 'p1' }))
      .to.have.property('refused')
      .that.match(/entity/)
    // A forged signature is still refused though the path was proven.
    expect(await new HeadVerifier('ns', async () => false).check(records[1]!, { collection: 'c', id: 'p1' }))
      .to.have.property('refused')
      .that.match(/signature/)
    // Bent: the same leaf, index, statement, a path one hash off.
    const p = decodeHeadProof(records[2]!)
    const bent = encodeHeadProof({ ...p, path: p.path.map((h, k) => (k === p.path.length - 1 ? new Uint8Array(32) : h)) })
    expect(await ok.check(bent, { collection: 'c', id: 'p2' }))
      .to.have.property('refused')
      .that.match(/inclusion path/)
    // One verifier takes the fact; a second (another replica) walks the path, and accepts.
    expect(await ok.check(records[3]!, { collection: 'c', id: 'p3' })).to.not.have.property('refused')
    expect(await new HeadVerifier('ns', async () => true).check(records[3]!, { collection: 'c', id: 'p3' })).to.not.have.property('refused')
  })

  it("probe (held): a table row whose statement differs (same signature bytes) or whose signature and statement concatenate as another pair's do goes in its own group: each statement its own row, a head that cannot be tabled stays whole in its delta", async () => {
    const one = await signed(3, 'a')
    const two = await signed(3, 'b')
    const heads = [...one.proofs, ...two.proofs].map((record) => ({ record, proof: decodeHeadProof(record) }))
    const out = packHeads(heads.map((h, i): [string, Uint8Array, OutgoingHead[]] => [`e${i}`, new Uint8Array([i]), [h]]))
    expect(out.table).to.have.length(2)
    expect(out.entries.every(([, d]) => !isHeaded(d))).to.equal(true)
    // (signature ‖ statement[0], statement[1…]) spells the same bytes as (signature, statement).
    const good = { record: one.proofs[0]!, proof: decodeHeadProof(one.proofs[0]!) }
    const s = good.proof.statement
    const twinProof: HeadProof = {
      statement: s.subarray(1),
      signature: concatBytes([SIG, s.subarray(0, 1)]),
      leaf: good.proof.leaf,
      index: 0,
      path: good.proof.path,
    }
    const twin = { record: encodeHeadProof(twinProof), proof: twinProof }
    const mixed = packHeads([
      ['x', new Uint8Array([1]), [good]],
      ['y', new Uint8Array([2]), [twin]],
    ])
    expect(mixed.table).to.have.length(1)
    expect(mixed.table[0]![2].map((l) => l[0])).to.deep.equal([0])
    expect(isHeaded(mixed.entries[0]![1] as Uint8Array)).to.equal(false)
    expect(decodeHeaded(mixed.entries[1]![1] as Uint8Array).heads.map(toHex)).to.deep.equal([toHex(twin.record)])
  })

  it('probe (held): a table whose rows rebuild but whose message is refused after (a head for an entry that is not inline) leaves its facts behind — each a record whose path does verify (only a later check of those very bytes skips the walk)', async () => {
    const heads = await signed(4, 'q')
    const root = merkleTree(heads.leaves.map(leafHash)).root
    const table: HeadTable = [[heads.statement, heads.signature, heads.leaves.map((leaf, i): [number, Uint8Array, number] => [i, leaf, i]), []]]
    const entries: [string, Uint8Array | { ticket: number }][] = [0, 1, 2].map((i): [string, Uint8Array] => [`q${i}`, new Uint8Array([i])])
    entries.push(['q3', { ticket: 1 }])
    expect(() => unpackHeads(entries, table)).to.throw(/not inline/)
    for (const record of heads.proofs) {
      const p = decodeHeadProof(record)
      expect(verifyInclusion(leafHash(p.leaf), p.index, 4, p.path, root)).to.equal(true)
      expect(provenRecords.proves(record)).to.equal(true)
    }
  })

  it('probe (held): the author memo answers each statement its own author — across more than its 1,024 entries (evicted and decoded again) and for statements one byte apart — and still throws for a statement that does not decode', async () => {
    const records: { record: Uint8Array; author: string }[] = []
    for (let i = 0; i < 1100; i++) {
      const author = `a${i.toString().padStart(4, '0')}`
      records.push({ record: (await signed(1, 'x', author)).proofs[0]!, author })
    }
    for (let round = 0; round < 2; round++) for (const { record, author } of records) expect(claimedHead(record).author).to.equal(author)
    // 'a0001' and 'a0002' statements (same everything else but the leaf) differ in a byte of the author.
    expect(claimedHead(records[1]!.record).author).to.not.equal(claimedHead(records[2]!.record).author)
    const p = decodeHeadProof(records[0]!.record)
    expect(() => claimedHead(encodeHeadProof({ ...p, statement: p.statement.subarray(1) }))).to.throw()
  })
  it('probe (held, ~1.5x its nominal bound): what tables proved is bounded at 8 MiB of record bytes; filled with the smallest records a table can rebuild (~72 bytes: an empty leaf and signature, a one-leaf statement) the heap holds ~12.4 MiB (117,509 records; per-entry overhead of the Set and its strings), no message buffer', () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    gc()
    const before = process.memoryUsage().heapUsed
    const n = Math.ceil((8 * MiB) / 72) + 1000
    for (let i = 0; i < n; i++) provenRecords.add(randomBytes(72))
    gc()
    const held = process.memoryUsage().heapUsed - before
    // Flushed for whatever runs next: one record of the whole bound, then taken.
    const flush = new Uint8Array(8 * MiB)
    provenRecords.add(flush)
    expect(provenRecords.proves(flush)).to.equal(true)
    expect(held).to.be.below(3 * 8 * MiB)
  })
})
