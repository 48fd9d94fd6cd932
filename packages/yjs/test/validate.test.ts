import assert from 'node:assert/strict'
import fc from 'fast-check'
import * as Y from 'yjs'
import { validateUpdate } from '../src/validate.js'
import { ROOT_NAMES } from '../src/schema.js'
import { yjsBackend } from '../src/index.js'
import { mutatedUpdates } from './fuzz-updates.js'

/**
 * The reference: what validateUpdate accepted when it decoded with Yjs' own reader (the lazy
 * struct reader behind Y.decodeUpdate) and checked the structs it built — plus the rules the
 * scan added since: no struct of length 0, value slots hold JSON scalars only, clocks stay
 * under 2^53, a Y.Map means a Y.Map (the old check let Y.XmlHook, a subclass, through), no
 * reference to a later struct of the referring struct's own client, a map entry named with its
 * key holds one value, and no client listed twice. The field-by-field scan must accept and
 * reject exactly the same bytes.
 */
function acceptedByYjsDecoder(bytes: Uint8Array, allowEmpty: boolean): boolean {
  if (bytes.byteLength === 0) return false
  let reader: { pos: number } | undefined
  const groups: number[] = []
  class Tracked extends Y.UpdateDecoderV1 {
    constructor(decoder: ConstructorParameters<typeof Y.UpdateDecoderV1>[0]) {
      super(decoder)
      reader = decoder
    }

    // Called once per client group of structs (ids and the delete set read theirs otherwise).
    override readClient(): number {
      const client = super.readClient()
      groups.push(client)
      return client
    }
  }
  let decoded: ReturnType<typeof Y.decodeUpdate>
  try {
    decoded = Y.decodeUpdateV2(bytes.slice(), Tracked)
  } catch {
    return false
  }
  if (reader?.pos !== bytes.byteLength) return false
  if (!allowEmpty && decoded.structs.length === 0 && decoded.ds.clients.size === 0) return false
  if (new Set(groups).size !== groups.length) return false
  for (const struct of decoded.structs) {
    if (struct.id.client > 0xffffffff) return false
    if (struct.length === 0 || struct.id.clock + struct.length > Number.MAX_SAFE_INTEGER) return false
    if (!(struct instanceof Y.Item)) continue
    const parent: unknown = struct.parent
    for (const ref of [struct.origin, struct.rightOrigin, parent instanceof Y.ID ? parent : null]) {
      if (ref !== null && ref.client === struct.id.client && ref.clock >= struct.id.clock) return false
    }
    const content: unknown = struct.content
    if (content instanceof Y.ContentAny && !content.arr.every((v) => v === null || ['boolean', 'number', 'string'].includes(typeof v))) return false
    if (content instanceof Y.ContentAny && struct.parentSub !== null && content.arr.length !== 1) return false
    const known =
      content instanceof Y.ContentAny ||
      content instanceof Y.ContentDeleted ||
      (content instanceof Y.ContentType && (content.type.constructor === Y.Map || content.type.constructor === Y.Array))
    if (!known) return false
    if (typeof struct.parent === 'string' && !ROOT_NAMES.has(struct.parent)) return false
  }
  for (const [client, items] of decoded.ds.clients) {
    if (client > 0xffffffff) return false
    let end = -1
    for (const item of items) {
      if (item.len <= 0 || item.clock < end) return false
      end = item.clock + item.len
      if (end > Number.MAX_SAFE_INTEGER) return false
    }
  }
  return true
}

function accepted(bytes: Uint8Array, allowEmpty: boolean): boolean {
  try {
    validateUpdate(bytes, allowEmpty)
    return true
  } catch (err) {
    assert.equal((err as { code?: string }).code, 'ERR_INVALID_DELTA')
    return false
  }
}

const backend = yjsBackend()
const json: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.integer(),
    fc.string(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 3 }),
    fc.dictionary(fc.string({ maxLength: 3 }), tie('value'), { maxKeys: 3 }),
  ),
})).value

/** Updates this backend writes: puts, overwrites and deletes by one or two writers, merged or not. */
const ownUpdate = fc
  .tuple(fc.array(fc.dictionary(fc.string({ maxLength: 4 }), json, { maxKeys: 4 }), { minLength: 1, maxLength: 3 }), fc.boolean(), fc.boolean())
  .map(([values, remove, whole]) => {
    const doc = backend.create(Uint8Array.of(0, 0, 0, 7, ...new Array(12).fill(0)))
    const deltas: Uint8Array[] = []
    const keep = (delta: Uint8Array | null): void => {
      if (delta !== null) deltas.push(delta)
    }
    for (const value of values) keep(backend.put(doc, value as never).delta)
    if (remove) keep(backend.delete(doc).delta)
    return whole || deltas.length === 0 ? backend.save(doc) : deltas[deltas.length - 1]!
  })

/** Updates of other shapes: text, XML, other roots, binary and embedded documents. */
const foreignUpdate = fc.constantFrom(
  ...[
    (d: Y.Doc) => d.getText('value').insert(0, 'hi'),
    (d: Y.Doc) => d.getMap('elsewhere').set('a', 1),
    (d: Y.Doc) => d.getMap('value').set('b', new Uint8Array([1, 2])),
    (d: Y.Doc) => d.getMap('value').set('x', new Y.XmlElement('p')),
    (d: Y.Doc) => d.getMap('value').set('t', new Y.Text('t')),
    (d: Y.Doc) => d.getMap('value').set('doc', new Y.Doc()),
    (d: Y.Doc) => d.getArray('value').insert(0, [new Y.XmlText('x')]),
    (d: Y.Doc) => d.getMap('value').set('nested', { a: [1, { b: 2 }] }),
    (d: Y.Doc) => d.getArray('value').insert(0, [[1, 2], { a: 1 }]),
    (d: Y.Doc) => d.getMap('value').set('hook', new Y.XmlHook('h')),
  ].map((write) => {
    const doc = new Y.Doc()
    write(doc)
    return Y.encodeStateAsUpdate(doc)
  }),
)

/** Damage: a byte changed, the end cut off, bytes added or inserted, or nothing. */
const damaged = (update: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> =>
  fc.tuple(update, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('keep', 'set', 'truncate', 'append', 'insert')).map(([bytes, at, byte, how]) => {
    const i = bytes.byteLength === 0 ? 0 : at % bytes.byteLength
    switch (how) {
      case 'keep':
        return bytes
      case 'set': {
        const copy = bytes.slice()
        if (copy.byteLength > 0) copy[i] = byte
        return copy
      }
      case 'truncate':
        return bytes.subarray(0, i)
      case 'append':
        return Uint8Array.of(...bytes, byte)
      default:
        return Uint8Array.of(...bytes.subarray(0, i), byte, ...bytes.subarray(i))
    }
  })

describe('yjs validateUpdate', function () {
  it('accepts every update this backend writes', function () {
    fc.assert(
      fc.property(ownUpdate, (bytes) => accepted(bytes, true)),
      { numRuns: 300 },
    )
  })

  it("accepts and rejects exactly what a check over Yjs' own decoder does, on damaged and foreign updates", function () {
    fc.assert(
      fc.property(damaged(fc.oneof(ownUpdate, foreignUpdate)), fc.boolean(), (bytes, allowEmpty) => {
        assert.equal(accepted(bytes, allowEmpty), acceptedByYjsDecoder(bytes, allowEmpty))
      }),
      { numRuns: 3000 },
    )
  })

  it("accepts and rejects exactly what the check over Yjs' decoder does, on real updates taken apart, changed and put together again", function () {
    // Struct by struct (origins, parents, keys, content, clocks, clients, the delete set): these
    // reach the rules about references and map entries far more often than damaged bytes do.
    fc.assert(
      fc.property(fc.noShrink(fc.integer()), (seed) => {
        for (const bytes of mutatedUpdates(seed, 20))
          assert.equal(accepted(bytes, false), acceptedByYjsDecoder(bytes, false), Buffer.from(bytes).toString('hex'))
      }),
      { numRuns: 100 },
    )
  })

  it("rejects random bytes as Yjs' decoder does", function () {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        assert.equal(accepted(bytes, false), acceptedByYjsDecoder(bytes, false))
      }),
      { numRuns: 3000 },
    )
  })

  it('rejects a struct of length 0, which would share its clock with the next (replicas could differ under equal versions)', function () {
    // An empty value item, then another item of the same client at the same clock.
    const bytes = Buffer.from('0103050028010576616c75650161002801046d6574610764656c65746564017928010576616c75650162017d0100', 'hex')
    assert.throws(() => validateUpdate(bytes), /length 0/)
  })

  it('rejects nested values in a value slot without reading them, however deep', function () {
    const deep = (depth: number): Uint8Array => {
      const doc = new Y.Doc()
      let value: unknown = 1
      for (let i = 0; i < depth; i++) value = [value]
      doc.getMap('value').set('v', value)
      return Y.encodeStateAsUpdate(doc)
    }
    assert.throws(() => validateUpdate(deep(1)), /only JSON scalars/)
    // Past the depth at which lib0's recursive reader runs out of stack.
    const bytes = Buffer.concat([deep(1).subarray(0, -3), Buffer.alloc(20_000, 117 /* array */)])
    assert.throws(() => validateUpdate(bytes), /only JSON scalars/)
  })

  it("accepts a client group without structs whatever its id, as Yjs' reader does", function () {
    assert.doesNotThrow(() => validateUpdate(Buffer.from('02008080808010808080801000028001010200', 'hex'), true))
  })

  it('rejects foreign content, an empty delta and trailing bytes with a reason', function () {
    const text = new Y.Doc()
    text.getText('value').insert(0, 'hi')
    assert.throws(() => validateUpdate(Y.encodeStateAsUpdate(text)), /content of kind 4/)
    assert.throws(() => validateUpdate(Y.encodeStateAsUpdate(new Y.Doc())), /carries no operation/)
    assert.doesNotThrow(() => validateUpdate(Y.encodeStateAsUpdate(new Y.Doc()), true))
    const own = backend.put(backend.create(new Uint8Array(16).fill(1)), { a: 1 }).delta!
    assert.throws(() => validateUpdate(Uint8Array.of(...own, 0)), /bytes after the end/)
  })
})
