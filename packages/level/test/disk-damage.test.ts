/**
 * Damage on a real disk (classic-level): bytes flipped inside LevelDB's own files, as a bad
 * disk or a bad copy would flip them. LevelDB as classic-level runs it verifies no block
 * checksum on reads, so before records carried checksums these reads served the damaged bytes.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import assert from 'node:assert/strict'
import { isConvergentError, leafOf, sha256, StoreCorruptError, toHex, type StoreOp } from '@convergent/core'
import { classicLevelStore, type ClassicLevelStoreOptions } from '../src/index.js'
import { entityDelta, entityHead, entityId } from './entity-ops.js'
import { forkStoreChild, type StoreChild } from './fork-child.js'
import { putRaw, rawRecords, rejection } from './helpers.js'

/** Writes, then closes and opens once more: LevelDB's recovery turns the log into a level-0 .ldb table. */
async function writeIntoTable(dir: string, ops: StoreOp[], options: ClassicLevelStoreOptions = {}): Promise<void> {
  let store = classicLevelStore(dir, options)
  await store.open()
  await store.write(ops)
  await store.close()
  store = classicLevelStore(dir, options)
  await store.open()
  await store.close()
}

/**
 * Flips one bit of the byte `at` past `marker` in the one .ldb table that holds it. The values
 * around markers are random, so their blocks do not compress and the bytes are there as written.
 */
async function flipInTable(dir: string, marker: Uint8Array, at: number): Promise<void> {
  const found: string[] = []
  for (const name of (await readdir(dir)).filter((n) => n.endsWith('.ldb'))) {
    const bytes = await readFile(join(dir, name))
    const i = bytes.indexOf(marker)
    if (i < 0) continue
    assert.equal(bytes.indexOf(marker, i + 1), -1, 'the marker is in the table twice')
    bytes[i + at]! ^= 1
    await writeFile(join(dir, name), bytes)
    found.push(name)
  }
  assert.equal(found.length, 1, `the marker is in ${found.length} .ldb tables (${(await readdir(dir)).join(', ')}), not in exactly one`)
}

function randomValue(size: number, marker: Uint8Array, at: number): Uint8Array {
  const value = new Uint8Array(randomBytes(size))
  value.set(marker, at)
  return value
}

/** The store's format record, full key. */
const FORMAT = '!store!format'

const head = (seed: string, deltaCount: number, versionHash = sha256(seed)) => ({ backend: 'yjs', versionHash, deltaCount, deleted: false })

describe('LevelStore on disk: a flipped byte inside an .ldb table', function () {
  this.timeout(30_000)
  let dir: string
  beforeEach(async () => (dir = await mkdtemp(join(tmpdir(), 'convergent-ldb-'))))
  afterEach(() => rm(dir, { recursive: true, force: true }))

  /** Entities whose values are random (incompressible): 'bystander-k' must stay readable. */
  function bystanders(): StoreOp[] {
    const ops: StoreOp[] = []
    for (let k = 0; k < 5; k++) {
      const id = `bystander-${k}`
      ops.push(
        { type: 'snapshot', collection: 'c', id, bytes: new Uint8Array(randomBytes(2000)) },
        { type: 'delta', collection: 'c', id, index: 0, bytes: new Uint8Array(randomBytes(500)) },
        { type: 'head', collection: 'c', id, head: head(id, 1, new Uint8Array(randomBytes(32))) },
      )
    }
    return ops
  }

  async function expectBystandersReadable(store: ReturnType<typeof classicLevelStore>): Promise<void> {
    for (let k = 0; k < 5; k++) assert.notEqual(await store.readEntity('c', `bystander-${k}`), undefined)
  }

  it('in a snapshot or a delta: readEntity rejects with ERR_STORE_CORRUPT naming the entity and the record (was: served the flipped bytes)', async function () {
    const snapMarker = new Uint8Array(randomBytes(16))
    const deltaMarker = new Uint8Array(randomBytes(16))
    const snapshot = randomValue(3000, snapMarker, 1000)
    const delta = randomValue(1500, deltaMarker, 700)
    await writeIntoTable(dir, [
      ...bystanders(),
      { type: 'snapshot', collection: 'c', id: 'snap-victim', bytes: snapshot },
      { type: 'delta', collection: 'c', id: 'snap-victim', index: 0, bytes: new Uint8Array(randomBytes(300)) },
      { type: 'head', collection: 'c', id: 'snap-victim', head: head('s', 1) },
      { type: 'delta', collection: 'c', id: 'delta-victim', index: 0, bytes: new Uint8Array(randomBytes(300)) },
      { type: 'delta', collection: 'c', id: 'delta-victim', index: 1, bytes: delta },
      { type: 'head', collection: 'c', id: 'delta-victim', head: head('d', 2) },
    ])
    await flipInTable(dir, snapMarker, 5)
    await flipInTable(dir, deltaMarker, 9)

    const store = classicLevelStore(dir)
    await store.open()
    try {
      const snapErr = await rejection(store.readEntity('c', 'snap-victim'))
      assert.ok(snapErr instanceof StoreCorruptError && isConvergentError(snapErr, 'ERR_STORE_CORRUPT'), String(snapErr))
      assert.deepEqual({ ...snapErr.record }, { keyspace: 'snapshots', key: 'c\u0000snap-victim', collection: 'c', id: 'snap-victim' })
      assert.match(snapErr.message, /entity 'snap-victim' of 'c'/)

      const deltaErr = await rejection(store.readEntity('c', 'delta-victim'))
      assert.ok(deltaErr instanceof StoreCorruptError, String(deltaErr))
      assert.deepEqual({ ...deltaErr.record }, { keyspace: 'deltas', key: 'c\u0000delta-victim\u00000000000001', collection: 'c', id: 'delta-victim' })
      await expectBystandersReadable(store)

      // Moved aside, the damaged records are met no more; the rest of each entity is still there.
      await store.quarantine(snapErr.record)
      await store.quarantine(deltaErr.record)
      assert.equal((await store.readEntity('c', 'snap-victim'))!.snapshot, undefined)
      assert.equal(isConvergentError(await rejection(store.readEntity('c', 'delta-victim')), 'ERR_STORE_CORRUPT'), true) // delta 1 is missing now: damage too
      const kept = []
      for await (const record of store.quarantined()) kept.push(record)
      // (Oldest first: both moved within the same millisecond, they come in key order.)
      assert.deepEqual(kept.map((r) => [r.keyspace, r.key]).sort(), [
        ['deltas', 'c\u0000delta-victim\u00000000000001'],
        ['snapshots', 'c\u0000snap-victim'],
      ])
      // What was stored, damage and all, for forensics: the body is the snapshot with one bit off.
      const body = kept.find((r) => r.keyspace === 'snapshots')!.bytes!.subarray(5)
      assert.equal(body.length, snapshot.length)
      assert.equal(body.filter((b, i) => b !== snapshot[i]).length, 1)
    } finally {
      await store.close()
    }
  })

  it('in a head: getHead, readEntity and heads() reject with ERR_STORE_CORRUPT naming the entity (was: served a wrong version hash)', async function () {
    const hash = new Uint8Array(randomBytes(32)) // the marker: the head's version hash
    await writeIntoTable(dir, [...bystanders(), { type: 'head', collection: 'c', id: 'head-victim', head: head('h', 0, hash) }])
    await flipInTable(dir, hash.subarray(0, 16), 20)

    let store = classicLevelStore(dir)
    await store.open()
    try {
      const expected = {
        keyspace: 'heads',
        key: `c\u0000${leafOf('head-victim').toString(16).padStart(4, '0')}\u0000head-victim`,
        collection: 'c',
        id: 'head-victim',
      }
      for (const read of [
        () => store.getHead('c', 'head-victim'),
        () => store.readEntity('c', 'head-victim'),
        async () => {
          for await (const _ of store.heads('c'));
        },
      ]) {
        const err = await rejection(read())
        assert.ok(err instanceof StoreCorruptError, String(err))
        assert.deepEqual({ ...err.record }, expected)
      }
      await expectBystandersReadable(store)
      await store.quarantine(expected)
      assert.equal(await store.getHead('c', 'head-victim'), undefined)
      const listed = []
      for await (const [id] of store.heads('c')) listed.push(id)
      assert.deepEqual(
        listed.sort(),
        [0, 1, 2, 3, 4].map((k) => `bystander-${k}`),
      )
      await store.close()
      store = classicLevelStore(dir) // and it stays so
      await store.open()
      assert.equal(await store.getHead('c', 'head-victim'), undefined)
      await expectBystandersReadable(store)
    } finally {
      await store.close()
    }
  })
})

/**
 * The data blocks of a LevelDB table written without compression (table/format.h): the block
 * handles in its index block, which the 48-byte footer points to. Each block is followed by a
 * 5-byte trailer: [compression type][crc32c] — LevelDB does not check the crc on reads here.
 */
function dataBlocks(table: Uint8Array): { offset: number; size: number }[] {
  const varint = (at: number): [number, number] => {
    let value = 0
    for (let shift = 0; ; shift += 7) {
      const b = table[at++]!
      value += (b & 0x7f) * 2 ** shift
      if ((b & 0x80) === 0) return [value, at]
    }
  }
  let at = table.length - 48
  ;[, at] = varint(at) // metaindex handle: offset, size
  ;[, at] = varint(at)
  const [indexOffset, next] = varint(at)
  const [indexSize] = varint(next)
  assert.equal(table[indexOffset + indexSize], 0, 'the index block is compressed')
  const restarts = new DataView(table.buffer, table.byteOffset).getUint32(indexOffset + indexSize - 4, true)
  const end = indexOffset + indexSize - 4 * (restarts + 1)
  const blocks: { offset: number; size: number }[] = []
  for (let p = indexOffset; p < end;) {
    let nonShared: number
    let valueLength: number
    ;[, p] = varint(p) // shared key bytes
    ;[nonShared, p] = varint(p)
    ;[valueLength, p] = varint(p)
    p += nonShared
    const [offset, q] = varint(p)
    const [size] = varint(q)
    blocks.push({ offset, size })
    p += valueLength
  }
  return blocks
}

describe('LevelStore on disk: a table block LevelDB itself cannot decode', function () {
  this.timeout(30_000)
  let dir: string
  beforeEach(async () => (dir = await mkdtemp(join(tmpdir(), 'convergent-block-'))))
  afterEach(() => rm(dir, { recursive: true, force: true }))

  it('(its trailer now says snappy) the point read that needs it rejects with ERR_STORE_CORRUPT naming the record, a scan with ERR_STORE_CORRUPT; quarantine() still removes the record', async function () {
    await undecodableHeadBlock(dir)

    const store = classicLevelStore(dir)
    await store.open()
    try {
      const key = `c\u0000${leafOf('e').toString(16).padStart(4, '0')}\u0000e`
      for (const read of [() => store.getHead('c', 'e'), () => store.readEntity('c', 'e')]) {
        const err = await rejection(read())
        assert.ok(err instanceof StoreCorruptError, String(err))
        assert.deepEqual({ ...err.record }, { keyspace: 'heads', key, collection: 'c', id: 'e' })
        assert.match(err.message, /LevelDB could not read it: Corruption: /)
      }
      const scan = await rejection(
        (async () => {
          for await (const _ of store.heads('c'));
        })(),
      )
      assert.ok(isConvergentError(scan, 'ERR_STORE_CORRUPT') && !(scan instanceof StoreCorruptError), String(scan))
      // The meta record shares the head's block (key order: heads, meta); the collection
      // record sits in the first block, with the delta: readable.
      const meta = await rejection(store.getMeta('m'))
      assert.ok(meta instanceof StoreCorruptError && meta.record.keyspace === 'meta' && meta.record.key === 'm', String(meta))
      assert.deepEqual(await store.collections(), new Map([['c', { backend: 'yjs' }]]))

      await store.quarantine({ keyspace: 'heads', key, collection: 'c', id: 'e' })
      assert.equal(await store.getHead('c', 'e'), undefined)
      const kept = []
      for await (const record of store.quarantined()) kept.push(record)
      assert.equal(kept.length, 1)
      assert.equal(kept[0]!.bytes, undefined) // LevelDB could not read them
      assert.match(kept[0]!.error!, /Corruption: /)
    } finally {
      await store.close()
    }
  })

  it("with the store's 'format' record damaged too: the records read beside it to tell the format (format.ts, probe) pass the undecodable block — open() takes the folder as the current format and says so in damage (was: open() rejected, the whole folder refused for one block)", async function () {
    await undecodableHeadBlock(dir, async () => {
      // The format record flipped (written to the log: the table keeps the old one, shadowed).
      const format = (await rawRecords(dir)).get(FORMAT)!
      const flipped = new Uint8Array(format)
      flipped[flipped.length - 1]! ^= 1
      await putRaw(dir, [[FORMAT, flipped]])
    })

    const store = classicLevelStore(dir)
    await store.open()
    try {
      assert.equal(store.damage.length, 2, store.damage.join(' | '))
      assert.match(store.damage.join(' '), /LevelDB could not read records of the .*heads.* keyspaces .*Corruption: /)
      assert.match(store.damage.join(' '), /format record \('format' in the store keyspace\) failed its check.*taken as store format/)
      assert.deepEqual(await store.collections(), new Map([['c', { backend: 'yjs' }]]))
      const err = await rejection(store.getHead('c', 'e'))
      assert.ok(err instanceof StoreCorruptError && err.record.keyspace === 'heads', String(err))
    } finally {
      await store.close()
    }
  })
})

/**
 * A folder of one table holding collection 'c' with entity 'e' and a meta record 'm', whose
 * head's block LevelDB cannot decode (its trailer now says snappy: LevelDB will try to
 * uncompress raw bytes). Big random values, so the head shares its 4 KiB block with few others
 * and the store's own format record (last in key order) sits in another block. `first` runs
 * before the block is damaged (the folder is still readable whole then).
 */
async function undecodableHeadBlock(dir: string, first?: () => Promise<void>): Promise<void> {
  const hash = new Uint8Array(randomBytes(32))
  await writeIntoTable(
    dir,
    [
      { type: 'collection', collection: 'c', meta: { backend: 'yjs' } },
      { type: 'delta', collection: 'c', id: 'e', index: 0, bytes: new Uint8Array(randomBytes(5000)) },
      { type: 'head', collection: 'c', id: 'e', head: head('e', 1, hash) },
      { type: 'snapshot', collection: 'c', id: 'e', bytes: new Uint8Array(randomBytes(5000)) },
      { type: 'meta', key: 'm', bytes: new Uint8Array(randomBytes(5000)) },
    ],
    { level: { compression: false } },
  )
  const [name, ...more] = (await readdir(dir)).filter((n) => n.endsWith('.ldb'))
  assert.deepEqual(more, [])
  await first?.()
  const table = await readFile(join(dir, name!))
  const at = table.indexOf(hash)
  const block = dataBlocks(table).find((b) => b.offset <= at && at < b.offset + b.size)!
  assert.equal(table[block.offset + block.size], 0, 'the block is not stored raw')
  table[block.offset + block.size] = 1 // kSnappyCompression
  await writeFile(join(dir, name!), table)
}

function lostBatches(recovered: number, acknowledged: number): string {
  return (
    `LevelDB recovered the store only up to its batch ${recovered}, but batches up to ${acknowledged} had been acknowledged: ` +
    `the writes of the last ${acknowledged - recovered} acknowledged batches are lost (LevelDB's write-ahead log was damaged or cut short)`
  )
}

/** The physical records of a LevelDB log file (log_format.h): 32 KiB blocks, 7-byte headers. */
function logRecords(log: Uint8Array): { offset: number; length: number }[] {
  const records: { offset: number; length: number }[] = []
  let offset = 0
  while (offset + 7 <= log.length) {
    const blockLeft = 32768 - (offset % 32768)
    if (blockLeft < 7) {
      offset += blockLeft // trailer
      continue
    }
    const length = log[offset + 4]! | (log[offset + 5]! << 8)
    if (length === 0 && log[offset + 6] === 0) break
    records.push({ offset, length })
    offset += 7 + length
  }
  return records
}

describe('LevelStore on disk: a damaged write-ahead log', function () {
  this.timeout(30_000)
  let child: StoreChild | undefined
  let dir: string
  beforeEach(async () => (dir = await mkdtemp(join(tmpdir(), 'convergent-wal-'))))
  afterEach(async () => {
    await child?.kill()
    child = undefined
    await rm(dir, { recursive: true, force: true })
  })

  /** A child acknowledges writes 1 … 60 and is SIGKILLed: they are in the .log, in no table. */
  async function sixtyInTheLog(): Promise<string> {
    child = await forkStoreChild('write60', dir)
    await child.done
    await child.kill()
    assert.equal(child.acked.size, 60)
    child = undefined
    const logs = (await readdir(dir)).filter((n) => n.endsWith('.log'))
    assert.equal(logs.length, 1)
    return join(dir, logs[0]!)
  }

  /** Writes sixtyInTheLog(), then garbles the physical record in the middle of the log; returns the log's path. */
  async function garbleMiddleRecord(garble: (log: Uint8Array, recordOffset: number) => void): Promise<string> {
    const logFile = await sixtyInTheLog()
    const log = await readFile(logFile)
    const records = logRecords(log)
    assert.ok(records.length >= 60, `${records.length} records in the log`)
    garble(log, records[Math.floor(records.length / 2)]!.offset)
    await writeFile(logFile, log)
    return logFile
  }

  it('open() reports in damage what LevelDB dropped while recovering it (was: silent), and only that open does', async function () {
    // Garble payload bytes of a record in the middle (past the header and the batch's own
    // 12-byte header): its checksum fails, and LevelDB drops the rest of that 32 KiB block.
    const logFile = await garbleMiddleRecord((log, offset) => {
      for (let i = 0; i < 8; i++) log[offset + 7 + 12 + i]! ^= 0x5a
    })

    let store = classicLevelStore(dir)
    await store.open()
    try {
      // What it says is so: acknowledged writes are gone.
      const lastSeq = await store.lastSeq('c')
      assert.ok(lastSeq < 60, `lastSeq ${lastSeq}: nothing was lost?`)
      assert.equal(store.damage.length, 2, store.damage.join('\n'))
      assert.match(
        store.damage[0]!,
        /^LevelDB dropped \d+ bytes of its write-ahead log .*\.log while recovering it \(Corruption: checksum mismatch\): writes acknowledged before the last shutdown may be lost$/,
      )
      assert.ok(store.damage[0]!.includes(logFile), store.damage[0])
      // Each write was a batch of its own: the acknowledged-batch mark counts what is missing.
      assert.equal(store.damage[1], lostBatches(lastSeq, 60))
      for (let n = 1; n <= lastSeq; n++) {
        const entity = await store.readEntity('c', entityId(n))
        assert.equal(toHex(entity!.head.versionHash), toHex(entityHead(n).versionHash))
        assert.deepEqual(entity!.deltas.map(toHex), [toHex(entityDelta(n))])
      }
      await store.close()
      // LevelDB rotates its info log on every open: the next open found nothing, and says so.
      store = classicLevelStore(dir)
      await store.open()
      assert.deepEqual(store.damage, [])
      assert.equal(await store.lastSeq('c'), lastSeq)
    } finally {
      await store.close()
    }
  })

  it("a damaged length field in the log's last block: LevelDB drops the rest without a word (LOG clean), and open() still reports the loss (was: silent)", async function () {
    // A length larger than what is left of the file: log_reader.cc takes it for a record a
    // crash cut short at the end of the log, and reports nothing (no "dropping" line).
    await garbleMiddleRecord((log, offset) => {
      assert.ok(log.length < 32768, 'the log is more than one block: this is about its last')
      log[offset + 4] = 0xff
      log[offset + 5] = 0x7f
    })

    const store = classicLevelStore(dir)
    await store.open()
    try {
      const lastSeq = await store.lastSeq('c')
      assert.ok(lastSeq < 60, `lastSeq ${lastSeq}: nothing was lost?`)
      assert.equal((await readFile(join(dir, 'LOG'), 'utf8')).includes('dropping'), false, 'LevelDB reported it after all')
      assert.deepEqual(store.damage, [lostBatches(lastSeq, 60)])
    } finally {
      await store.close()
    }
  })

  it('a writer killed with SIGKILL, its log undamaged: open() reports no damage and keeps all 60 writes', async function () {
    await sixtyInTheLog()
    const store = classicLevelStore(dir)
    await store.open()
    try {
      assert.deepEqual(store.damage, [])
      assert.equal(await store.lastSeq('c'), 60)
    } finally {
      await store.close()
    }
  })
})
