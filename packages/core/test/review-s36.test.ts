// Review s36: the readers by position (head-proof-reader.ts, readHeaded) against the general reader.
import { expect } from 'chai'
import { encode } from 'cborg'
import { toHex } from '../src/hash.js'
import { decodeHeaded, decodeHeadedInGeneral, encodeHeaded } from '../src/replication/heads.js'
import { BOUND_ACTOR_BYTES } from '../src/trust/actor-binding.js'
import { decodeHeadProof, decodeHeadProofInGeneral, decodeLeafInGeneral, encodeHeadProof, encodeLeaf } from '../src/trust/signed-heads.js'
import { readHeadLeaf, readHeadProof } from '../src/trust/head-proof-reader.js'

const BOUNDS = { maxSignature: 256, maxIndex: 4095, maxPath: 16 }

function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return `bytes:${toHex(v)}`
  if (Array.isArray(v)) return v.map(plain)
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]))
  return v
}
function outcome<T>(f: (b: Uint8Array) => T, b: Uint8Array): unknown {
  try {
    return plain(f(b))
  } catch {
    return 'throws'
  }
}
const cat = (...p: (number[] | Uint8Array)[]): Uint8Array => Uint8Array.from(p.flatMap((x) => [...x]))
const fill = (n: number, b = 7): Uint8Array => new Uint8Array(n).fill(b)

describe('review s36: the readers by position', () => {
  it('probe: hand-made proofs, leaves and headed deltas the fast readers must leave to the general one (8-byte and non-shortest lengths, lengths near 2^32, keys reordered or doubled, trailing bytes, seqs 0 and 2^32-1 and past) read the same either way', () => {
    const proof = { statement: fill(40, 1), signature: fill(64, 2), leaf: fill(50, 3), index: 5, path: [fill(32, 4), fill(32, 5)] }
    const good = encodeHeadProof(proof)
    const sig = good.indexOf(0x58) // 'g' value head: 0x58 0x40
    const cases: Uint8Array[] = [
      good,
      cat(good, [0]), // trailing
      cat(good.subarray(0, sig), [0x5b, 0, 0, 0, 0, 0, 0, 0, 64], good.subarray(sig + 2)), // 8-byte length
      cat(good.subarray(0, sig), [0x59, 0, 64], good.subarray(sig + 2)), // non-shortest
      cat(good.subarray(0, sig), [0x5a, 0xff, 0xff, 0xff, 0xff], good.subarray(sig + 2)), // 2^32-1 bytes claimed
      cat(good.subarray(0, sig), [0x5a, 0, 0, 1, 0], good.subarray(sig + 2)), // 65,536 bytes claimed
      encode({ s: proof.statement, g: proof.signature, i: 5, l: proof.leaf, p: proof.path }), // cborg's order anyway
      cat([0xa6], good.subarray(1), [0x61, 0x67, 0x40]), // a sixth key, 'g' again
      cat([0xa5, 0x61, 0x67, 0x40], good.subarray(sig + 66)), // empty signature
    ]
    for (const c of cases) {
      const fast = readHeadProof(c, BOUNDS)
      if (fast !== undefined) expect(plain(fast)).to.deep.equal(outcome(decodeHeadProofInGeneral, c))
      expect(outcome(decodeHeadProof, c)).to.deep.equal(outcome(decodeHeadProofInGeneral, c))
    }
    const actor = fill(BOUND_ACTOR_BYTES, 9)
    const hash = fill(32, 8)
    const leaves: Uint8Array[] = [
      encodeLeaf({ id: 'e', actor: toHex(actor), seq: 1, hash: toHex(hash) }),
      encode(['e', actor, 0, hash]),
      encode(['e', actor, 2 ** 32 - 1, hash]),
      encode(['e', actor, 2 ** 32, hash]),
      encode(['e', actor, 2 ** 53 - 1, hash]),
      encode(['', actor, 1, hash]),
      encode(['\u0000\u007f', actor, 1, hash]),
      encode(['é', actor, 1, hash]),
      encode(['x'.repeat(1024), actor, 1, hash]),
      encode(['x'.repeat(1025), actor, 1, hash]),
      encode(['e', actor.subarray(1), 1, hash]),
      cat(encode(['e', actor, 1, hash]), [0]),
      cat([0x84, 0x79, 0, 1, 0x65], encode(actor), [1], encode(hash)), // non-shortest text length
    ]
    for (const l of leaves) {
      const fast = readHeadLeaf(l, BOUND_ACTOR_BYTES, 1024)
      if (fast !== undefined) expect(plain(fast)).to.deep.equal(outcome(decodeLeafInGeneral, l))
    }
    const delta = fill(30, 0x85)
    const headed = encodeHeaded(delta, [good, good])
    const headedCases = [
      headed,
      cat(headed, [0]),
      encodeHeaded(encodeHeaded(delta, [good]), [good]), // headed inside headed
      cat(headed.subarray(0, 4), encode({ h: [good], d: delta })),
      cat(headed.subarray(0, 7), [0x5a, 0xff, 0xff, 0xff, 0xf0], headed.subarray(8)),
    ]
    for (const h of headedCases) expect(outcome(decodeHeaded, h)).to.deep.equal(outcome(decodeHeadedInGeneral, h))
  })
})
