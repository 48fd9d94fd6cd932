/**
 * Encryption at rest: the store compliance suite over encrypted stores (memory-level and
 * classic-level, integrity cases included: the tamper hook flips a ciphertext byte), the
 * sealed record format, a byte search of an encrypted folder, and the refusals (wrong key,
 * missing key, a key for a plain folder) leaving the folder byte-identical.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { inspect } from 'node:util'
import { createHash, randomBytes } from 'node:crypto'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { aeadOpen, aeadSeal, deriveAeadKey, isConvergentError, StoreCorruptError } from '@convergent/core'
import { storeComplianceSuite } from '@convergent/core/testing'
import { classicLevelStore, ENCRYPTION_FILE, LevelStore, memoryLevelStore, recryptStore, SWAP_MARK_FILE } from '../src/index.js'
import { AtRestSealer, keyIdOf, resolveKey } from '../src/encryption.js'
import { ClassicLevel } from 'classic-level'
import { entityDelta, entityHead, entityWrite } from './entity-ops.js'
import { copyFormat0Fixture, removeDir, tempDir } from './helpers.js'
import { tamperLevel } from './tamper.js'
import { legacySeal, LegacySealer } from './legacy-aes.js'

const KEY = randomBytes(32)
const OTHER = randomBytes(32)

storeComplianceSuite('memory-level, encrypted', async () => {
  const store = memoryLevelStore({ encryption: { key: KEY } })
  return {
    store,
    reopen: async () => new LevelStore(store.db, { kind: 'memory-level', encryption: { key: KEY } }),
    cleanup: async () => undefined,
    tamper: tamperLevel,
  }
})

storeComplianceSuite('classic-level, encrypted', async () => {
  const dir = await tempDir()
  const key = KEY.toString('hex')
  return {
    store: classicLevelStore(dir, { encryption: { key } }),
    reopen: async () => classicLevelStore(dir, { encryption: { key } }),
    cleanup: () => removeDir(dir),
    tamper: tamperLevel,
  }
})

/** sha256 of every file of a folder, by name. */
async function hashFolder(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (const name of (await readdir(dir)).sort())
    out.set(
      name,
      createHash('sha256')
        .update(await readFile(join(dir, name)))
        .digest('hex'),
    )
  return out
}

async function folderHolds(dir: string, needle: string): Promise<string[]> {
  const bytes = Buffer.from(needle)
  const found: string[] = []
  for (const name of await readdir(dir)) if ((await readFile(join(dir, name))).includes(bytes)) found.push(name)
  return found
}

async function codeOf(make: () => LevelStore): Promise<string> {
  let store: LevelStore | undefined
  try {
    store = make()
    await store.open()
  } catch (err) {
    assert.ok(isConvergentError(err), String(err))
    assert.ok(!(err as Error).message.includes(KEY.toString('hex')) && !(err as Error).message.includes(OTHER.toString('hex')), 'the message echoes a key')
    return (err as { code: string }).code
  } finally {
    await store?.close().catch(() => undefined)
  }
  throw new Error('opened')
}

describe('LevelStore: encryption at rest', function () {
  this.timeout(60_000)

  describe('the sealed record', function () {
    const sealer = new AtRestSealer(KEY)
    const prefix = '!deltas!'
    const key = 'c\u0000id\u00000000000000'
    const body = new TextEncoder().encode('a body of a record')

    it('[3][key id 8][nonce 24][ciphertext][tag 16], opens to the body', function () {
      const record = sealer.sealCopy(prefix + key, body)
      assert.equal(record.byteLength, 1 + 8 + 24 + body.byteLength + 16)
      assert.equal(record[0], 3)
      assert.deepEqual(Buffer.from(record.subarray(1, 9)), keyIdOf(KEY))
      assert.ok(!Buffer.from(record).includes(Buffer.from(body)), 'the body is not in the record in plain')
      assert.deepEqual([...sealer.open(prefix, 0, key, record)!], [...body])
      assert.notDeepEqual(sealer.sealCopy(prefix + key, body), record, 'a fresh nonce per record')
      assert.deepEqual([...sealer.open('!meta!', 0, 'e', sealer.sealCopy('!meta!e', new Uint8Array(0)))!], [])
    })

    it('the layout is plain XChaCha20-Poly1305 under the KDF subkey: a record sealed by hand (one libsodium call) opens, and one sealed here opens by hand', function () {
      const fullKey = prefix + key
      const subkey = deriveAeadKey(KEY, 'cvatrest')
      assert.notDeepEqual(subkey, KEY, 'the cipher key is a subkey, not the key given')
      const header = Buffer.concat([Buffer.from([3]), keyIdOf(KEY)])
      const nonce = randomBytes(24)
      const ct = Buffer.alloc(body.byteLength + 16)
      aeadSeal(ct, body, Buffer.concat([header, Buffer.from(fullKey)]), nonce, subkey)
      assert.deepEqual([...sealer.open(prefix, 0, key, Buffer.concat([header, nonce, ct]))!], [...body])
      const record = Buffer.from(sealer.sealCopy(fullKey, body))
      const plain = Buffer.alloc(body.byteLength)
      assert.ok(aeadOpen(plain, record.subarray(33), Buffer.concat([record.subarray(0, 9), Buffer.from(fullKey)]), record.subarray(9, 33), subkey))
      assert.deepEqual([...plain], [...body])
    })

    it('records earlier releases sealed (format 2: AES-256-GCM with the key itself) still open, and fail on any change', function () {
      const fullKey = prefix + key
      const legacy = legacySeal(KEY, fullKey, body)
      assert.deepEqual([...sealer.open(prefix, 0, key, legacy)!], [...body])
      for (let i = 0; i < legacy.byteLength; i++) {
        const damaged = Buffer.from(legacy)
        damaged[i]! ^= 1
        assert.equal(sealer.open(prefix, 0, key, damaged), undefined, `byte ${i}`)
      }
      assert.equal(sealer.open('!snapshots!', 0, key, legacy), undefined)
      assert.equal(new AtRestSealer(OTHER).open(prefix, 0, key, legacy), undefined)
      // An AES-GCM record relabelled as format 3 (or the reverse) does not open.
      assert.equal(sealer.open(prefix, 0, key, Buffer.concat([Buffer.from([3]), legacy.subarray(1)])), undefined)
      const current = Buffer.from(sealer.sealCopy(fullKey, body))
      current[0] = 2
      assert.equal(sealer.open(prefix, 0, key, current), undefined)
    })

    it('nonces from the pool never repeat across refills; a key longer than the AAD scratch buffer works', function () {
      const fresh = new AtRestSealer(KEY)
      const nonces = new Set<string>()
      for (let i = 0; i < 3000; i++) nonces.add(Buffer.from(fresh.sealCopy(prefix + key, body).subarray(9, 33)).toString('hex'))
      assert.equal(nonces.size, 3000)
      const long = 'é'.repeat(3000) // 6,000 UTF-8 bytes
      assert.deepEqual([...fresh.open(prefix, 0, long, fresh.sealCopy(prefix + long, body))!], [...body])
      assert.equal(fresh.open(prefix, 0, long + 'x', fresh.sealCopy(prefix + long, body)), undefined)
    })

    it('fails on any flipped byte, another key, another keyspace, another cipher key', function () {
      const record = sealer.sealCopy(prefix + key, body)
      for (let i = 0; i < record.byteLength; i++) {
        const damaged = new Uint8Array(record)
        damaged[i]! ^= 1
        assert.equal(sealer.open(prefix, 0, key, damaged), undefined, `byte ${i}`)
      }
      assert.equal(sealer.open(prefix, 0, key.slice(0, -1) + '1', record), undefined)
      assert.equal(sealer.open('!snapshots!', 0, key, record), undefined)
      assert.equal(new AtRestSealer(OTHER).open(prefix, 0, key, record), undefined)
    })

    it('the key id is not the key, and keys are validated without being echoed', function () {
      assert.equal(keyIdOf(KEY).byteLength, 8)
      // A sealer keeps its keys in private fields: util.inspect (of a store, a replica) never shows them.
      assert.ok(!inspect(new AtRestSealer(KEY), { depth: 5 }).includes(KEY.toString('hex').slice(0, 8)))
      assert.ok(!inspect(new AtRestSealer(KEY), { depth: 5 }).includes([...KEY.subarray(0, 6)].join(', ')))
      assert.ok(!KEY.includes(keyIdOf(KEY)))
      assert.deepEqual(resolveKey({ key: KEY.toString('hex') }), KEY)
      assert.deepEqual(resolveKey({ key: ` ${KEY.toString('hex')}\n` }), KEY)
      const secret = 'zz' + KEY.toString('hex').slice(2)
      /** Says it is 32 bytes long and holds 4. */
      class Lying extends Uint8Array {
        override get byteLength(): number {
          return 32
        }
        override get length(): number {
          return 32
        }
      }
      const lying = new Lying(4).fill(1)
      const zeros = [new Uint8Array(32), '0'.repeat(64)]
      for (const bad of [
        undefined,
        {},
        { key: secret },
        { key: KEY.subarray(1) },
        { key: 5 },
        { key: KEY, keyFile: 'f' },
        { keyFile: '/nonexistent/key' },
        { key: lying },
        ...zeros.map((key) => ({ key })),
      ]) {
        assert.throws(
          () => resolveKey(bad),
          (err: Error) => isConvergentError(err) && err.code === 'ERR_INVALID_ARGUMENT' && !err.message.includes(secret.slice(2)),
        )
      }
    })
  })

  describe('a classic-level folder', function () {
    let dir: string
    beforeEach(async () => (dir = await tempDir()))
    afterEach(() => removeDir(dir))

    const MARKER = 'marker-4f1c2e-customer@example.com'

    async function writeMarked(encryption?: { key: Uint8Array } | { keyFile: string }): Promise<void> {
      const store = classicLevelStore(dir, encryption === undefined ? {} : { encryption })
      await store.open()
      const marked = new TextEncoder().encode(`{"email":"${MARKER}"}`)
      for (let n = 1; n <= 50; n++) await store.write(entityWrite('c', n))
      await store.write([
        { type: 'snapshot', collection: 'c', id: 'entity-1', bytes: marked },
        { type: 'delta', collection: 'c', id: 'entity-1', index: 1, bytes: marked },
        { type: 'meta', key: 'm', bytes: marked },
      ])
      await store.close()
    }

    it('holds no value in plain: a byte search of every file finds the marker only in a plain folder', async function () {
      await writeMarked({ key: KEY })
      assert.deepEqual(await folderHolds(dir, MARKER), [])
      // …and compaction's tables too, not only the log
      const again = classicLevelStore(dir, { encryption: { key: KEY } })
      await again.open()
      await (again.db as unknown as { compactRange(a: string, b: string): Promise<void> }).compactRange('!', '~')
      assert.equal(new TextDecoder().decode(await again.getMeta('m')), `{"email":"${MARKER}"}`)
      await again.close()
      assert.ok(
        (await readdir(dir)).some((name) => name.endsWith('.ldb')),
        'a table on disk',
      )
      assert.deepEqual(await folderHolds(dir, MARKER), [])
      assert.deepEqual(await folderHolds(dir, 'delta of entity-1'), [])

      const plain = await tempDir()
      try {
        const encryptedDir = dir
        dir = plain
        await writeMarked()
        assert.notDeepEqual(await folderHolds(plain, MARKER), [], 'the search finds the marker in a plain folder')
        dir = encryptedDir
      } finally {
        await removeDir(plain)
      }
    })

    it('a key file works like the key', async function () {
      const file = join(await tempDir(), 'key')
      await writeFile(file, KEY.toString('hex') + '\n', { mode: 0o600 })
      await writeMarked({ keyFile: file })
      const store = classicLevelStore(dir, { encryption: { key: KEY } })
      await store.open()
      assert.equal(new TextDecoder().decode(await store.getMeta('m')), `{"email":"${MARKER}"}`)
      await store.close()
      await removeDir(join(file, '..'))
    })

    it('wrong key → ERR_WRONG_KEY, no key → ERR_ENCRYPTED, the folder byte-identical', async function () {
      await writeMarked({ key: KEY })
      const before = await hashFolder(dir)
      assert.ok(before.has(ENCRYPTION_FILE))
      assert.equal(await codeOf(() => classicLevelStore(dir, { encryption: { key: OTHER } })), 'ERR_WRONG_KEY')
      assert.deepEqual(await hashFolder(dir), before)
      assert.equal(await codeOf(() => classicLevelStore(dir)), 'ERR_ENCRYPTED')
      assert.deepEqual(await hashFolder(dir), before)
      // …and the right key still opens it
      const store = classicLevelStore(dir, { encryption: { key: KEY } })
      await store.open()
      assert.notEqual(await store.getHead('c', 'entity-7'), undefined)
      await store.close()
    })

    it('a key for a plain folder → ERR_NOT_ENCRYPTED, the folder byte-identical', async function () {
      await writeMarked()
      const before = await hashFolder(dir)
      assert.equal(await codeOf(() => classicLevelStore(dir, { encryption: { key: KEY } })), 'ERR_NOT_ENCRYPTED')
      assert.deepEqual(await hashFolder(dir), before)
      assert.ok(!before.has(ENCRYPTION_FILE))
    })

    it('a key for a format-0 folder (before checksums) → ERR_NOT_ENCRYPTED before any migration, byte-identical', async function () {
      const old = await copyFormat0Fixture()
      try {
        const before = await hashFolder(old)
        assert.equal(await codeOf(() => classicLevelStore(old, { encryption: { key: KEY } })), 'ERR_NOT_ENCRYPTED')
        assert.deepEqual(await hashFolder(old), before)
      } finally {
        await removeDir(old)
      }
    })

    it('without its marker file the sealed format record still refuses (after LevelDB opened)', async function () {
      await writeMarked({ key: KEY })
      await removeDir(join(dir, ENCRYPTION_FILE))
      assert.equal(await codeOf(() => classicLevelStore(dir)), 'ERR_ENCRYPTED')
    })

    it('a ciphertext byte flipped on disk reads as ERR_STORE_CORRUPT naming the record', async function () {
      const store = classicLevelStore(dir, { encryption: { key: KEY } })
      await store.open()
      await store.write(entityWrite('c', 1))
      assert.equal(await tamperLevel(store, 'deltas', () => true), 1)
      await assert.rejects(
        store.readEntity('c', 'entity-1'),
        (err: unknown) =>
          err instanceof StoreCorruptError && err.code === 'ERR_STORE_CORRUPT' && err.record.keyspace === 'deltas' && err.record.id === 'entity-1',
      )
      await store.close()
    })
  })

  describe('memory-level (no marker file: the sealed format record decides)', function () {
    it('wrong key, no key, a key for a plain store', async function () {
      const encrypted = memoryLevelStore({ encryption: { key: KEY } })
      await encrypted.open()
      await encrypted.write(entityWrite('c', 1))
      await encrypted.close()
      assert.equal(await codeOf(() => new LevelStore(encrypted.db, { encryption: { key: OTHER } })), 'ERR_WRONG_KEY')
      assert.equal(await codeOf(() => new LevelStore(encrypted.db)), 'ERR_ENCRYPTED')
      const plain = memoryLevelStore()
      await plain.open()
      await plain.write(entityWrite('c', 1))
      await plain.close()
      assert.equal(await codeOf(() => new LevelStore(plain.db, { encryption: { key: KEY } })), 'ERR_NOT_ENCRYPTED')
    })
  })

  describe('recryptStore (encrypt / rekey / decrypt)', function () {
    it('a folder an earlier release encrypted (AES-256-GCM records) opens, takes new records as XChaCha20-Poly1305, and rekey rewrites every record', async function () {
      const parent = await tempDir('convergent-legacy-')
      const db = join(parent, 'db')
      const formats = async (): Promise<Map<number, number>> => {
        const raw = new ClassicLevel<string, Uint8Array>(db, { valueEncoding: 'view' })
        const out = new Map<number, number>()
        try {
          for await (const [, value] of raw.iterator()) out.set(value[0]!, (out.get(value[0]!) ?? 0) + 1)
        } finally {
          await raw.close()
        }
        return out
      }
      try {
        const old = classicLevelStore(db, { encryption: new LegacySealer(KEY) })
        await old.open()
        for (let n = 1; n <= 5; n++) await old.write(entityWrite('c', n))
        await old.close()
        // The marker as the earlier release wrote it.
        const markerFile = join(db, ENCRYPTION_FILE)
        const marker = JSON.parse(await readFile(markerFile, 'utf8')) as { cipher: string }
        await writeFile(markerFile, JSON.stringify({ ...marker, cipher: 'aes-256-gcm' }) + '\n')
        assert.deepEqual([...(await formats()).keys()], [2], 'every record is a format-2 (AES-256-GCM) record')

        const cipherOfMarker = async (): Promise<string> => (JSON.parse(await readFile(markerFile, 'utf8')) as { cipher: string }).cipher
        const reader = classicLevelStore(db, { encryption: { key: KEY } })
        await reader.open()
        for (let n = 1; n <= 5; n++)
          assert.deepEqual(await reader.readEntity('c', `entity-${n}`), { head: entityHead(n), snapshot: undefined, deltas: [entityDelta(n)] })
        await reader.close()
        assert.equal(await cipherOfMarker(), 'aes-256-gcm', 'opening and reading leave the folder to the earlier release')

        const store = classicLevelStore(db, { encryption: { key: KEY } })
        await store.open()
        await store.write(entityWrite('c', 6))
        await store.close()
        // The earlier release accepts only its own marker: it now refuses the folder (nothing
        // written) instead of reading the new records as damaged and quarantining them.
        assert.equal(await cipherOfMarker(), 'xchacha20-poly1305', 'the marker names the new cipher once a record of it is written')
        const again = classicLevelStore(db, { encryption: { key: KEY } })
        await again.open()
        for (let n = 1; n <= 6; n++)
          assert.deepEqual(await again.readEntity('c', `entity-${n}`), { head: entityHead(n), snapshot: undefined, deltas: [entityDelta(n)] })
        await again.close()
        const mixed = await formats()
        assert.ok((mixed.get(2) ?? 0) > 0 && (mixed.get(3) ?? 0) > 0, `old records stay, new ones are format 3: ${JSON.stringify([...mixed])}`)

        await recryptStore(db, { key: KEY }, { key: OTHER })
        assert.deepEqual([...(await formats()).keys()], [3], 'after rekey every record is format 3')
        assert.equal(await cipherOfMarker(), 'xchacha20-poly1305')
        const rekeyed = classicLevelStore(db, { encryption: { key: OTHER } })
        await rekeyed.open()
        for (let n = 1; n <= 6; n++)
          assert.deepEqual(await rekeyed.readEntity('c', `entity-${n}`), { head: entityHead(n), snapshot: undefined, deltas: [entityDelta(n)] })
        await rekeyed.close()
      } finally {
        await removeDir(parent)
      }
    })

    it('decrypt round trip; the swap marks are on disk before the first rename, and every rename is followed by an fsync of the parent folder before the next step', async function () {
      const parent = await tempDir('convergent-recrypt-')
      const db = join(parent, 'db')
      const events: string[] = []
      const original = { openSync: fs.openSync, fsyncSync: fs.fsyncSync, renameSync: fs.renameSync, rmSync: fs.rmSync }
      const paths = new Map<number, string>()
      try {
        const store = classicLevelStore(db)
        await store.open()
        for (let n = 1; n <= 5; n++) await store.write(entityWrite('c', n))
        await store.close()
        // Spy on node:fs as recrypt.ts sees it (its named imports follow after syncBuiltinESMExports).
        Object.assign(fs, {
          openSync: (path: string, flags?: fs.OpenMode, mode?: fs.Mode) => {
            const fd = original.openSync(path, flags ?? 'r', mode)
            paths.set(fd, String(path))
            return fd
          },
          fsyncSync: (fd: number) => {
            events.push(`fsync ${paths.get(fd)}`)
            original.fsyncSync(fd)
          },
          renameSync: (from: string, to: string) => {
            events.push(`rename ${from} ${to}`)
            original.renameSync(from, to)
          },
          rmSync: (path: string, options?: fs.RmOptions) => {
            events.push(`rm ${path}`)
            original.rmSync(path, options)
          },
        })
        syncBuiltinESMExports()
        const hex = KEY.toString('hex')
        assert.equal((await recryptStore(db, undefined, { key: hex })).resumed, false)
        const swap = (from: string, to: string): string[] => [`rename ${from} ${to}`, `fsync ${parent}`]
        // A swap mark: written to a temporary file, fsynced, renamed into place, its folder fsynced.
        const mark = (folder: string): string[] => {
          const file = join(folder, SWAP_MARK_FILE)
          return [`fsync ${file}.tmp`, `rename ${file}.tmp ${file}`, `fsync ${folder}`]
        }
        // The old folder's entries are deleted one by one (never its mark: it goes last, with the folder).
        const inOld = (e: string): boolean => e.startsWith(`rm ${db}.convergent-old/`)
        const fromMarks = (): string[] => {
          const from = events.slice(events.indexOf(`fsync ${join(db, SWAP_MARK_FILE)}.tmp`))
          assert.ok(from.some(inOld) && !from.includes(`rm ${join(`${db}.convergent-old`, SWAP_MARK_FILE)}`), from.join('\n'))
          return from.filter((e) => !inOld(e))
        }
        const expected = [
          ...mark(db), // db's mark first: a new folder with a mark always has a db with the same one
          ...mark(`${db}.convergent-new`), // its fsync puts the new folder's names on disk before the swap
          ...swap(db, `${db}.convergent-old`),
          ...swap(`${db}.convergent-new`, db),
          `fsync ${db}.convergent-old`,
          `rm ${db}.convergent-old`,
          `rm ${join(db, SWAP_MARK_FILE)}`,
          `rm ${db}.convergent-lock`, // the run's lock folder (withSwapLock), removed while held
        ]
        assert.deepEqual(fromMarks(), expected)
        events.length = 0
        const result = await recryptStore(db, { key: hex }, undefined) // decrypt
        assert.deepEqual([result.keyId, result.resumed], [undefined, false])
        assert.deepEqual(fromMarks(), expected)
        Object.assign(fs, original)
        syncBuiltinESMExports()
        assert.ok(!(await readdir(db)).includes(ENCRYPTION_FILE))
        assert.ok(!(await readdir(db)).includes(SWAP_MARK_FILE), 'the mark is removed once the swap is done')
        const plain = classicLevelStore(db)
        await plain.open()
        for (let n = 1; n <= 5; n++) assert.notEqual(await plain.readEntity('c', `entity-${n}`), undefined)
        await plain.close()
        assert.throws(
          () => classicLevelStore(db, { encryption: { key: KEY } }),
          (err: Error) => isConvergentError(err) && err.code === 'ERR_NOT_ENCRYPTED',
        )
      } finally {
        Object.assign(fs, original)
        syncBuiltinESMExports()
        await removeDir(parent)
      }
    })
  })
})
