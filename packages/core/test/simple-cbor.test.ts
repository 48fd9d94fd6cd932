// The fast CBOR reader (simple-cbor.ts) against cborg: for what our encoders write it gives the
// same values, and for any bytes at all it either gives what cborg gives or leaves them to cborg.
import { expect } from 'chai'
import { encode } from 'cborg'
import fc from 'fast-check'
import { decodeBounded, decodeWithCborg, InvalidMessageError } from '../src/replication/messages/envelope.js'
import { decodeSimple, MISS } from '../src/replication/messages/simple-cbor.js'
import { decodeHeadProof, signHeads } from '../src/trust/signed-heads.js'

/** cborg's answer, or the error it throws. */
function slow(bytes: Uint8Array, maxItems: number): { value: unknown } | { error: Error } {
  try {
    return { value: decodeWithCborg(bytes, maxItems, 'test') }
  } catch (err) {
    return { error: err as Error }
  }
}

/** Values of the kinds our messages hold. */
const asciiKey = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz_0123456789'.split('')), minLength: 0, maxLength: 8 })
const simpleValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.nat(),
    fc.maxSafeNat(),
    fc.constantFrom(0, 23, 24, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER),
    fc.uint8Array({ maxLength: 300 }),
    fc.string({ unit: 'binary-ascii', maxLength: 120 }),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 5 }),
    fc.dictionary(asciiKey, tie('value'), { maxKeys: 5 }).filter((d) => !Object.hasOwn(d, '__proto__')),
  ),
})).value

describe('simple CBOR reader', () => {
  it('reads what cborg encodes of our kinds of values, exactly as cborg decodes it', () => {
    fc.assert(
      fc.property(simpleValue, (value) => {
        const bytes = encode(value)
        const fast = decodeSimple(bytes, 1_000_000)
        expect(fast).to.not.equal(MISS)
        expect({ value: fast }).to.deep.equal(slow(bytes, 1_000_000))
      }),
      { numRuns: 500 },
    )
  })

  it('on any bytes (ours damaged, truncated, extended, or random) it gives what cborg gives, or leaves them to cborg', () => {
    const damaged = fc.oneof(
      fc.tuple(simpleValue, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([v, at, byte]) => {
        const b = encode(v).slice()
        b[at % b.length] = byte
        return b
      }),
      fc.tuple(simpleValue, fc.nat()).map(([v, cut]) => {
        const b = encode(v)
        return b.subarray(0, cut % b.length)
      }),
      fc.tuple(simpleValue, fc.uint8Array({ minLength: 1, maxLength: 4 })).map(([v, tail]) => new Uint8Array([...encode(v), ...tail])),
      fc.uint8Array({ maxLength: 64 }),
    )
    fc.assert(
      fc.property(damaged, fc.integer({ min: 1, max: 40 }), (bytes, maxItems) => {
        const fast = decodeSimple(bytes, maxItems)
        if (fast === MISS) return
        expect(slow(bytes, maxItems)).to.deep.equal({ value: fast })
      }),
      { numRuns: 3000 },
    )
  })

  it('leaves to cborg what it does not read: floats, negatives, tags, non-ASCII text, long forms, duplicate and __proto__ keys, too many items', () => {
    const misses: Uint8Array[] = [
      encode(1.5),
      encode(-1),
      encode('é'),
      new Uint8Array([0x18, 0x05]), // 5 in a long form
      new Uint8Array([0xa2, 0x61, 0x61, 0x01, 0x61, 0x61, 0x02]), // { a: 1, a: 2 }
      new Uint8Array([0xa1, 0x69, ...new TextEncoder().encode('__proto__'), 0x01]),
      new Uint8Array([0xc1, 0x01]), // a tag
      new Uint8Array([0x9f, 0xff]), // indefinite length
      new Uint8Array([0xf7]), // undefined
    ]
    for (const bytes of misses) expect(decodeSimple(bytes, 100), Buffer.from(bytes).toString('hex')).to.equal(MISS)
    expect(decodeSimple(encode([1, 2, 3]), 3)).to.equal(MISS) // 4 items: the list and its three
    expect(() => decodeBounded(encode([1, 2, 3]), 3, 'test')).to.throw(/more than 3 items/)
    expect(decodeBounded(encode([1, 2, 3]), 4, 'test')).to.deep.equal([1, 2, 3])
  })

  it("a map key '__proto__' is an own key like any other, never the decoded object's prototype (a peer's fields inherited) — and a map key that is not text is refused", () => {
    const key = [0x69, ...new TextEncoder().encode('__proto__')]
    const nested = decodeBounded(new Uint8Array([0xa1, ...key, 0xa1, 0x61, 0x78, 0x01]), 100, 'test') as Record<string, unknown>
    expect(Object.getPrototypeOf(nested)).to.equal(Object.prototype)
    expect(nested['x'], 'no field inherited from the peer').to.equal(undefined)
    expect(Object.keys(nested)).to.deep.equal(['__proto__'])
    expect(Object.getOwnPropertyDescriptor(nested, '__proto__')?.value).to.deep.equal({ x: 1 })
    const scalar = decodeBounded(new Uint8Array([0xa2, 0x61, 0x61, 0x01, ...key, 0x05]), 100, 'test') as Record<string, unknown>
    expect(Object.entries(scalar)).to.deep.equal([
      ['a', 1],
      ['__proto__', 5],
    ])
    expect(() => decodeBounded(new Uint8Array([0xa1, 0x01, 0x02]), 100, 'test')).to.throw(InvalidMessageError, /not text/)
  })

  it('nesting past what any message holds is refused, also on the path through cborg (past the fast reader’s depth), and within it maps come out as plain objects', () => {
    const nested = (depth: number, inner: number[]) => new Uint8Array([...Array<number>(depth).fill(0x81), ...inner])
    expect(() => decodeBounded(nested(300, [0x01]), 1_000, 'test')).to.throw(InvalidMessageError, /nested more than 256 deep/)
    let value = decodeBounded(nested(200, [0xa1, 0x61, 0x61, 0x01]), 1_000, 'test')
    for (let i = 0; i < 200; i++) value = (value as unknown[])[0]
    expect(value).to.deep.equal({ a: 1 })
    expect(Object.getPrototypeOf(value)).to.equal(Object.prototype)
  })

  it('reads a head proof (what a catch-up decodes per entity) without cborg, copying its bytes as cborg does', async () => {
    const leaves = [{ id: 'product-1', actor: 'ab'.repeat(24), seq: 3, hash: 'cd'.repeat(32) }]
    const signed = await signHeads(
      { namespace: 'ns', collection: 'products', author: 'peer', time: 1_790_000_000_000 },
      [...leaves, { ...leaves[0]!, id: 'p2' }],
      async () => new Uint8Array(64).fill(7),
    )
    const record = signed.proofs[0]!
    const fast = decodeSimple(record, 100) as Record<string, Uint8Array>
    expect(fast).to.not.equal(MISS)
    expect(fast).to.deep.equal((slow(record, 100) as { value: unknown }).value)
    expect(fast.s!.buffer).to.not.equal(record.buffer) // a copy, not a view of the record
    expect(decodeHeadProof(record).index).to.equal(0)
  })
})
