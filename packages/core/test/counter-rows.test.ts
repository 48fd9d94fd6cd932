/**
 * The row codec's worst cases: a row value comes from any writer of a counter (and from disk),
 * so every malformed one — truncated half-way, a flipped byte, oversized, a CBOR bomb, numbers
 * out of range, names that are not peer ids — must read as "no row", fast, never as a row and
 * never as an exception. And the meta record naming counter collections may be damaged on disk.
 */
import { expect } from 'chai'
import { encode } from 'cborg'
import { classicLevelStore } from '@convergent/level'
import { automergeBackend } from '@convergent/automerge'
import { yjsBackend } from '@convergent/yjs'
import { LoopbackHub, Replica } from '../src/index.js'
import { encodeRowBody, MAX_ROW_CHARS, MAX_ROW_RECIPIENTS, parseRowKey, rowAt, rowKey, rowValue, SignedRows } from '../src/counter-rows.js'
import { silentLogger } from '../src/logger.js'
import { Keyring, signedRow } from '../src/testing/index.js'
import { tempDir } from './helpers.js'
import { verdictOf } from '../src/replication/row-guard.js'

const keys = new Keyring()
const HOLDER = 'h-holder'
const good = signedRow(keys, HOLDER, HOLDER, 's1', { version: 3, inc: 10, dec: 2, out: { other: 1 }, received: { giver: 4 } })
const at = (value: string, version = 3) => rowAt(rowKey(HOLDER, version, value), value)
const rows = () =>
  new SignedRows({ namespace: 'default', sign: async () => new Uint8Array(64), verify: async (peer, data, sig) => keys.check(peer, data, sig) })
/** A row value around a body we make up (any signature: these must fail before it counts). */
const withBody = (body: unknown) => rowValue(encode(body), new Uint8Array(64).fill(1))

describe('Counter rows: malformed values from peers and disk read as no row', () => {
  it('reads a well-formed row, and only under the key its value hashes to', () => {
    expect(at(good)?.row).to.deep.include({ version: 3, inc: 10, dec: 2 })
    expect(rowAt(rowKey(HOLDER, 3, 'another value'), good), 'key of another value').to.equal(undefined)
    expect(at(good, 4), 'key of another version').to.equal(undefined)
  })

  it('garbage half-way through, a flipped byte anywhere, a cut-off value: no row, or a row that fails its signature', async () => {
    const checker = rows()
    const damaged = [
      ...Array.from({ length: good.length - 1 }, (_, cut) => good.slice(0, cut + 1)),
      ...Array.from({ length: good.length }, (_, i) => good.slice(0, i) + (good[i] === 'A' ? 'B' : 'A') + good.slice(i + 1)),
    ]
    for (const value of damaged) {
      const key = rowKey(HOLDER, 3, value)
      await checker.check('stock', 's1', { [key]: value })
      expect(checker.verdict('stock', 's1', key, value), value).to.equal(false)
    }
    const key = rowKey(HOLDER, 3, good)
    await checker.check('stock', 's1', { [key]: good })
    expect(checker.verdict('stock', 's1', key, good), 'the intact row').to.equal(true)
  })

  it('oversized values, CBOR bombs and too many recipients: no row', () => {
    expect(at('A'.repeat(MAX_ROW_CHARS + 1) + '.AA')).to.equal(undefined)
    const bomb = rowValue(new Uint8Array(Array.from({ length: 300_000 }, () => 0x80)), new Uint8Array(64)) // 300k empty lists
    expect(at(bomb)).to.equal(undefined)
    const many = Object.fromEntries(Array.from({ length: MAX_ROW_RECIPIENTS + 1 }, (_, i) => [`p${i}`, 1]))
    expect(at(withBody({ v: 3, i: 0, d: 0, o: many, r: {} }))).to.equal(undefined)
    expect(at(withBody({ v: 3, i: 0, d: 0, o: {}, r: many }))).to.equal(undefined)
  })

  it('numbers out of range, wrong types and names that are not peer ids: no row', () => {
    const base = { v: 3, i: 1, d: 0, o: {}, r: {} }
    for (const bad of [{ i: -1 }, { d: 1.5 }, { i: 2 ** 53 }, { i: '1' }, { o: { 'a|b': 1 } }, { o: { '': 1 } }, { r: { x: -2 } }, { o: [] }, { v: 0 }])
      expect(at(withBody({ ...base, ...bad })), JSON.stringify(bad)).to.equal(undefined)
    expect(at(withBody(base))?.row, 'the same body well-formed (its signature is still wrong)').to.deep.include({ inc: 1 })
    expect(at('no dot at all'), 'no signature part').to.equal(undefined)
    // Another spelling of the same bytes (the unused low bits of the last base64 character).
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const respelled = good.slice(0, -1) + alphabet[alphabet.indexOf(good.at(-1)!) ^ 1]! // 64 signature bytes: the last character's low 4 bits are unused
    expect(Buffer.from(respelled.split('.')[1]!, 'base64url').equals(Buffer.from(good.split('.')[1]!, 'base64url')), 'the same bytes').to.equal(true)
    expect(at(respelled)).to.equal(undefined)
    expect(rowAt(rowKey(HOLDER, 3, good), 42), 'a number where a row belongs').to.equal(undefined)
  })

  it('row keys: versions past 2^53, missing hashes and other shapes are no row keys', () => {
    expect(parseRowKey(`$row|h|${'9'.repeat(17)}|0011223344556677`)).to.equal(undefined)
    expect(parseRowKey('$row|h|3')).to.equal(undefined)
    expect(parseRowKey('$row||3|0011223344556677')).to.equal(undefined)
    expect(parseRowKey('$row|h|03|0011223344556677')).to.equal(undefined)
    expect(parseRowKey('$row|a|b|3|0011223344556677')).to.deep.equal({ holder: 'a|b', version: 3, hash: '0011223344556677' })
    expect(encodeRowBody({ version: 1, inc: 0, dec: 0, out: {} }).byteLength).to.be.below(40)
  })

  it('a damaged record of counter collections on disk: the replica opens, and the counter guards again once it is opened', async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const hub = new LoopbackHub()
      const openIt = () =>
        Replica.open({
          store: classicLevelStore(dir),
          backends: [yjsBackend(), automergeBackend()],
          network: hub.createNetwork('a-admin'),
          trust: keys.trust('a-admin', ['a-admin']),
          syncIntervalMs: 0,
          logger: silentLogger,
        })
      let r = await openIt()
      await r.counter('stock').increment('s1', 5)
      await r.close()
      const store = classicLevelStore(dir)
      await store.open()
      await store.write([{ type: 'meta', key: 'counter-collections', bytes: new Uint8Array([0xff, 0x00, 0x7b]) }])
      await store.close()
      r = await openIt()
      try {
        expect(await r.counter('stock').increment('s1', 1)).to.equal(6)
      } finally {
        await r.close()
      }
    } finally {
      await cleanup()
    }
  })
})

describe('Counter rows: a change judged while operations wait (row-guard.ts verdictOf)', () => {
  const where = { collection: 'stock', id: 's1' }
  const none = { before: [], after: [] }

  it('an absent entity that stays absent while operations wait is judged later, not refused; with nothing waiting it is refused', () => {
    // A replica that missed the entity's creating change holds later changes waiting: the next
    // honest change leaves it absent too (found by the simulator, refused as forbidden before).
    expect(verdictOf(rows(), where, undefined, undefined, { before: true, after: true }, none)).to.equal('later')
    expect(verdictOf(rows(), where, undefined, undefined, { before: false, after: true }, none)).to.equal('later')
    // Nothing waits after it: a change that writes the entity and leaves it absent (review-provisional-overspend HOLE 5).
    expect(verdictOf(rows(), where, undefined, undefined, { before: true, after: false }, none)).to.have.property('refused')
    expect(verdictOf(rows(), where, undefined, undefined, { before: false, after: false }, none)).to.have.property('refused')
  })

  it('a change to an entity in view is judged now while operations wait here from before (a dangling change holds up nothing)', () => {
    const verdict = verdictOf(rows(), where, { n: 1 }, { n: 1, x: 5 }, { before: true, after: true }, none)
    expect(verdict).to.deep.equal({ refused: `counter 'stock/s1': the change writes "x", which is not a signed row` })
  })
})
