/**
 * Encryption at rest (store option `encryption: { key } | { keyFile }`). Every value the store
 * writes — in every keyspace, the store's own records included — is sealed with
 * XChaCha20-Poly1305 (libsodium, through @convergent/core's aead.ts: why not AES-256-GCM is
 * said there) instead of the plain checksummed record of record.ts:
 *
 *   [format u8 = 3][key id 8 bytes][nonce 24 bytes][ciphertext …][Poly1305 tag 16 bytes]
 *
 * The nonce is 24 random bytes per record (libsodium's CSPRNG, drawn from a pool). The cipher key
 * is a subkey of the key given (libsodium's KDF, context AT_REST_CONTEXT), never the key itself.
 * The additional authenticated data is the first 9 bytes (format byte and key id) followed by
 * the record's full key on disk (keyspace prefix + key, UTF-8): a flipped byte anywhere, a record
 * moved under another key or into another keyspace, fails the tag — the same "failed its check"
 * as a crc mismatch, so the same StoreCorruptError / quarantine path. The tag replaces the crc32
 * (it is a stronger check).
 *
 * Folders written by earlier releases hold format-2 records: AES-256-GCM (node:crypto) with the
 * key itself, [2][key id][iv 12][ciphertext][tag 16], the same AAD. They still open, one by one,
 * and every record written after is format 3; `npx convergent rekey` rewrites them all.
 *
 * The key id is the first 8 bytes of SHA-256("convergent/at-rest-key-id/v1\0" + key): it tells
 * keys apart (wrong key → ERR_WRONG_KEY) without saying anything about the key.
 *
 * Keys (entity ids, collection names, sequence numbers) are NOT encrypted: LevelDB orders them
 * and the store range-scans them (a collection, a digest leaf, a feed after a seq). See README.
 *
 * The folder remembers it is encrypted: classicLevelStore() writes ENCRYPTION_FILE into a new
 * folder before LevelDB creates anything, and checks it before LevelDB opens an existing one,
 * so a wrong or missing key is refused with the folder untouched. The store's 'format' record
 * is sealed too (format.ts): a database opened without the file (memory-level, or the file
 * deleted) is still refused, after LevelDB has opened it.
 */
import { createDecipheriv, createHash, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto'
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { AEAD_NONCE_BYTES, AEAD_TAG_BYTES, aeadOpen, aeadSeal, ConvergentError, deriveAeadKey, NoncePool } from '@convergent/core'
import { checkIsFolder, fsyncDir } from './folder.js'
import { holdsStore, noStoreError } from './inspect.js'
import { HEADER_BYTES, type RecordSealer } from './record.js'
import { interruptedSwap, NEW_SUFFIX, OLD_SUFFIX, strandedSwapError, strandedSwapFolder, swapBase } from './swap.js'

/** A record sealed with XChaCha20-Poly1305 (written since store format 3's cipher change). */
export const ENCRYPTED_FORMAT = 3
/** A record sealed with AES-256-GCM by an earlier release: opened, never written. */
export const LEGACY_AES_FORMAT = 2
export const KEY_ID_BYTES = 8
const FIXED = 1 + KEY_ID_BYTES + AEAD_NONCE_BYTES
const LEGACY_IV_BYTES = 12
const LEGACY_FIXED = 1 + KEY_ID_BYTES + LEGACY_IV_BYTES
/** libsodium KDF context of the at-rest cipher key (8 characters). */
const AT_REST_CONTEXT = 'cvatrest'
/** The folder marker's cipher names: what new folders say, and what older releases wrote. */
export const CIPHER = 'xchacha20-poly1305'
const LEGACY_CIPHER = 'aes-256-gcm'
const KEY_ID_LABEL = 'convergent/at-rest-key-id/v1\u0000'

/** The key id (hex) a folder's marker names; undefined for a folder without one (plain). */
export function folderKeyId(dir: string): string | undefined {
  try {
    const marker = JSON.parse(readFileSync(join(dir, ENCRYPTION_FILE), 'utf8')) as { keyId?: unknown }
    return typeof marker.keyId === 'string' ? marker.keyId : undefined
  } catch {
    return undefined
  }
}

/** The file in an encrypted classic-level folder that says so (JSON, no secret in it). */
export const ENCRYPTION_FILE = 'convergent-encryption'
const CHECK_KEY = 'convergent-encryption-check'
const CHECK_TEXT = 'convergent at-rest key check'

/** open({ encryption }) / classicLevelStore(dir, { encryption }). */
export type EncryptionOptions = { key: Uint8Array | string } | { keyFile: string }

/** The 32-byte key an EncryptionOptions names; ERR_INVALID_ARGUMENT (never echoing the key) if it is not one. */
export function resolveKey(option: unknown): Buffer {
  const bad = (why: string): ConvergentError => new ConvergentError('ERR_INVALID_ARGUMENT', `encryption: ${why}`)
  if (typeof option !== 'object' || option === null) throw bad('pass { key } (32 bytes, or 64 hex characters) or { keyFile } (a path).')
  const o = option as { key?: unknown; keyFile?: unknown }
  if ((o.key === undefined) === (o.keyFile === undefined)) throw bad('pass exactly one of { key } and { keyFile }.')
  let key: unknown = o.key
  let from = 'the key'
  if (o.keyFile !== undefined) {
    if (typeof o.keyFile !== 'string' || o.keyFile.length === 0) throw bad('keyFile must be a path.')
    from = `the key file ${o.keyFile}`
    try {
      key = readFileSync(o.keyFile, 'utf8').trim()
    } catch (err) {
      throw bad(`could not read ${from}: ${(err as NodeJS.ErrnoException).code ?? 'error'}.`)
    }
  }
  let bytes: Buffer
  if (typeof key === 'string') {
    key = key.trim() // whitespace around it ignored (an environment variable or a file may end in a newline)
    if (!/^[0-9a-fA-F]{64}$/.test(key as string)) throw bad(`${from} must be 32 bytes: 64 hex characters (it is not; its value is not shown).`)
    bytes = Buffer.alloc(32) // not Buffer.from: that copies small buffers into Node's shared pool
    bytes.write(key as string, 'hex')
  } else if (key instanceof Uint8Array) {
    const copy = Uint8Array.from(key) // a copy (the caller may wipe theirs), measured itself: a subclass cannot misreport its length
    if (copy.length !== 32) throw bad(`${from} must be 32 bytes (got ${copy.length}).`)
    bytes = Buffer.alloc(32) // not Buffer.from: that copies small buffers into Node's shared pool
    bytes.set(copy)
    copy.fill(0)
  } else {
    throw bad(`${from} must be a Uint8Array of 32 bytes or a string of 64 hex characters.`)
  }
  if (bytes.every((b) => b === 0)) throw bad(`${from} is all zeros: not a secret.`)
  return bytes
}

export function keyIdOf(key: Uint8Array): Buffer {
  return createHash('sha256').update(KEY_ID_LABEL).update(key).digest().subarray(0, KEY_ID_BYTES)
}

/** AAD of up to this many bytes is built in a scratch buffer, not allocated. */
const SCRATCH_BYTES = 4096

/** Seals records with XChaCha20-Poly1305 under a subkey of one key, and opens them (see the top of this file). */
export class AtRestSealer implements RecordSealer {
  readonly keyId: Buffer
  /** Private fields: util.inspect of a store or replica never shows key bytes. */
  readonly #key: Buffer
  /** The key given, as node:crypto holds it (outside the JS heap), for format-2 (AES-256-GCM) records only. */
  readonly #legacy: KeyObject
  readonly #nonces = new NoncePool()
  readonly #scratch = Buffer.alloc(SCRATCH_BYTES) // zeroed: never a copy of freed memory

  constructor(key: Uint8Array) {
    // No Buffer.from(key) here: for 32 bytes it copies into Node's shared allocation pool.
    this.#legacy = createSecretKey(key)
    this.#key = deriveAeadKey(key, AT_REST_CONTEXT)
    this.keyId = keyIdOf(key)
  }

  seal(fullKey: string, record: Uint8Array): Uint8Array {
    return this.sealCopy(fullKey, record.subarray(HEADER_BYTES))
  }

  sealCopy(fullKey: string, body: Uint8Array): Uint8Array {
    const out = Buffer.allocUnsafe(FIXED + body.byteLength + AEAD_TAG_BYTES)
    out[0] = ENCRYPTED_FORMAT
    this.keyId.copy(out, 1)
    this.#nonces.writeInto(out, 1 + KEY_ID_BYTES)
    aeadSeal(out.subarray(FIXED), body, this.aad(out, fullKey), out.subarray(1 + KEY_ID_BYTES, FIXED), this.#key)
    return out
  }

  open(prefix: string, _prefixCrc: number, key: string, stored: Uint8Array): Uint8Array | undefined {
    const format = stored[0]
    if (format === LEGACY_AES_FORMAT) return this.openLegacy(prefix, key, stored)
    if (stored.byteLength < FIXED + AEAD_TAG_BYTES || format !== ENCRYPTED_FORMAT) return undefined
    const bytes = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength)
    if (!timingSafeEqual(bytes.subarray(1, 1 + KEY_ID_BYTES), this.keyId)) return undefined
    const body = Buffer.allocUnsafe(bytes.byteLength - FIXED - AEAD_TAG_BYTES)
    const aad = this.aad(bytes, prefix === '' ? key : prefix + key)
    return aeadOpen(body, bytes.subarray(FIXED), aad, bytes.subarray(1 + KEY_ID_BYTES, FIXED), this.#key) ? body : undefined
  }

  /** A format-2 record (AES-256-GCM with the key itself), as earlier releases sealed them. */
  private openLegacy(prefix: string, key: string, stored: Uint8Array): Uint8Array | undefined {
    if (stored.byteLength < LEGACY_FIXED + AEAD_TAG_BYTES) return undefined
    const bytes = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength)
    if (!timingSafeEqual(bytes.subarray(1, 1 + KEY_ID_BYTES), this.keyId)) return undefined
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#legacy, bytes.subarray(1 + KEY_ID_BYTES, LEGACY_FIXED), { authTagLength: AEAD_TAG_BYTES })
      decipher.setAAD(this.aad(bytes, prefix === '' ? key : prefix + key))
      decipher.setAuthTag(bytes.subarray(bytes.byteLength - AEAD_TAG_BYTES))
      const ciphertext = bytes.subarray(LEGACY_FIXED, bytes.byteLength - AEAD_TAG_BYTES)
      const head = ciphertext.byteLength === 0 ? Buffer.alloc(0) : decipher.update(ciphertext)
      const tail = decipher.final() // checks the tag (throws if it fails)
      return tail.byteLength === 0 ? head : Buffer.concat([head, tail])
    } catch {
      return undefined
    }
  }

  /**
   * The AAD: the record's first 9 bytes (format byte, key id), then its full key as UTF-8.
   * Built in the scratch buffer when it fits (each cipher call consumes it before this is called again).
   */
  private aad(record: Buffer, fullKey: string): Buffer {
    const most = 1 + KEY_ID_BYTES + fullKey.length * 3 // a UTF-16 unit is at most 3 UTF-8 bytes
    if (most > SCRATCH_BYTES) return Buffer.concat([record.subarray(0, 1 + KEY_ID_BYTES), Buffer.from(fullKey, 'utf8')])
    record.copy(this.#scratch, 0, 0, 1 + KEY_ID_BYTES)
    const n = this.#scratch.write(fullKey, 1 + KEY_ID_BYTES, 'utf8')
    return this.#scratch.subarray(0, 1 + KEY_ID_BYTES + n)
  }
}

/** The key id stored in an encrypted record, hex; undefined if the record is not one. */
export function keyIdOfRecord(stored: Uint8Array): string | undefined {
  if (stored.byteLength < LEGACY_FIXED + AEAD_TAG_BYTES || (stored[0] !== ENCRYPTED_FORMAT && stored[0] !== LEGACY_AES_FORMAT)) return undefined
  return Buffer.from(stored.subarray(1, 1 + KEY_ID_BYTES)).toString('hex')
}

export function wrongKeyError(where: string, folderKeyId: string, keyId: string): ConvergentError {
  return new ConvergentError(
    'ERR_WRONG_KEY',
    `The ${where} is encrypted with another key (key id ${folderKeyId}; the key given has id ${keyId}). Nothing was written. Open it with the key it was encrypted with.`,
  )
}

export function encryptedError(where: string, folderKeyId: string | undefined): ConvergentError {
  return new ConvergentError(
    'ERR_ENCRYPTED',
    `The ${where} is encrypted at rest${folderKeyId === undefined ? '' : ` (key id ${folderKeyId})`} and no key was given. Nothing was written. Pass open({ encryption: { key } }) or { keyFile }.`,
  )
}

export function notEncryptedError(where: string): ConvergentError {
  return new ConvergentError(
    'ERR_NOT_ENCRYPTED',
    `The ${where} holds a plain (unencrypted) store, and an encryption key was given: Convergent does not mix plain and encrypted records in one folder. ` +
      'Open it without the key, or encrypt the folder in place first: stop the service, then `npx convergent encrypt <dir> --new-key-file <file>`. Nothing was written.',
  )
}

/**
 * classic-level: before LevelDB touches the folder, checks what it is against the key given
 * (a wrong or missing key, or a plain folder given a key, is refused with the folder as it
 * was), and marks a NEW folder as encrypted (the file is written, fsynced and renamed into
 * place before LevelDB creates anything in it). 'legacy-cipher': the folder is encrypted and its
 * marker was written by an earlier release (AES-256-GCM records): see writeMarker.
 */
export function checkFolder(dir: string, sealer: AtRestSealer | undefined, inspect = false): 'legacy-cipher' | undefined {
  const where = `data dir ${dir}`
  checkIsFolder(dir)
  if (interruptedSwap(dir)) {
    // Creating a store here would hide the data in the new and old folders (and a later
    // encrypt/rekey would then delete them): finish the swap first.
    const base = swapBase(dir)
    throw new ConvergentError(
      'ERR_STORE',
      `The ${where} is missing: an encrypt/rekey was interrupted between its two renames (${base}${OLD_SUFFIX} and ${base}${NEW_SUFFIX} exist). Run the same command again to finish it. Nothing was written.`,
    )
  }
  // Only one of the swap's folders is left (the other lost): the data is in it, not here.
  const stranded = strandedSwapFolder(dir)
  if (stranded !== undefined) throw strandedSwapError(dir, stranded)
  // Looking at a folder with no store: nothing to check a key against, and no marker is written.
  if (inspect && !holdsStore(dir)) throw noStoreError(dir)
  const file = join(dir, ENCRYPTION_FILE)
  let text: string | undefined
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new ConvergentError('ERR_STORE', `Could not read ${file}: ${(err as Error).message}`)
  }
  if (text !== undefined) {
    let marker: { cipher?: unknown; keyId?: unknown; check?: unknown }
    try {
      marker = JSON.parse(text) as typeof marker
    } catch {
      marker = {}
    }
    if ((marker.cipher !== CIPHER && marker.cipher !== LEGACY_CIPHER) || typeof marker.keyId !== 'string' || typeof marker.check !== 'string') {
      throw new ConvergentError('ERR_STORE_CORRUPT', `The ${where} says it is encrypted, but its ${ENCRYPTION_FILE} file is damaged. Nothing was written.`)
    }
    if (sealer === undefined) throw encryptedError(where, marker.keyId)
    const keyId = sealer.keyId.toString('hex')
    if (marker.keyId !== keyId) throw wrongKeyError(where, marker.keyId, keyId)
    if (sealer.open('', 0, CHECK_KEY, Buffer.from(marker.check, 'base64')) === undefined) {
      throw new ConvergentError(
        'ERR_STORE_CORRUPT',
        `The ${where}'s ${ENCRYPTION_FILE} file failed its check (its key id matches the key given). Nothing was written.`,
      )
    }
    return marker.cipher === LEGACY_CIPHER ? 'legacy-cipher' : undefined
  }
  if (sealer === undefined) return undefined
  if (existsSync(join(dir, 'CURRENT'))) throw notEncryptedError(where)
  writeMarker(dir, sealer)
  return undefined
}

/**
 * Writes the folder's marker (key id, a check value sealed with the key, the cipher records are
 * written with): to a temporary file, fsynced, renamed into place, the folder fsynced. Also
 * rewrites the marker of a folder an earlier release encrypted before its first XChaCha20
 * record is written: that release accepts only the marker it wrote ('aes-256-gcm'), so it then
 * refuses the folder ("damaged marker", nothing written) rather than read new records as damaged.
 */
export function writeMarker(dir: string, sealer: AtRestSealer): void {
  const file = join(dir, ENCRYPTION_FILE)
  const marker = {
    cipher: CIPHER,
    keyId: sealer.keyId.toString('hex'),
    check: Buffer.from(sealer.sealCopy(CHECK_KEY, Buffer.from(CHECK_TEXT))).toString('base64'),
  }
  mkdirSync(dir, { recursive: true })
  const tmp = `${file}.tmp`
  const fd = openSync(tmp, 'w', 0o644)
  try {
    writeSync(fd, JSON.stringify(marker) + '\n')
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, file)
  fsyncDir(dir)
}

/**
 * checkFolder for a key (or none) as open() holds it: lets open() refuse a wrong or missing key
 * before it writes anything else into the data dir (its peer identity).
 */
export function checkEncryptedFolder(dir: string, key: Uint8Array | undefined, inspect = false): void {
  checkFolder(dir, key === undefined ? undefined : new AtRestSealer(key), inspect)
}
