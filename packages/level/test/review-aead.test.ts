/**
 * Review of the switch to XChaCha20-Poly1305 at rest (commit 6f2dcd6): attacks by someone who
 * can write the data folder, and an operator upgrading from (or rolling back to) the previous
 * release. Tests marked HOLE failed against 6f2dcd6 and pass since the fixes (the key kept as
 * node:crypto's KeyObject and KDF subkey only; the marker rewritten before the first new record);
 * the others are probes that held.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isConvergentError } from '@convergent/core'
import { classicLevelStore, ENCRYPTION_FILE, LevelStore, memoryLevelStore, recryptStore } from '../src/index.js'
import { AtRestSealer, keyIdOf, keyIdOfRecord } from '../src/encryption.js'
import { FORMAT_KEY } from '../src/keys.js'
import { entityDelta, entityHead, entityWrite } from './entity-ops.js'
import { rawRecords, putRaw, removeDir, tempDir } from './helpers.js'
import { legacySeal, LegacySealer } from './legacy-aes.js'

const KEY = randomBytes(32)
const OTHER = randomBytes(32)

async function codeOf(fn: () => unknown): Promise<string | undefined> {
  try {
    await fn()
    return undefined
  } catch (err) {
    return isConvergentError(err) ? err.code : `not a ConvergentError: ${(err as Error).message}`
  }
}

/** A folder the previous release encrypted: format-2 records, marker cipher 'aes-256-gcm'. */
async function legacyFolder(db: string, entities: number): Promise<void> {
  const old = classicLevelStore(db, { encryption: new LegacySealer(KEY) })
  await old.open()
  for (let n = 1; n <= entities; n++) await old.write(entityWrite('c', n))
  await old.close()
  const file = join(db, ENCRYPTION_FILE)
  const marker = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>
  await writeFile(file, JSON.stringify({ ...marker, cipher: 'aes-256-gcm' }) + '\n')
}

describe('review 6f2dcd6: XChaCha20-Poly1305 at rest', function () {
  this.timeout(60_000)
  const prefix = '!deltas!'
  const key = 'c\u0000entity-1\u00000000000000'
  const body = new TextEncoder().encode('a body')

  describe('format confusion (disk attacker)', function () {
    const sealer = new AtRestSealer(KEY)

    it('holds: truncated, empty and relabelled records of either format open to nothing and never throw', function () {
      const current = Buffer.from(sealer.sealCopy(prefix + key, body))
      const legacy = legacySeal(KEY, prefix + key, body)
      const candidates: Uint8Array[] = [new Uint8Array(0), Buffer.from([2]), Buffer.from([3]), Buffer.from([1, 0, 0, 0, 0])]
      for (const record of [current, legacy]) {
        for (let n = 0; n < record.byteLength; n++) candidates.push(record.subarray(0, n)) // every truncation
        for (const format of [0, 1, 2, 3, 4, 255]) {
          if (format === record[0]) continue
          const relabelled = Buffer.from(record)
          relabelled[0] = format
          candidates.push(relabelled)
        }
      }
      // A format-2 record of exactly the legacy minimum (empty ciphertext) whose tag is garbage.
      candidates.push(Buffer.concat([Buffer.from([2]), keyIdOf(KEY), randomBytes(12 + 16)]))
      // A format-3 record of the minimum length whose tag is garbage.
      candidates.push(Buffer.concat([Buffer.from([3]), keyIdOf(KEY), randomBytes(24 + 16)]))
      for (const c of candidates)
        assert.equal(sealer.open(prefix, 0, key, c), undefined, `${Buffer.from(c).toString('hex').slice(0, 40)}… (${c.byteLength} bytes)`)
      // An empty body is legitimate in both formats.
      assert.deepEqual([...sealer.open(prefix, 0, key, sealer.sealCopy(prefix + key, new Uint8Array(0)))!], [])
      assert.deepEqual([...sealer.open(prefix, 0, key, legacySeal(KEY, prefix + key, new Uint8Array(0)))!], [])
    })

    it('holds: a record opens only under the key and full key it was sealed for, in both formats', function () {
      for (const record of [sealer.sealCopy(prefix + key, body), legacySeal(KEY, prefix + key, body)]) {
        assert.equal(new AtRestSealer(OTHER).open(prefix, 0, key, record), undefined)
        // Another key with the victim's key id in the header: the id is not what authenticates.
        const spoofed = Buffer.from(new AtRestSealer(OTHER).sealCopy(prefix + key, body))
        keyIdOf(KEY).copy(spoofed, 1)
        assert.equal(sealer.open(prefix, 0, key, spoofed), undefined)
        assert.equal(sealer.open('!snapshots!', 0, key, record), undefined)
        assert.equal(sealer.open('', 0, prefix + key, record)?.byteLength, body.byteLength, 'same full key: opens (the AAD is the full key)')
      }
    })

    it('holds: keyIdOfRecord names the key of format-2 and format-3 records, nothing for plain or short ones', function () {
      const id = keyIdOf(KEY).toString('hex')
      assert.equal(keyIdOfRecord(sealer.sealCopy(prefix + key, body)), id)
      assert.equal(keyIdOfRecord(legacySeal(KEY, prefix + key, body)), id)
      assert.equal(keyIdOfRecord(Buffer.concat([Buffer.from([1]), randomBytes(60)])), undefined)
      assert.equal(keyIdOfRecord(Buffer.concat([Buffer.from([3]), keyIdOf(KEY)])), undefined)
    })

    it('holds: memory-level with a format-2 format record: no key → ERR_ENCRYPTED, another key → ERR_WRONG_KEY, a plain store given a key → ERR_NOT_ENCRYPTED', async function () {
      const store = memoryLevelStore({ encryption: new LegacySealer(KEY) })
      await store.open()
      await store.write(entityWrite('c', 1))
      const formatRecord = (await store.db.get('!store!' + FORMAT_KEY))!
      assert.equal(formatRecord[0], 2)
      assert.equal(keyIdOfRecord(formatRecord), keyIdOf(KEY).toString('hex'))
      await store.close()
      assert.equal(await codeOf(() => new LevelStore(store.db, { kind: 'memory-level' }).open()), 'ERR_ENCRYPTED')
      assert.equal(await codeOf(() => new LevelStore(store.db, { kind: 'memory-level', encryption: { key: OTHER } }).open()), 'ERR_WRONG_KEY')
      const reopened = new LevelStore(store.db, { kind: 'memory-level', encryption: { key: KEY } })
      await reopened.open()
      assert.deepEqual(await reopened.readEntity('c', 'entity-1'), { head: entityHead(1), snapshot: undefined, deltas: [entityDelta(1)] })
      await reopened.close()
      const plain = memoryLevelStore()
      await plain.open()
      await plain.close()
      assert.equal(await codeOf(() => new LevelStore(plain.db, { kind: 'memory-level', encryption: { key: KEY } }).open()), 'ERR_NOT_ENCRYPTED')
    })

    it('holds: a format-2 record forged into an upgraded folder (garbage tag, right key id) reads as ERR_STORE_CORRUPT, never as data', async function () {
      const parent = await tempDir('convergent-review-aead-')
      const db = join(parent, 'db')
      try {
        await legacyFolder(db, 2)
        const records = await rawRecords(db)
        const victim = [...records.keys()].find((k) => k.startsWith('!deltas!'))!
        const forged = Buffer.from(records.get(victim)!)
        forged.fill(0x41, 1 + 8 + 12, forged.byteLength - 16) // new ciphertext, same IV and tag
        await putRaw(db, [[victim, forged]])
        const store = classicLevelStore(db, { encryption: { key: KEY } })
        await store.open()
        try {
          const id = victim.includes('entity-1') ? 'entity-1' : 'entity-2'
          assert.equal(await codeOf(() => store.readEntity('c', id)), 'ERR_STORE_CORRUPT')
        } finally {
          await store.close()
        }
      } finally {
        await removeDir(parent)
      }
    })
  })

  describe('nonces', function () {
    it('holds: no nonce repeats across pool refills and across sealers of one key', function () {
      const seen = new Set<string>()
      const sealers = [new AtRestSealer(KEY), new AtRestSealer(KEY), new AtRestSealer(KEY)]
      for (let i = 0; i < 2500; i++) for (const s of sealers) seen.add(Buffer.from(s.sealCopy(prefix + key, body).subarray(9, 33)).toString('hex'))
      assert.equal(seen.size, 2500 * sealers.length)
    })
  })

  describe('key hygiene', function () {
    // LOW (hardening): AtRestSealer keeps `Buffer.from(key)` for format-2 records; for 32 bytes
    // Buffer.from copies into Node's shared 8 KiB allocation pool, so the raw at-rest key sits in
    // the same ArrayBuffer as unrelated Buffer.allocUnsafe()/Buffer.from() results (sealed
    // records, decoded values): anything that serializes `buf.buffer` instead of the view leaks
    // it, and it is never zeroed. (node:crypto's KeyObject held it outside the JS heap before.)
    it("HOLE (low): the at-rest key is not copied into Node's shared Buffer pool", function () {
      const key = randomBytes(32)
      const sealer = new AtRestSealer(key)
      const neighbour = Buffer.allocUnsafe(16) // pooled, like a sealed record or a decoded body
      const slab = Buffer.from(neighbour.buffer)
      assert.ok(sealer.keyId.byteLength === 8)
      assert.equal(slab.includes(key), false, 'the raw key is in the ArrayBuffer of an unrelated pooled Buffer')
    })
  })

  describe('upgrade from and rollback to the previous release', function () {
    // MEDIUM: 6f2dcd6 writes format-3 records into a folder the previous release encrypted but
    // leaves both the marker ('aes-256-gcm') and the 'format' record (version 2) as they were.
    // The previous release therefore accepts the folder and then meets records it cannot open:
    // Replica.open fails with ERR_STORE_CORRUPT "failed its checksum … the disk may be damaged:
    // check it; the entity is fetched again from peers" — an operator rolling back is told the
    // disk is broken (and the quarantine path is what handles it), instead of the documented
    // "the data dir is in store format 3, newer than this version understands" (format.ts: code
    // of format n refuses a folder whose 'format' says more than n). Reproduced with the
    // previous release built from 6f2dcd6~1 (see the review report).
    it('HOLE (medium): once a format-3 record is in an upgraded folder, the previous release refuses it as newer (format record > 2 or marker naming the new cipher)', async function () {
      const parent = await tempDir('convergent-review-aead-')
      const db = join(parent, 'db')
      try {
        await legacyFolder(db, 3)
        const store = classicLevelStore(db, { encryption: { key: KEY } })
        await store.open()
        await store.write(entityWrite('c', 4))
        await store.close()
        const formats = new Set([...(await rawRecords(db)).values()].map((v) => v[0]))
        assert.ok(formats.has(3), 'the folder holds format-3 records now')
        const marker = JSON.parse(await readFile(join(db, ENCRYPTION_FILE), 'utf8')) as { cipher: string }
        const stored = (await rawRecords(db)).get('!store!' + FORMAT_KEY)!
        const version = (JSON.parse(Buffer.from(new AtRestSealer(KEY).open('!store!', 0, FORMAT_KEY, stored)!).toString()) as { version: number }).version
        // What the previous release checks, in its order: the marker's cipher, then the format record.
        const previousReleaseAccepts = marker.cipher === 'aes-256-gcm' && stored[0] === 2 && version <= 2
        assert.equal(previousReleaseAccepts, false, `marker cipher ${marker.cipher}, format record format ${stored[0]} version ${version}`)
      } finally {
        await removeDir(parent)
      }
    })

    it('holds: an upgraded folder opens, takes writes, decrypts and rekeys (from the upgraded marker) with nothing lost', async function () {
      const parent = await tempDir('convergent-review-aead-')
      const db = join(parent, 'db')
      const check = async (store: LevelStore, n: number): Promise<void> => {
        await store.open()
        try {
          for (let i = 1; i <= n; i++)
            assert.deepEqual(await store.readEntity('c', `entity-${i}`), { head: entityHead(i), snapshot: undefined, deltas: [entityDelta(i)] })
        } finally {
          await store.close()
        }
      }
      try {
        await legacyFolder(db, 3)
        const store = classicLevelStore(db, { encryption: { key: KEY } })
        await store.open()
        await store.write(entityWrite('c', 4))
        await store.close()
        await recryptStore(db, { key: KEY }, undefined) // decrypt a mixed folder
        await check(classicLevelStore(db), 4)
        await recryptStore(db, undefined, { key: OTHER })
        await check(classicLevelStore(db, { encryption: { key: OTHER } }), 4)
        assert.equal(await codeOf(() => recryptStore(db, { key: OTHER }, { key: OTHER })), 'ERR_INVALID_ARGUMENT')
      } finally {
        await removeDir(parent)
      }
    })
  })
})
