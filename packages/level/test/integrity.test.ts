/**
 * Corruption LevelDB itself reports (LEVEL_CORRUPTION: a block that does not decompress, a bad
 * entry in a block, …) is ERR_STORE_CORRUPT too, naming the record where a point read knows
 * it; and what open() makes of LevelDB's info log.
 */
import assert from 'node:assert/strict'
import { isConvergentError, StoreCorruptError } from '@convergent/core'
import { memoryLevelStore, type LevelStore } from '../src/index.js'
import { crc32 } from 'node:zlib'
import { parseInfoLog } from '../src/info-log.js'
import { openRecord, prefixSum, sealCopy } from '../src/record.js'
import { entityWrite } from './entity-ops.js'
import { collect, rejection } from './helpers.js'

/** The error classic-level raises for a Status::Corruption (binding.cc). */
function levelCorruption(): Error {
  return Object.assign(new Error('Corruption: corrupted compressed block contents'), { code: 'LEVEL_CORRUPTION' })
}

describe('LevelStore: corruption LevelDB reports', function () {
  let store: LevelStore
  beforeEach(async () => {
    store = memoryLevelStore()
    await store.open()
    await store.write(entityWrite('c', 1))
    await store.write([{ type: 'meta', key: 'm', bytes: new Uint8Array([1]) }])
  })
  afterEach(() => store.close())

  /** Makes point reads of root keys containing `needle` throw LEVEL_CORRUPTION. */
  function corruptGets(needle: string): void {
    const db = store.db as unknown as { _getSync: (key: string, options: unknown) => unknown }
    const getSync = db._getSync.bind(db)
    db._getSync = (key, options) => {
      if (String(key).includes(needle)) throw levelCorruption()
      return getSync(key, options)
    }
  }

  it('on a point read: StoreCorruptError naming the record it could not read', async function () {
    corruptGets('!deltas!')
    const err = await rejection(store.readEntity('c', 'entity-1'))
    assert.ok(err instanceof StoreCorruptError, String(err))
    assert.deepEqual({ ...err.record }, { keyspace: 'deltas', key: 'c\u0000entity-1\u00000000000000', collection: 'c', id: 'entity-1' })
    assert.match(err.message, /LevelDB could not read it: Corruption: corrupted compressed block contents/)
    corruptGets('!meta!')
    const meta = await rejection(store.getMeta('m'))
    assert.ok(meta instanceof StoreCorruptError && meta.record.keyspace === 'meta' && meta.record.key === 'm', String(meta))
    assert.notEqual(await store.getHead('c', 'entity-1'), undefined) // the rest reads on
  })

  it('on a scan: ERR_STORE_CORRUPT saying which keyspace of which collection', async function () {
    const db = store.db as unknown as { _iterator: (options: unknown) => { _nextv: unknown } }
    const iterator = db._iterator.bind(db)
    db._iterator = (options) => {
      const it = iterator(options)
      it._nextv = async () => {
        throw levelCorruption()
      }
      return it
    }
    for (const scan of [() => collect(store.heads('c')), () => collect(store.feed('c', 0)), () => collect(store.leaves('c'))]) {
      const err = await rejection(scan())
      assert.ok(isConvergentError(err, 'ERR_STORE_CORRUPT'), String(err))
      assert.match((err as Error).message, /LevelDB found the (heads|feed|leaves) of collection 'c' corrupt/)
    }
  })
})

describe("LevelDB's info log: the lines that mean damage", function () {
  it('reports dropped log records, ignored errors and other corruption; nothing for a clean recovery', function () {
    const clean = [
      '2026/12/05-16:31:22.101010 7f0a1b2c3d4e Recovering log #5',
      '2026/12/05-16:31:22.101500 7f0a1b2c3d4e Level-0 table #7: started',
      '2026/12/05-16:31:22.102000 7f0a1b2c3d4e Level-0 table #7: 19546 bytes OK',
      '2026/12/05-16:31:22.102500 7f0a1b2c3d4e Delete type=0 #5',
    ]
    assert.deepEqual(parseInfoLog(clean.join('\n')), [])
    const damaged = [
      clean[0],
      '2026/12/05-16:31:22.101200 7f0a1b2c3d4e (ignoring error) /data/db/000005.log: dropping 9123 bytes; Corruption: checksum mismatch',
      '2026/12/05-16:31:22.101300 7f0a1b2c3d4e /data/db/000005.log: dropping 12 bytes; Corruption: log record too small',
      '2026/12/05-16:31:22.101400 7f0a1b2c3d4e Ignoring error IO error: /data/db/000006.log: Permission denied',
      '2026/12/05-16:31:22.101450 7f0a1b2c3d4e Compaction error: Corruption: bad entry in block',
      ...clean.slice(1),
    ]
    assert.deepEqual(parseInfoLog(damaged.join('\n')), [
      'LevelDB dropped 9123 bytes of its write-ahead log /data/db/000005.log while recovering it (Corruption: checksum mismatch): writes acknowledged before the last shutdown may be lost',
      'LevelDB dropped 12 bytes of its write-ahead log /data/db/000005.log while recovering it (Corruption: log record too small): writes acknowledged before the last shutdown may be lost',
      'LevelDB ignored an error while recovering its write-ahead log (IO error: /data/db/000006.log: Permission denied): writes acknowledged before the last shutdown may be lost',
      'LevelDB reported corruption: Compaction error: Corruption: bad entry in block',
    ])
  })
})

describe('record format 1 (record.ts)', function () {
  it('is [1][crc32 BE of the full key as UTF-8, then the body][body], as zlib computes it over their concatenation', function () {
    const body = new Uint8Array([0, 1, 2, 250, 251])
    for (const [prefix, key] of [
      ['!meta!', 'peer-id'],
      ['!heads!', 'c\u0000beef\u0000ünïcødé 🙂'],
      ['!snapshots!', 'c\u0000'],
    ] as const) {
      const record = sealCopy(prefix + key, body)
      const expected = crc32(Buffer.concat([Buffer.from(prefix + key, 'utf8'), body]))
      assert.deepEqual([...record.subarray(0, 5)], [1, expected >>> 24, (expected >>> 16) & 0xff, (expected >>> 8) & 0xff, expected & 0xff])
      assert.deepEqual([...record.subarray(5)], [...body])
      assert.deepEqual([...openRecord(prefixSum(prefix), key, record)!], [...body])
      // Any flipped bit — in the body, the checksum, the key or the keyspace — fails the check.
      for (let i = 1; i < record.length; i++) {
        const damaged = new Uint8Array(record)
        damaged[i]! ^= 0x10
        assert.equal(openRecord(prefixSum(prefix), key, damaged), undefined, `byte ${i}`)
      }
      assert.equal(openRecord(prefixSum(prefix), key.slice(0, -1) + String.fromCharCode(key.charCodeAt(key.length - 1) ^ 1), record), undefined)
      assert.equal(openRecord(prefixSum('!deltas!'), key, record), undefined)
      assert.equal(openRecord(prefixSum(prefix), key, Uint8Array.of(2, ...record.subarray(1))), undefined) // unknown format
      assert.equal(openRecord(prefixSum(prefix), key, record.subarray(0, 4)), undefined) // too short
    }
    assert.deepEqual([...openRecord(prefixSum('!meta!'), 'empty', sealCopy('!meta!empty', new Uint8Array(0)))!], [])
  })
})
