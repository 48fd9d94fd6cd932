import { expect } from 'chai'
import fc from 'fast-check'
import { toHex } from '../src/hash.js'
import { decodeHeaded, decodeHeadedInGeneral, encodeHeaded, readHeaded } from '../src/replication/heads.js'
import { boundActor } from '../src/trust/actor-binding.js'
import { readHeadLeaf, readHeadProof } from '../src/trust/head-proof-reader.js'
import {
  decodeHeadProof,
  decodeHeadProofInGeneral,
  decodeLeafInGeneral,
  encodeHeadProof,
  encodeLeaf,
  MAX_LEAVES,
  type HeadProof,
} from '../src/trust/signed-heads.js'
import { MAX_SIGNATURE_BYTES } from '../src/trust/signed-push.js'
import { BOUND_ACTOR_BYTES } from '../src/trust/actor-binding.js'

const BOUNDS = { maxSignature: MAX_SIGNATURE_BYTES, maxIndex: MAX_LEAVES - 1, maxPath: 16 }

/** What a general decode gives, or 'throws'. */
function general<T>(decode: (b: Uint8Array) => T, bytes: Uint8Array): T | 'throws' {
  try {
    return decode(bytes)
  } catch {
    return 'throws'
  }
}

/** Byte strings compared by content (a view and a copy of the same bytes are equal). */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return `bytes:${toHex(v)}`
  if (Array.isArray(v)) return v.map(plain)
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]))
  return v
}

const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max })
const proofs: fc.Arbitrary<HeadProof> = fc.record({
  // Across the 1/2/3-byte length heads of each field, and past the bounds the reader checks.
  signature: fc.oneof(bytes(0, 80), bytes(250, MAX_SIGNATURE_BYTES + 8)),
  index: fc.oneof(fc.integer({ min: 0, max: 30 }), fc.integer({ min: 0, max: MAX_LEAVES + 10 })),
  leaf: fc.oneof(bytes(0, 30), bytes(200, 300)),
  path: fc.array(fc.oneof(bytes(32, 32), bytes(31, 33)), { maxLength: 18 }),
  statement: fc.oneof(bytes(0, 30), bytes(140, 300)),
})

/** Bytes with one edit: a byte changed, a cut, or a byte put in. */
const edited = (base: Uint8Array) =>
  fc.oneof(
    fc.tuple(fc.nat(base.byteLength - 1), fc.integer({ min: 0, max: 255 })).map(([i, b]) => Uint8Array.from(base, (x, j) => (j === i ? b : x))),
    fc.nat(base.byteLength).map((n) => base.subarray(0, n)),
    fc.tuple(fc.nat(base.byteLength), fc.integer({ min: 0, max: 255 })).map(([i, b]) => Uint8Array.from([...base.subarray(0, i), b, ...base.subarray(i)])),
  )

describe('head proofs read by position (head-proof-reader)', () => {
  it('reads every proof encodeHeadProof writes as the general reader does, and gives up (undefined) wherever the general reader refuses', () => {
    fc.assert(
      fc.property(proofs, (p) => {
        const record = encodeHeadProof(p)
        const slow = general(decodeHeadProofInGeneral, record)
        const fast = readHeadProof(record, BOUNDS)
        if (slow === 'throws') return fast === undefined
        expect(plain(fast)).to.deep.equal(plain(slow))
        return true
      }),
      { numRuns: 500 },
    )
  })

  it('never reads bytes differently from the general reader: on edited proofs it gives the same value or undefined', () => {
    const base = encodeHeadProof({
      signature: new Uint8Array(64).fill(3),
      index: 300,
      leaf: new Uint8Array(90).fill(4),
      path: Array.from({ length: 7 }, (_, i) => new Uint8Array(32).fill(i)),
      statement: new Uint8Array(150).fill(5),
    })
    fc.assert(
      fc.property(edited(base), (record) => {
        const fast = readHeadProof(record, BOUNDS)
        if (fast === undefined) return true
        const slow = general(decodeHeadProofInGeneral, record)
        expect(slow).to.not.equal('throws')
        expect(plain(fast)).to.deep.equal(plain(slow))
        return true
      }),
      { numRuns: 2000 },
    )
  })

  it('reads the proof as views of the record (no copies): the point of it', () => {
    const record = encodeHeadProof({
      signature: new Uint8Array(64),
      index: 1,
      leaf: new Uint8Array(80),
      path: [new Uint8Array(32)],
      statement: new Uint8Array(150),
    })
    const p = decodeHeadProof(record)
    expect(p.statement.buffer).to.equal(record.buffer)
    expect(p.path[0]!.buffer).to.equal(record.buffer)
  })

  it('reads every leaf encodeLeaf writes as the general reader does (ids ASCII or not, seqs across the length heads), and edited leaves the same or not at all', () => {
    const leaves = fc.record({
      id: fc.oneof(fc.string({ minLength: 0, maxLength: 30 }), fc.string({ minLength: 1000, maxLength: 1030 }), fc.constantFrom('é', 'ü-1', '\u{1F600}')),
      actor: fc.oneof(bytes(BOUND_ACTOR_BYTES, BOUND_ACTOR_BYTES), bytes(BOUND_ACTOR_BYTES - 1, BOUND_ACTOR_BYTES + 1)),
      seq: fc.oneof(fc.integer({ min: 0, max: 70_000 }), fc.constantFrom(0xffffffff, 2 ** 32, 2 ** 53 - 1)),
      hash: fc.oneof(bytes(32, 32), bytes(31, 33)),
    })
    fc.assert(
      fc.property(leaves, fc.boolean(), (l, edit) => {
        const bytes0 = encodeLeaf({ id: l.id, actor: toHex(l.actor), seq: l.seq, hash: toHex(l.hash) })
        const check = (b: Uint8Array) => {
          const fast = readHeadLeaf(b, BOUND_ACTOR_BYTES, 1024)
          const slow = general(decodeLeafInGeneral, b)
          if (fast === undefined) return
          expect(slow).to.not.equal('throws')
          expect(fast).to.deep.equal(slow)
        }
        check(bytes0)
        if (edit)
          fc.assert(
            fc.property(edited(bytes0), (b) => (check(b), true)),
            { numRuns: 20 },
          )
        // Every leaf a replica signs (an ASCII id, a bound actor, a seq from 1) is read by position.
        if (/^[\x20-\x7e]{1,1024}$/.test(l.id) && l.actor.byteLength === BOUND_ACTOR_BYTES && l.hash.byteLength === 32 && l.seq >= 1 && l.seq < 2 ** 32) {
          expect(readHeadLeaf(bytes0, BOUND_ACTOR_BYTES, 1024)).to.deep.equal(decodeLeafInGeneral(bytes0))
        }
        return true
      }),
      { numRuns: 300 },
    )
    expect(
      readHeadLeaf(encodeLeaf({ id: 'p1', actor: toHex(boundActor('peer', new Uint8Array(16))), seq: 3, hash: 'ab'.repeat(32) }), BOUND_ACTOR_BYTES, 1024),
    ).to.not.equal(undefined)
  })

  it('reads every headed delta encodeHeaded writes as the general reader does, as views; edited ones the same or not at all', () => {
    const headed = fc.tuple(fc.oneof(bytes(0, 40), bytes(250, 70_000)), fc.array(fc.oneof(bytes(0, 30), bytes(500, 600)), { maxLength: 30 }))
    fc.assert(
      fc.property(headed, fc.boolean(), ([delta, heads], edit) => {
        const record = encodeHeaded(delta, heads)
        const check = (b: Uint8Array) => {
          const fast = readHeaded(b)
          if (fast === undefined) return
          const slow = general(decodeHeadedInGeneral, b)
          expect(slow).to.not.equal('throws')
          expect(plain(fast)).to.deep.equal(plain(slow))
        }
        expect(readHeaded(record), 'read by position').to.not.equal(undefined)
        check(record)
        if (edit && record.byteLength < 5000)
          fc.assert(
            fc.property(edited(record), (b) => (check(b), true)),
            { numRuns: 30 },
          )
        const read = decodeHeaded(record)
        expect(read.delta.buffer).to.equal(record.buffer)
        return true
      }),
      { numRuns: 150 },
    )
    // A headed delta inside a headed delta is refused either way.
    expect(() => decodeHeaded(encodeHeaded(encodeHeaded(new Uint8Array([1]), [new Uint8Array([2])]), []))).to.throw(/inside a headed delta/)
  })
})
