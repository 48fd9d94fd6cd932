// Second review of head tables (after the fixes of review-head-table.test.ts). Each "HOLE n"
// was a hole the review found; its test now asserts the fix. "probe (held)" tests are attacks
// that held. Numbers in the titles: one run on the review machine (median of 5).
import { expect } from 'chai'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { decodeMessage, InvalidMessageError } from '../src/replication/messages/envelope.js'
import { type HeadTable } from '../src/replication/messages/head-table.js'
import { decodeDeltasRequest, decodeRangeResponse, encodeDeltasRequest, encodeRangeResponse } from '../src/replication/messages/sync.js'
import { leafHash, merkleTree, rebuildRoot } from '../src/trust/merkle.js'
import { encodeStatement } from '../src/trust/signed-heads.js'

const LIMIT = 4 * 1024 * 1024
const SIG = new Uint8Array(64).fill(7)

/** Median ms of `runs` calls of `f` and its last result (an exception's message). */
function timed<T>(f: () => T, runs = 5): { ms: number; result: T | string } {
  const times: number[] = []
  let result: T | string = ''
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint()
    try {
      result = f()
    } catch (err) {
      result = (err as Error).message
    }
    times.push(Number(process.hrtime.bigint() - t) / 1e6)
  }
  return { ms: times.sort((a, b) => a - b)[runs >> 1]!, result }
}

function heldBytes(entries: [string, unknown][]): number {
  return entries.reduce((n, [, d]) => n + (d instanceof Uint8Array ? d.byteLength : 0), 0)
}

const ids = (n: number): [string, Uint8Array][] => Array.from({ length: n }, (_, i) => [`e${i}`, new Uint8Array(0)])

/** A statement (fake signature) over `count` empty leaves: every leaf of it rebuilds with no hash. */
function dense(count: number): Uint8Array {
  const { root } = merkleTree(Array.from({ length: count }, () => leafHash(new Uint8Array(0))))
  return encodeStatement({ namespace: 'default', collection: 'notes', author: 'x', time: 1, root, count })
}

describe('review 2: head tables after the fixes', function () {
  this.timeout(120_000)

  it('HOLE 1 (fixed): a 24 KB DeltasRequest (1,024 bare entries, one dense row of 2,112 empty leaves) costs ~70 ms and ~1.2 MB to unpack; it is now charged to the entry rate first, each head of its table as an entry (3,136 here), and a member over its rate is refused before any head is rebuilt', () => {
    const entries = ids(1024)
    const table: HeadTable = [[dense(2112), SIG, Array.from({ length: 2112 }, (_, i): [number, Uint8Array, number] => [i % 1024, new Uint8Array(0), i]), []]]
    const message = encodeDeltasRequest({ collection: 'notes', backend: 'automerge', entries, table })
    expect(message.byteLength).to.be.below(30_000)
    const unpacked = timed(() => decodeDeltasRequest(decodeMessage(message, LIMIT).body).entries)
    expect(heldBytes(unpacked.result as [string, unknown][])).to.be.above(1_000_000)
    // Over the rate: refused at the charge, before the table is unpacked.
    const charged: number[] = []
    const refused = timed(() =>
      decodeDeltasRequest(decodeMessage(message, LIMIT).body, (n) => {
        charged.push(n)
        throw new InvalidMessageError('over the inbound entry rate')
      }),
    )
    expect(refused.result).to.equal('invalid message: over the inbound entry rate')
    expect(charged[0]).to.equal(1024 + 2112)
    expect(refused.ms, `refused ${refused.ms} ms, unpacked ${unpacked.ms} ms`).to.be.below(unpacked.ms / 3)
    // The server charges through decodeDeltasRequest's admit, not after it.
    const server = readFileSync(fileURLToPath(new URL('../../src/replication/sync-server.ts', import.meta.url)), 'utf8')
    const handler = server.slice(server.indexOf('case MessageType.DeltasRequest: {'))
    expect(handler.slice(0, handler.indexOf('applyAll'))).to.match(
      /decodeDeltasRequest\(body, \(entries\) => \{\s+if \(!this\.limiter\.takeEntries\(from, entries\)\)/,
    )
  })

  it('probe (held, but ~40x work per byte): a 97 KB RangeResponse (4,096 entries, 8,192 dense leaves) costs ~350 ms and ~4.6 MB — bounded by maxTableLeaves, the same work as an honest full batch of 8,192 heads and as the verifyInclusion those heads cost anyway; the responder only sends what the client asked for', () => {
    const s = dense(4096)
    const entries = ids(4096)
    const table: HeadTable = [0, 1].map((): HeadTable[number] => [
      s,
      SIG,
      Array.from({ length: 4096 }, (_, i): [number, Uint8Array, number] => [i, new Uint8Array(0), i]),
      [],
    ])
    const message = encodeRangeResponse({ entries, table })
    const r = timed(() => decodeRangeResponse(decodeMessage(message, LIMIT).body).entries, 3)
    console.log(`      RangeResponse ${message.byteLength} B: ${r.ms.toFixed(1)} ms, ${heldBytes(r.result as [string, unknown][])} B held`)
    expect(r.result).to.be.an('array')
    // One leaf more than maxTableLeaves(4096) = 8,256 is refused.
    const over: HeadTable = [...table, [dense(65), SIG, Array.from({ length: 65 }, (_, i): [number, Uint8Array, number] => [i, new Uint8Array(0), i]), []]]
    expect(() => decodeRangeResponse(decodeMessage(encodeRangeResponse({ entries, table: over }), LIMIT).body)).to.throw(
      InvalidMessageError,
      /more than 8256 leaves/,
    )
  })

  it('probe (held): sparse rows — 7,000 rows of one leaf each with 12 hashes in a 4,096-leaf tree, 3.9 MB — cost ~0.1 ms a head (rebuild ~40 µs, encodeHeadProof ~22 µs); without a table the same heads as full proofs cost the same verifyInclusion hashing, so ~2x at most', () => {
    const entries = ids(4096)
    const table: HeadTable = []
    for (let i = 0; i < 7000; i++) {
      const hashes = Array.from({ length: 12 }, () => randomBytes(32))
      const index = (i * 331) % 4096
      const rebuilt = rebuildRoot(4096, [{ index, hash: leafHash(new Uint8Array(0)) }], hashes)
      if ('refused' in rebuilt) throw new Error(rebuilt.refused)
      table.push([
        encodeStatement({ namespace: 'default', collection: 'notes', author: 'x', time: 1, root: rebuilt.root, count: 4096 }),
        SIG,
        [[i % 4096, new Uint8Array(0), index]],
        hashes,
      ])
    }
    const message = encodeRangeResponse({ entries, table })
    expect(message.byteLength).to.be.below(LIMIT)
    const r = timed(() => decodeRangeResponse(decodeMessage(message, LIMIT).body).entries, 1)
    console.log(`      sparse RangeResponse ${message.byteLength} B: ${r.ms.toFixed(1)} ms (${((r.ms * 1000) / 7000).toFixed(0)} µs a head)`)
    expect(r.result).to.be.an('array')
  })

  it('probe (held): rows with no leaves and 3,000 hashes each (40 rows, 4 MB, 120k items) are refused at the first row ("no leaves") after ~100 ms of CBOR decoding and asHash — the cost of the 200,000-item bound (~1 µs an item), no more: rebuildRoot is never reached', () => {
    const table: HeadTable = Array.from({ length: 40 }, (): HeadTable[number] => [dense(1), SIG, [], Array.from({ length: 3000 }, () => randomBytes(32))])
    const message = encodeRangeResponse({ entries: ids(10), table })
    const r = timed(() => decodeRangeResponse(decodeMessage(message, LIMIT).body), 3)
    console.log(`      ${message.byteLength} B of empty rows: ${r.ms.toFixed(1)} ms, ${typeof r.result === 'string' ? r.result : 'decoded'}`)
    expect(r.result).to.match(/no leaves/)
  })

  it('probe (held): the 16 MB rebuilt-bytes bound is summed before any proof is made — 2,500 leaves of 1,200 bytes under a 2.3 KB statement (3 MB) rebuild 10 MB, allowed; 3,000 under a 3.9 KB statement (3.6 MB message) would be ~17 MB and are refused before any is made (honest batches stay far below: ≤ 8,256 heads of ~0.7 KB at default sizes, ~6 MB)', () => {
    const leaf = new Uint8Array(1200)
    const long = (count: number, pad = 1000): Uint8Array => {
      const { root } = merkleTree(Array.from({ length: count }, () => leafHash(leaf)))
      return encodeStatement({ namespace: 'n'.repeat(pad), collection: 'c'.repeat(pad), author: 'a'.repeat(256), time: 1, root, count })
    }
    const rowOf = (count: number, pad = 1000): HeadTable => [
      [long(count, pad), SIG, Array.from({ length: count }, (_, i): [number, Uint8Array, number] => [i, leaf, i]), []],
    ]
    const ok = timed(() => decodeRangeResponse(decodeMessage(encodeRangeResponse({ entries: ids(4096), table: rowOf(2500) }), LIMIT).body).entries, 1)
    expect(heldBytes(ok.result as [string, unknown][])).to.be.within(8e6, 16 * 1024 * 1024)
    const message = encodeRangeResponse({ entries: ids(4096), table: rowOf(3000, 1800) })
    const refused = timed(() => decodeRangeResponse(decodeMessage(message, LIMIT).body), 1)
    expect(refused.result).to.match(/would rebuild \d+ bytes/)
  })
})
