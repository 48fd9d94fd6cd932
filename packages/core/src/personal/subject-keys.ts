import { createCipheriv, createDecipheriv, createSecretKey, hash, type KeyObject } from 'node:crypto'
import { pooledRandom } from '../secure-random.js'
import { decode, encode } from 'cborg'
import { AEAD_NONCE_BYTES, AEAD_TAG_BYTES, aeadOpen, aeadSeal, deriveAeadKey, NoncePool } from '../aead.js'
import { ConvergentError } from '../errors.js'
import { sha256, toHex } from '../hash.js'
import { DEFAULT_VALUE_LIMITS, jsonWithin, type JsonValue, type ValueLimits } from '../json.js'
import type { Logger } from '../logger.js'
import { getMetaPastDamage, metasPastDamage } from '../meta-scan.js'
import type { Store, StoreOp } from '../store.js'
import type { Access } from '../trust/access.js'
import { MAX_KEY_RECORDS, MAX_SUBJECT_BYTES, type KeyWire, type TombstoneWire } from '../replication/messages/keys.js'
import { ShareDigest } from './share-digest.js'

/**
 * Personal fields and crypto-shredding. A collection opened with `personal: { subject, fields }`
 * replaces each listed top-level field, before it enters the CRDT, by a sealed envelope
 * string (not an object: one CRDT register per field, as cheap as the plain value in both
 * backends), sealed under the subject's key for that collection with the collection, entity id,
 * field name and key id as additional authenticated data (an envelope copied to another entity,
 * field or collection does not open). Two forms, both always opened; `cipher` picks the one
 * written:
 *  - `$sealed1.<key id>.<base64(iv | ciphertext | tag)>`: AES-256-GCM (node:crypto) under the key
 *    itself — the default, what every release opens;
 *  - `$sealed1.<key id>.~<base64url(nonce | ciphertext | tag)>`: XChaCha20-Poly1305 (libsodium,
 *    aead.ts) under a KDF subkey — one call of ~1 µs per seal against ~4 µs for node:crypto's
 *    five. It keeps the prefix and key id on purpose: an earlier release takes it for a sealed
 *    field it cannot open (absent, kept by update()) — any other form it would take for the
 *    plain value and destroy. But a get() + put() there deletes it: written only once every
 *    replica runs this release (open({ personalCipher })). The '~' is in neither base64 alphabet.
 * Reads open envelopes whose key is held; a field whose key is not held (forgotten, or not
 * received yet) is absent from the value.
 *
 * Subject keys (32 random bytes per collection and subject) live OUTSIDE the CRDT, in the
 * store's meta records, because CRDT history cannot forget. A key's id is derived from its
 * collection, subject and bytes (so a relayed key cannot be swapped under an id). Two replicas
 * creating a key for the same subject concurrently make two keys: both are kept (a grow-only
 * set per collection and subject) until the subject is forgotten; each envelope names its key.
 *
 * forget() writes a tombstone (collection, subject, who, when; signed with the forgetter's key
 * when the cluster has admins), deletes the keys and compacts the store so no file keeps their
 * bytes. Tombstones are grow-only and replicate to every member; a key of a forgotten subject
 * is never accepted or created again.
 */

const KEY_PREFIX = 'personal/k/'
const TOMB_PREFIX = 'personal/t/'
/** Ids of keys this replica destroyed (not secret: an id says nothing once its key is gone). */
const DEAD_PREFIX = 'personal/d/'
/** Set in the batch that deletes keys, removed once the store is compacted (a crash in between compacts at the next open). */
const COMPACT_PENDING = 'personal/compact-pending'
const ID_LABEL = 'convergent/subject-key/v1\u0000'
const TOMB_LABEL = 'convergent/forget/v1\u0000'

export interface PersonalOptions<T = Record<string, unknown>> {
  /** The subject (a person) a value belongs to, e.g. `(c) => c.customerId`: a non-empty string of at most 256 bytes. Use a pseudonym. */
  subject: (value: T) => string
  /** Top-level fields holding personal data; each is sealed under the subject's key. */
  fields: readonly string[]
  /**
   * Record every read that hands opened personal fields to the application (get, entries,
   * update's draft, subscribe events) in this replica's read audit (replica.readAudit()): when,
   * entity id, subject, fields, this replica's peer id and the caller's `actor`. Default false.
   */
  auditReads?: boolean
}

/** A sealed field as stored in the CRDT (valid JSON in both backends). */
export type SealedField = string

const SEALED_PREFIX = '$sealed1.'
/** Key ids are 22 base64url characters (128 bits). */
const KEY_ID_CHARS = 22
/** Prefix, key id, '.', then at least an earlier release's iv + tag (28 bytes: 40 base64 characters; the XChaCha20 form is longer). */
const MIN_SEALED = SEALED_PREFIX.length + KEY_ID_CHARS + 1 + 40

/** A sealed field: `$sealed1.<22-character key id>.<body>`, of either form (a reserved form for top-level string fields). */
export function isSealed(v: unknown): v is SealedField {
  return typeof v === 'string' && v.length >= MIN_SEALED && v.startsWith(SEALED_PREFIX) && v.charCodeAt(SEALED_PREFIX.length + KEY_ID_CHARS) === 46
}

/** The key id a sealed field names. */
export function sealedKeyId(sealed: SealedField): string {
  return sealed.slice(SEALED_PREFIX.length, SEALED_PREFIX.length + KEY_ID_CHARS)
}

/** Marks the XChaCha20-Poly1305 form: after `<key id>.`, a character in neither base64 alphabet. */
const XCHACHA_MARK = '~'
/** libsodium KDF context of the subkey a subject key seals fields with (the key itself meets no cipher). */
const FIELD_KDF_CONTEXT = 'cvgfield'
const fieldNonces = new NoncePool()

/** Opened values by (collection, id, field, sealed string), so reads and updates decrypt once. Cleared whenever keys are destroyed. */
const CACHE_SIZE = 10_000

/** The id of a subject key: 128 bits of SHA-256 over a label, the collection, the subject and the key, base64url. */
export function keyIdOf(collection: string, subject: string, key: Uint8Array): string {
  // One buffer through the one-shot hash (the same bytes as hashing the parts in turn: ~3 µs less per new subject).
  const text = ID_LABEL + collection + '\u0000' + subject + '\u0000'
  const input = Buffer.allocUnsafe(Buffer.byteLength(text) + key.byteLength)
  input.set(key, input.write(text))
  return hash('sha256', input, 'buffer').subarray(0, 16).toString('base64url')
}

/**
 * A key record as stored in the meta records: the CBOR map { c, s, k } written by hand, byte for
 * byte what cborg's encode() makes (keys sorted as it sorts them: c, k, s), for a fraction of its
 * cost (made once per new subject, on the write path).
 */
export function encodeKeyRecord(collection: string, subject: string, key: Uint8Array): Uint8Array {
  const c = Buffer.from(collection)
  const s = Buffer.from(subject)
  const out = Buffer.allocUnsafe(
    1 + 2 + cborHeadSize(c.byteLength) + c.byteLength + 2 + cborHeadSize(key.byteLength) + key.byteLength + 2 + cborHeadSize(s.byteLength) + s.byteLength,
  )
  let at = 0
  out[at++] = 0xa3 // a map of 3
  for (const [name, major, bytes] of [
    ['c', 3, c],
    ['k', 2, key],
    ['s', 3, s],
  ] as const) {
    out[at++] = 0x61 // a text string of 1 byte
    out[at++] = name.charCodeAt(0)
    at = writeCborHead(out, at, major, bytes.byteLength)
    out.set(bytes, at)
    at += bytes.byteLength
  }
  return new Uint8Array(out.buffer, out.byteOffset, at)
}

function cborHeadSize(n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5
}

function writeCborHead(out: Buffer, at: number, major: number, n: number): number {
  const m = major << 5
  if (n < 24) out[at++] = m | n
  else if (n < 0x100) {
    out[at++] = m | 24
    out[at++] = n
  } else if (n < 0x10000) {
    out[at++] = m | 25
    out.writeUInt16BE(n, at)
    at += 2
  } else {
    out[at++] = m | 26
    out.writeUInt32BE(n, at)
    at += 4
  }
  return at
}

const DEAD = new Uint8Array([1])
/** In place of a damaged forget tombstone (see SubjectKeys.load): CBOR { lost: 1 }. */
const LOST_TOMBSTONE = encode({ lost: 1 })

function pairOf(collection: string, subject: string): string {
  return collection + '\u0000' + subject
}

/**
 * Additional authenticated data: collection NUL id NUL field NUL key id. Unambiguous: collection
 * names and entity ids never contain NUL, and the key id, last, has a fixed length.
 */
function aadTextOf(collection: string, id: string, field: string, keyId: string): string {
  return collection + '\u0000' + id + '\u0000' + field + '\u0000' + keyId
}

function aadOf(collection: string, id: string, field: string, keyId: string): Buffer {
  return Buffer.from(aadTextOf(collection, id, field, keyId))
}

export interface HeldKey {
  id: string
  collection: string
  subject: string
  key: Buffer
  /** The key as a KeyObject, to open AES-256-GCM envelopes of earlier releases (made once: importing it per field costs more than the cipher). */
  object?: KeyObject
  /** The XChaCha20-Poly1305 subkey fields are sealed with (derived once). Zeroed by forget(). */
  aead?: Buffer
}

function keyObjectOf(key: HeldKey): KeyObject {
  return (key.object ??= createSecretKey(key.key))
}

function aeadKeyOf(key: HeldKey): Buffer {
  return (key.aead ??= deriveAeadKey(key.key, FIELD_KDF_CONTEXT))
}

interface Tombstone {
  collection: string
  subject: string
  by: string
  at: number
  wire: TombstoneWire
}

function decodeTombstoneBytes(bytes: Uint8Array): { n: string; c: string; s: string; by: string; at: number } {
  const v = decode(bytes) as Record<string, unknown>
  if (typeof v !== 'object' || v === null || v.v !== 1) throw new Error('not a tombstone')
  const { n, c, s, by, at } = v
  if (typeof n !== 'string' || typeof c !== 'string' || typeof s !== 'string' || typeof by !== 'string' || typeof at !== 'number') {
    throw new Error('malformed tombstone')
  }
  if (c.length === 0 || s.length === 0 || Buffer.byteLength(c) > 1024 || Buffer.byteLength(s) > MAX_SUBJECT_BYTES) throw new Error('malformed tombstone')
  return { n, c, s, by, at }
}

function checkSubject(subject: unknown, collection: string): string {
  if (typeof subject !== 'string' || subject.length === 0 || Buffer.byteLength(subject) > MAX_SUBJECT_BYTES) {
    throw new ConvergentError(
      'ERR_INVALID_VALUE',
      `personal.subject of '${collection}' must return a non-empty string of at most ${MAX_SUBJECT_BYTES} bytes for every value with personal fields.`,
    )
  }
  return subject
}

/** Subject keys and tombstones of one replica (see the module comment). */
export class SubjectKeys {
  /** Private fields (#): util.inspect of a replica never shows a subject key or an opened value. */
  readonly #keys = new Map<string, HeldKey>()
  /** Key ids per (collection NUL subject), sorted: the first one seals new values. */
  private readonly bySubject = new Map<string, string[]>()
  private readonly forgotten = new Map<string, Tombstone>()
  /** What the exchange shares, by bucket (see share-digest.ts): kept with #keys and forgotten. */
  private readonly digest = new ShareDigest()
  /** The last sorted lists of what a peer may see (a transfer pages through one), until the records change. */
  private sortedCache: { version: number; of: Map<string, [string, { t?: Tombstone; k?: HeldKey }][]> } = { version: -1, of: new Map() }
  /**
   * Pairs forget() was called for and has not finished: no key is made or used for them from
   * the call on (a put in the same tick would otherwise write a new key after the tombstone).
   */
  private readonly forgetting = new Set<string>()
  /** Told when this replica has something new to share (a key it made, a tombstone). */
  onChange: (() => void) | undefined
  /** Told when a value names a key id this replica does not hold. */
  onMissing: ((keyId: string) => void) | undefined
  /** Where keyFor() writes a new key: the store, or (the replica sets it) the current commit tick. */
  writeKey: (ops: StoreOp[]) => Promise<void> = (ops) => this.store.write(ops)
  /** forget() and accept() run one at a time. */
  private queue: Promise<unknown> = Promise.resolve()

  constructor(
    private readonly store: Store,
    private readonly access: Access,
    private readonly namespace: string,
    private readonly logger: Logger,
  ) {}

  /** Whether the store can list meta records (personal fields need it). */
  get supported(): boolean {
    return typeof this.store.metas === 'function'
  }

  /**
   * Reads the keys and tombstones the store holds (and finishes a compaction a crash
   * interrupted). A record that fails the store's check does not keep the replica from opening;
   * what is safe differs per record (each is logged as ERR_STORE_CORRUPT naming it, and counted):
   *  - a subject key: DELETED, not moved aside — the quarantine keyspace is outside what forget()
   *    deletes and compacts, so a key kept there would outlive its subject's erasure. It is not
   *    taken for destroyed either (isDead: update() would drop the fields sealed under it): those
   *    fields read as absent and cannot change here, as for a key that has not arrived, until key
   *    exchange brings it back from a peer that may write the collection (lost if none holds it).
   *    Its subject is not known (the value is damaged), so a new value of that subject is sealed
   *    under a new key, shared with peers like any key made here — as by a replica that never
   *    had the old one; the old values stay sealed under theirs.
   *  - a forget tombstone: moved aside, and replaced by a marker under the same key (the pair's
   *    hash) that keeps the pair forgotten here — no key made or taken for it — until a peer
   *    sends the tombstone again (forgetting only removes keys: a subject must not come back).
   *  - a destroyed key's marker: moved aside and written again (its key names the id).
   *  - the compact-pending marker: taken as present (compacting again is harmless; it deletes
   *    the marker).
   */
  async load(): Promise<void> {
    if (!this.supported) return
    const stale: StoreOp[] = []
    const lost = (what: string, removable: boolean): string => (removable ? what : `${what}; left as it is (the store is opened read-only)`)
    for await (const [record, bytes] of metasPastDamage(this.store, KEY_PREFIX, async (err, removable) => {
      this.corruptRecords++
      const id = err.record.key.slice(KEY_PREFIX.length)
      this.logger.error(
        `${err.message} ${lost(`A subject key (id ${id}) is lost here: deleted, not moved aside (a key kept aside would outlive forget()). The personal fields sealed under it read as absent and cannot change here until key exchange brings it back from a peer that may write the collection; if none holds it, they are lost`, removable)}.`,
        { code: err.code },
      )
      if (removable) await this.store.write([{ type: 'delMeta', key: err.record.key }])
    })) {
      try {
        this.add(decodeKeyRecord(record, bytes))
      } catch (err) {
        this.logger.error(`a stored subject key is unreadable (ignored): ${(err as Error).message}`, { code: 'ERR_STORE_CORRUPT' })
      }
    }
    const deadAgain: StoreOp[] = []
    for await (const [record] of metasPastDamage(this.store, DEAD_PREFIX, async (err, removable) => {
      this.corruptRecords++
      const id = err.record.key.slice(DEAD_PREFIX.length)
      // Its value holds nothing: the id in its key says which key was destroyed here. A key of
      // that id held (a damaged record name matching a live key: not plausible) is never marked.
      const again = id.length === KEY_ID_CHARS && !this.#keys.has(id)
      this.logger.error(`${err.message} ${lost(`A destroyed key's marker: moved aside${again ? ', and written again' : ''}`, removable)}.`, {
        code: err.code,
      })
      if (!removable) return
      await this.store.quarantine(err.record)
      if (again) {
        this.#dead.add(id)
        deadAgain.push({ type: 'meta', key: DEAD_PREFIX + id, bytes: DEAD })
      }
    })) {
      this.#dead.add(record.slice(DEAD_PREFIX.length))
    }
    if (deadAgain.length > 0) await this.store.write(deadAgain)
    for await (const [record, bytes] of metasPastDamage(this.store, TOMB_PREFIX, async (err, removable) => {
      this.corruptRecords++
      const hash = err.record.key.slice(TOMB_PREFIX.length)
      const keep = /^[0-9a-f]{64}$/.test(hash)
      this.logger.error(
        `${err.message} ${lost(
          `A forget tombstone: moved aside${keep ? '; its subject stays forgotten here (no key made or taken for it) until a peer sends the tombstone again' : ''}`,
          removable,
        )}.`,
        { code: err.code },
      )
      if (!removable) return
      await this.store.quarantine(err.record)
      if (keep) {
        this.lostTombstones.add(hash)
        await this.store.write([{ type: 'meta', key: err.record.key, bytes: LOST_TOMBSTONE }])
      }
    })) {
      try {
        const r = decode(bytes) as { b: Uint8Array; g: Uint8Array | null; lost?: unknown }
        if (r?.lost === 1) {
          this.lostTombstones.add(record.slice(TOMB_PREFIX.length))
          continue
        }
        const t = decodeTombstoneBytes(r.b)
        this.rememberTombstone({ collection: t.c, subject: t.s, by: t.by, at: t.at, wire: { bytes: r.b, signature: r.g ?? null } })
        for (const id of this.dropKeysOf(t.c, t.s)) stale.push({ type: 'delMeta', key: KEY_PREFIX + id }, { type: 'meta', key: DEAD_PREFIX + id, bytes: DEAD })
      } catch (err) {
        this.logger.error(`a stored forget tombstone is unreadable (ignored): ${(err as Error).message}`, { code: 'ERR_STORE_CORRUPT' })
      }
    }
    // Keys of a pair whose tombstone was lost (none should be left: forget() deleted them with it).
    if (this.lostTombstones.size > 0) {
      for (const pair of [...this.bySubject.keys()]) {
        if (!this.lostTombstones.has(toHex(sha256(pair)))) continue
        const at = pair.indexOf('\u0000')
        for (const id of this.dropKeysOf(pair.slice(0, at), pair.slice(at + 1)))
          stale.push({ type: 'delMeta', key: KEY_PREFIX + id }, { type: 'meta', key: DEAD_PREFIX + id, bytes: DEAD })
      }
    }
    // A key record of a forgotten subject that reached the disk after its tombstone (a write
    // racing forget(), a crash): deleted and compacted away now — by the service, not by a tool
    // that only looks (its keys are dropped from memory all the same).
    if (this.store.readOnly === true) return
    if (stale.length > 0) await this.store.write([...stale, { type: 'meta', key: COMPACT_PENDING, bytes: new Uint8Array([1]) }])
    // Taken as present when damaged: compacting again is harmless, and compact() deletes the marker.
    const pending = await getMetaPastDamage(this.store, COMPACT_PENDING, {
      what: 'The compact-pending marker of forget()',
      moveAside: false,
      readsAs: new Uint8Array(0),
      then: 'taken as present (the store is compacted again, then it is deleted)',
      logger: this.logger,
      counted: () => void this.corruptRecords++,
    })
    if (pending !== undefined) await this.compact()
  }

  /** Meta records met here that failed the store's check (see load()). */
  corruptRecords = 0

  /**
   * Hashes (as in the tombstone's record key) of forgotten pairs whose tombstone was damaged
   * here: forgotten all the same until a peer sends the tombstone again (see load()).
   */
  private readonly lostTombstones = new Set<string>()

  /** Whether (collection NUL subject) is a pair whose tombstone was damaged here. */
  private lostForget(pair: string): boolean {
    return this.lostTombstones.size > 0 && this.lostTombstones.has(toHex(sha256(pair)))
  }

  get size(): number {
    return this.#keys.size
  }

  isForgotten(collection: string, subject: string): boolean {
    const pair = pairOf(collection, subject)
    return this.forgotten.has(pair) || this.lostForget(pair)
  }

  /** Collections in which this replica holds keys of `subject`. */
  collectionsOf(subject: string): string[] {
    const out = new Set<string>()
    for (const k of this.#keys.values()) if (k.subject === subject) out.add(k.collection)
    return [...out]
  }

  private rememberTombstone(t: Tombstone): void {
    const pair = pairOf(t.collection, t.subject)
    this.forgotten.set(pair, t)
    if (this.lostTombstones.size > 0) this.lostTombstones.delete(toHex(sha256(pair)))
    this.digest.add(t.collection, 't', 't' + pair)
  }

  private add(k: HeldKey): void {
    this.#keys.set(k.id, k)
    this.digest.add(k.collection, 'k', 'k' + k.id)
    const pair = pairOf(k.collection, k.subject)
    const ids = this.bySubject.get(pair) ?? []
    if (!ids.includes(k.id)) {
      ids.push(k.id)
      ids.sort()
    }
    this.bySubject.set(pair, ids)
  }

  /**
   * Whether this replica destroyed the key `keyId` (forget()): an envelope under it is dead
   * ciphertext, not a field whose key has yet to arrive. (A replica that never held the key
   * cannot tell the two apart.)
   */
  isDead(keyId: string): boolean {
    return this.#dead.has(keyId)
  }

  readonly #dead = new Set<string>()

  /** Removes the pair's keys from memory; returns their ids. */
  private dropKeysOf(collection: string, subject: string): string[] {
    const pair = pairOf(collection, subject)
    const ids = this.bySubject.get(pair) ?? []
    for (const id of ids) {
      this.#dead.add(id)
      const held = this.#keys.get(id)
      if (held !== undefined) {
        held.key.fill(0)
        // node:crypto keeps its own copy in the KeyObject: dropped, so a HeldKey kept elsewhere opens nothing.
        held.object = undefined
        held.aead?.fill(0)
        held.aead = undefined
      }
      this.#keys.delete(id)
      this.digest.remove('k' + id)
    }
    this.bySubject.delete(pair)
    if (ids.length > 0) {
      // No opened value of a destroyed key stays readable.
      this.#cache.clear()
      this.#oldCache.clear()
    }
    return ids
  }

  /**
   * The key that seals new values of (collection, subject), made (and written) if there is
   * none: `written` then resolves once it is durable. ERR_FORGOTTEN for a forgotten subject.
   */
  keyFor(collection: string, subjectValue: unknown): { key: HeldKey; written?: Promise<void> } {
    const subject = checkSubject(subjectValue, collection)
    const pair = pairOf(collection, subject)
    if (this.forgotten.has(pair) || this.forgetting.has(pair) || this.lostForget(pair)) {
      throw new ConvergentError(
        'ERR_FORGOTTEN',
        `Subject '${subject}' was forgotten in '${collection}': its personal fields cannot be written again (write the value without them).`,
      )
    }
    const ids = this.bySubject.get(pair)
    if (ids !== undefined && ids.length > 0) return { key: this.#keys.get(ids[0]!)! }
    const fresh = pooledRandom(32)
    const bytes = Buffer.from(fresh) // a copy: fill(0) on forget must not touch the pool…
    fresh.fill(0) // …and the pool keeps no copy of the key until its next refill
    const key: HeldKey = { id: keyIdOf(collection, subject, bytes), collection, subject, key: bytes }
    this.add(key)
    const written = this.writeKey([{ type: 'meta', key: KEY_PREFIX + key.id, bytes: encodeKeyRecord(collection, subject, bytes) }])
    written.then(
      () => this.onChange?.(),
      () => {
        // Not durable: forget it here too, so no later value is sealed under a key no disk holds.
        this.#keys.delete(key.id)
        this.digest.remove('k' + key.id)
        const list = this.bySubject.get(pair)?.filter((id) => id !== key.id) ?? []
        if (list.length === 0) this.bySubject.delete(pair)
        else this.bySubject.set(pair, list)
      },
    )
    return { key, written }
  }

  seal(collection: string, id: string, field: string, value: JsonValue, key: HeldKey): SealedField {
    // A HeldKey kept across forget() is zeroed: it must seal nothing (never under an all-zero key).
    if (this.#keys.get(key.id) !== key) {
      throw new ConvergentError(
        'ERR_FORGOTTEN',
        `Subject '${key.subject}' was forgotten in '${collection}' while this write was being made: its personal fields were not written.`,
      )
    }
    const sealed = this.cipher === 'xchacha20-poly1305' ? sealXChaCha(collection, id, field, value, key) : sealAesGcm(collection, id, field, value, key)
    this.remember(collection, id, field, sealed, value)
    return sealed
  }

  /**
   * What seal() writes: 'aes-256-gcm' (the default of this release: every earlier release opens
   * it) or 'xchacha20-poly1305' (~1 µs a seal instead of ~4; replicas of releases before this one
   * cannot open it — set it once every replica runs this release). Both always open.
   */
  cipher: PersonalCipher = 'aes-256-gcm'

  /** The subject of a key this replica holds (undefined once forgotten, or never received). */
  subjectOf(keyId: string): string | undefined {
    return this.#keys.get(keyId)?.subject
  }

  /** The value a sealed field holds, or undefined when its key is not held (or it does not open, or breaks `limits`). */
  open(collection: string, id: string, field: string, sealed: SealedField, limits: ValueLimits = DEFAULT_VALUE_LIMITS): JsonValue | undefined {
    const cached = this.#cache.get(sealed) ?? this.#oldCache.get(sealed)
    // The IV makes every sealed string unique; the place is checked as the AAD would.
    if (cached !== undefined && cached.collection === collection && cached.id === id && cached.field === field) {
      const v = cached.value
      return typeof v === 'object' && v !== null ? structuredClone(v) : v
    }
    const keyId = sealedKeyId(sealed)
    const key = this.#keys.get(keyId)
    if (key === undefined) {
      this.onMissing?.(keyId)
      return undefined
    }
    const value = openSealed(key, collection, id, field, sealed, limits)
    if (value !== undefined) this.remember(collection, id, field, sealed, value)
    return value
  }

  /**
   * Two generations of at most CACHE_SIZE / 2 entries each: when the newer is full it becomes
   * the older and the older is dropped. (Evicting the oldest entry one at a time from a single
   * Map costs V8 a scan over the deleted entries at its front: ~8 µs per seal once full.)
   */
  #cache = new Map<string, { collection: string; id: string; field: string; value: JsonValue }>()
  #oldCache = new Map<string, { collection: string; id: string; field: string; value: JsonValue }>()

  private remember(collection: string, id: string, field: string, sealed: string, value: JsonValue): void {
    if (this.#cache.size >= CACHE_SIZE / 2) {
      this.#oldCache = this.#cache
      this.#cache = new Map()
    }
    this.#cache.set(sealed, { collection, id, field, value: typeof value === 'object' && value !== null ? structuredClone(value) : value })
  }

  /**
   * Forgets `subject` in each collection: tombstones (signed when the cluster has admins), the
   * keys deleted in the same batch, then the store compacted so no file keeps their bytes.
   * The caller checks permissions.
   */
  forget(subject: string, collections: readonly string[]): Promise<void> {
    const pairs = collections.map((c) => pairOf(c, subject))
    for (const pair of pairs) this.forgetting.add(pair)
    const run = this.queue.then(async () => {
      const tombstones: Tombstone[] = []
      for (const collection of collections) {
        // (A pair whose tombstone was damaged here gets a new one.)
        if (this.forgotten.has(pairOf(collection, subject))) continue
        const body = { v: 1, n: this.namespace, c: collection, s: subject, by: this.access.self, at: Date.now() }
        const bytes = encode(body)
        const signature = (await this.access.signOwn(concat(TOMB_LABEL, bytes))) ?? null
        tombstones.push({ collection, subject, by: body.by, at: body.at, wire: { bytes, signature } })
      }
      await this.apply(tombstones)
    })
    this.queue = run.catch(() => undefined)
    void run
      .finally(() => {
        for (const pair of pairs) this.forgetting.delete(pair)
      })
      .catch(() => undefined)
    return run
  }

  /** Records tombstones, deletes their keys (memory first, so nothing seals under them meanwhile), compacts. */
  private async apply(tombstones: Tombstone[]): Promise<void> {
    if (tombstones.length === 0) return
    const ops: StoreOp[] = []
    for (const t of tombstones) {
      this.rememberTombstone(t)
      for (const id of this.dropKeysOf(t.collection, t.subject))
        ops.push({ type: 'delMeta', key: KEY_PREFIX + id }, { type: 'meta', key: DEAD_PREFIX + id, bytes: DEAD })
      ops.push({
        type: 'meta',
        key: TOMB_PREFIX + toHex(sha256(pairOf(t.collection, t.subject))),
        bytes: encode({ b: t.wire.bytes, g: t.wire.signature }),
      })
    }
    ops.push({ type: 'meta', key: COMPACT_PENDING, bytes: new Uint8Array([1]) })
    await this.store.write(ops)
    await this.compact()
    this.onChange?.()
  }

  private async compact(): Promise<void> {
    await this.store.compact?.()
    await this.store.write([{ type: 'delMeta', key: COMPACT_PENDING }])
  }

  // ---- exchange with peers (replication/key-exchange.ts) ----

  /** Keys of collections both this replica and `peer` may read go to it; tombstones to peers that may read their collection. */
  private shares(peer: string, collection: string): boolean {
    return this.access.mayRead(peer, collection) && this.access.mayRead(this.access.self, collection)
  }

  /** Whether `peer` may see records of `kind` in `collection` now (keys: shares(); tombstones: read). */
  private mayShare(peer: string, collection: string, kind: 'k' | 't'): boolean {
    return kind === 't' ? this.access.mayRead(peer, collection) : this.shares(peer, collection)
  }

  /**
   * Every record in `buckets` (all when undefined), by sort key ('t' + pair, 'k' + id), sorted —
   * who may see which is checked where they are used (a policy can change meanwhile). The last
   * few lists are kept until a record changes, so paging through a transfer sorts once.
   */
  private sortedIn(buckets?: ReadonlySet<number>): [string, { t?: Tombstone; k?: HeldKey }][] {
    const cacheKey = buckets === undefined ? '*' : [...buckets].sort((a, b) => a - b).join(',')
    if (this.sortedCache.version !== this.digest.version) this.sortedCache = { version: this.digest.version, of: new Map() }
    const cached = this.sortedCache.of.get(cacheKey)
    if (cached !== undefined) return cached
    const out: [string, { t?: Tombstone; k?: HeldKey }][] = []
    for (const s of this.digest.sortKeysIn(buckets)) {
      const t = s.startsWith('t') ? this.forgotten.get(s.slice(1)) : undefined
      const k = s.startsWith('k') ? this.#keys.get(s.slice(1)) : undefined
      if (t !== undefined) out.push([s, { t }])
      else if (k !== undefined) out.push([s, { k }])
    }
    out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    if (this.sortedCache.of.size >= 4) this.sortedCache.of.delete(this.sortedCache.of.keys().next().value!)
    this.sortedCache.of.set(cacheKey, out)
    return out
  }

  /** Whether `peer` may see this record now (a policy can change between pages). */
  private seenBy(peer: string, r: { t?: Tombstone; k?: HeldKey }): boolean {
    return r.t !== undefined ? this.mayShare(peer, r.t.collection, 't') : r.k !== undefined && this.mayShare(peer, r.k.collection, 'k')
  }

  /** The bucket digests of what this replica shares with `peer` (see share-digest.ts). */
  bucketsFor(peer: string): Uint8Array {
    return this.digest.buckets((collection, kind) => this.mayShare(peer, collection, kind))
  }

  /** SHA-256 over bucketsFor(peer): equal on both sides when in sync. */
  summaryFor(peer: string): Uint8Array {
    return sha256(this.bucketsFor(peer))
  }

  /** A page of what this replica shares with `peer` in `buckets` (all when undefined), after `after` (a sort key). */
  page(
    peer: string,
    after: string | undefined,
    buckets?: ReadonlySet<number>,
  ): { tombstones: TombstoneWire[]; keys: KeyWire[]; sortKeys: string[]; next?: string } {
    const all = this.sortedIn(buckets)
    let i = 0
    if (after !== undefined) {
      // The first sort key past `after` (binary search: the list is sorted).
      let hi = all.length
      while (i < hi) {
        const mid = (i + hi) >> 1
        if (all[mid]![0] <= after) i = mid + 1
        else hi = mid
      }
    }
    const out = { tombstones: [] as TombstoneWire[], keys: [] as KeyWire[], sortKeys: [] as string[] }
    for (; i < all.length && out.sortKeys.length < MAX_KEY_RECORDS; i++) {
      const [s, r] = all[i]!
      if (!this.seenBy(peer, r)) continue
      out.sortKeys.push(s)
      if (r.t !== undefined) out.tombstones.push(r.t.wire)
      if (r.k !== undefined) out.keys.push({ collection: r.k.collection, subject: r.k.subject, key: r.k.key })
    }
    return i < all.length && out.sortKeys.length > 0 ? { ...out, next: out.sortKeys[out.sortKeys.length - 1]! } : out
  }

  /** What this replica shares with `peer` and `peer` did not list (its pages), in pages. */
  lacking(peer: string, listed: ReadonlySet<string>, buckets?: ReadonlySet<number>): { tombstones: TombstoneWire[]; keys: KeyWire[] }[] {
    const pages: { tombstones: TombstoneWire[]; keys: KeyWire[] }[] = []
    let page = { tombstones: [] as TombstoneWire[], keys: [] as KeyWire[] }
    for (const [s, r] of this.sortedIn(buckets)) {
      if (listed.has(s) || !this.seenBy(peer, r)) continue
      if (r.t !== undefined) page.tombstones.push(r.t.wire)
      if (r.k !== undefined) page.keys.push({ collection: r.k.collection, subject: r.k.subject, key: r.k.key })
      if (page.tombstones.length + page.keys.length >= MAX_KEY_RECORDS) {
        pages.push(page)
        page = { tombstones: [], keys: [] }
      }
    }
    if (page.tombstones.length + page.keys.length > 0) pages.push(page)
    return pages
  }

  /** The sort keys of records as they arrived (so the requester knows what the peer holds). */
  static sortKeysOf(tombstones: readonly TombstoneWire[], keys: readonly KeyWire[]): string[] {
    const out: string[] = []
    for (const t of tombstones) {
      try {
        const d = decodeTombstoneBytes(t.bytes)
        out.push('t' + pairOf(d.c, d.s))
      } catch {
        // malformed: refused by accept()
      }
    }
    for (const k of keys) out.push('k' + keyIdOf(k.collection, k.subject, k.key))
    return out
  }

  /**
   * Tombstones and keys from `from`. A tombstone is taken if it names this namespace and —
   * when the cluster has admins — its signer's signature verifies and the signer, or the peer
   * relaying it, is an admin or may write the collection (without admins, from any member). A
   * key is taken only from a peer that may write its collection, if this replica may read it,
   * and never for a forgotten subject. Resolves with how many were refused.
   */
  accept(from: string, tombstones: readonly TombstoneWire[], keys: readonly KeyWire[]): Promise<{ refused: number; taken: number }> {
    const run = this.queue.then(async () => {
      let refused = 0
      let taken = 0
      const fresh: Tombstone[] = []
      for (const wire of tombstones) {
        let d: ReturnType<typeof decodeTombstoneBytes>
        try {
          d = decodeTombstoneBytes(wire.bytes)
        } catch {
          refused++
          continue
        }
        const pair = pairOf(d.c, d.s)
        if (this.forgotten.has(pair) || fresh.some((t) => pairOf(t.collection, t.subject) === pair)) continue
        if (d.n !== this.namespace) {
          refused++
          continue
        }
        if (this.access.configured) {
          // The forgetter's right counts as the policy has it now — or the peer relaying the
          // tombstone vouches for it (an admin or a writer that accepted it when the forgetter
          // still held the right): forgetting only ever removes keys.
          const vouched = this.access.isAdmin(d.by) || this.access.mayWrite(d.by, d.c) || this.access.isAdmin(from) || this.access.mayWrite(from, d.c)
          const ok = wire.signature !== null && vouched && (await this.access.verifyBy(d.by, concat(TOMB_LABEL, wire.bytes), wire.signature))
          if (!ok) {
            refused++
            continue
          }
        }
        fresh.push({ collection: d.c, subject: d.s, by: d.by, at: d.at, wire })
      }
      await this.apply(fresh)
      const ops: StoreOp[] = []
      for (const k of keys) {
        const id = keyIdOf(k.collection, k.subject, k.key)
        if (this.#keys.has(id)) continue
        // Keys come from writers only (they made them, or relay them): a reader must not choose
        // the key later values are sealed with, nor fill this replica with keys.
        if (this.isForgotten(k.collection, k.subject) || !this.access.mayWrite(from, k.collection) || !this.access.mayRead(this.access.self, k.collection)) {
          refused++
          continue
        }
        this.add({ id, collection: k.collection, subject: k.subject, key: Buffer.from(k.key) })
        ops.push({ type: 'meta', key: KEY_PREFIX + id, bytes: encodeKeyRecord(k.collection, k.subject, k.key) })
        taken++
      }
      if (ops.length > 0) await this.store.write(ops)
      return { refused, taken: taken + fresh.length }
    })
    this.queue = run.catch(() => undefined)
    return run
  }
}

/** The ciphers personal fields can be sealed with (open() takes `personalCipher`). */
export type PersonalCipher = 'aes-256-gcm' | 'xchacha20-poly1305'

/** open()'s `personalCipher`: one of the two, default 'aes-256-gcm'; ERR_INVALID_ARGUMENT otherwise. */
export function checkPersonalCipher(v: unknown): PersonalCipher {
  if (v === undefined) return 'aes-256-gcm'
  if (v === 'aes-256-gcm' || v === 'xchacha20-poly1305') return v
  throw new ConvergentError('ERR_INVALID_ARGUMENT', `personalCipher is 'aes-256-gcm' (default) or 'xchacha20-poly1305', got ${JSON.stringify(v) ?? typeof v}.`)
}

/** sealXChaCha()'s scratch buffer (outside Node's shared pool), grown to the largest seal so far. */
let scratch = Buffer.allocUnsafeSlow(4096)
function scratchOf(bytes: number): Buffer {
  if (scratch.byteLength < bytes) {
    scratch.fill(0)
    scratch = Buffer.allocUnsafeSlow(Math.max(bytes, 2 * scratch.byteLength))
  }
  return scratch
}

/** An XChaCha20-Poly1305 envelope: `$sealed1.<key id>.~<base64url(nonce | ciphertext | tag)>`. */
function sealXChaCha(collection: string, id: string, field: string, value: JsonValue, key: HeldKey): SealedField {
  // One scratch buffer, laid out [plain | nonce | ciphertext | tag | aad]: no allocation per
  // seal, and the plain bytes are zeroed before this returns (never in Node's shared pool).
  const json = JSON.stringify(value)
  const aad = aadTextOf(collection, id, field, key.id)
  const n = Buffer.byteLength(json)
  const at = n // the envelope's bytes (nonce, ciphertext, tag) start after the plain text
  const aadAt = at + AEAD_NONCE_BYTES + n + AEAD_TAG_BYTES
  const buf = scratchOf(aadAt + Buffer.byteLength(aad))
  try {
    buf.write(json, 0)
    const aadEnd = aadAt + buf.write(aad, aadAt)
    fieldNonces.writeInto(buf, at)
    aeadSeal(
      buf.subarray(at + AEAD_NONCE_BYTES, aadAt),
      buf.subarray(0, n),
      buf.subarray(aadAt, aadEnd),
      buf.subarray(at, at + AEAD_NONCE_BYTES),
      aeadKeyOf(key),
    )
    return SEALED_PREFIX + key.id + '.' + XCHACHA_MARK + buf.toString('base64url', at, aadAt)
  } finally {
    buf.fill(0, 0, n)
  }
}

/** An AES-256-GCM envelope (what every release opens): `$sealed1.<key id>.<base64(iv | ciphertext | tag)>`, under the key itself. */
function sealAesGcm(collection: string, id: string, field: string, value: JsonValue, key: HeldKey): SealedField {
  const iv = pooledRandom(12)
  const cipher = createCipheriv('aes-256-gcm', keyObjectOf(key), iv)
  cipher.setAAD(aadOf(collection, id, field, key.id))
  const ct = cipher.update(JSON.stringify(value), 'utf8')
  const last = cipher.final()
  return SEALED_PREFIX + key.id + '.' + Buffer.concat([iv, ct, last, cipher.getAuthTag()]).toString('base64')
}

/**
 * Opens a sealed field with `key`; undefined if it is another key's, another place's (the AAD),
 * damaged, not in its one (canonical base64url) spelling, or if its value breaks `limits` as a
 * top-level field (the JSON inside an envelope is not checked when it arrives: a value deeper than
 * maxDepth would overflow the stack of whatever walks it next).
 */
export function openSealed(
  key: HeldKey,
  collection: string,
  id: string,
  field: string,
  sealed: SealedField,
  limits: ValueLimits = DEFAULT_VALUE_LIMITS,
): JsonValue | undefined {
  const value = openAny(key, collection, id, field, sealed)
  return value === undefined || jsonWithin([value], limits) !== undefined ? undefined : value
}

function openAny(key: HeldKey, collection: string, id: string, field: string, sealed: SealedField): JsonValue | undefined {
  if (!isSealed(sealed) || key.id !== sealedKeyId(sealed) || key.collection !== collection) return undefined
  const body = SEALED_PREFIX.length + KEY_ID_CHARS + 1
  if (sealed.charAt(body) === XCHACHA_MARK) {
    const text = sealed.slice(body + 1)
    const raw = Buffer.from(text, 'base64url')
    // Node's decoder skips characters outside the alphabet, stops at '=' and ignores spare bits.
    if (raw.byteLength < AEAD_NONCE_BYTES + AEAD_TAG_BYTES || raw.toString('base64url') !== text) return undefined
    const plain = Buffer.allocUnsafe(raw.byteLength - AEAD_NONCE_BYTES - AEAD_TAG_BYTES)
    if (!aeadOpen(plain, raw.subarray(AEAD_NONCE_BYTES), aadOf(collection, id, field, key.id), raw.subarray(0, AEAD_NONCE_BYTES), aeadKeyOf(key)))
      return undefined
    try {
      return JSON.parse(plain.toString('utf8')) as JsonValue
    } catch {
      return undefined
    } finally {
      plain.fill(0)
    }
  }
  try {
    // An earlier release's AES-256-GCM envelope.
    const raw = Buffer.from(sealed.slice(body), 'base64')
    if (raw.byteLength < 28) return undefined
    const decipher = createDecipheriv('aes-256-gcm', keyObjectOf(key), raw.subarray(0, 12))
    decipher.setAAD(aadOf(collection, id, field, key.id))
    decipher.setAuthTag(raw.subarray(raw.byteLength - 16))
    const plain = Buffer.concat([decipher.update(raw.subarray(12, raw.byteLength - 16)), decipher.final()])
    return JSON.parse(plain.toString('utf8')) as JsonValue
  } catch {
    return undefined
  }
}

/** The subject keys a store holds (for tools: the CLI's dump), by key id. */
export async function storedSubjectKeys(store: Store): Promise<Map<string, HeldKey>> {
  const out = new Map<string, HeldKey>()
  if (store.metas === undefined) return out
  // A damaged record (undecodable, or failing the store's check) opens nothing: the dump shows those fields as absent.
  for await (const [record, bytes] of metasPastDamage(store, KEY_PREFIX, async () => undefined)) {
    try {
      const key = decodeKeyRecord(record, bytes)
      out.set(key.id, key)
    } catch {
      // Undecodable: as above.
    }
  }
  return out
}

/**
 * A stored key record, checked: strings, 32 key bytes, and the id its record is stored under
 * (a record whose id does not match would never be deleted by forget()). Throws otherwise.
 */
function decodeKeyRecord(record: string, bytes: Uint8Array): HeldKey {
  const r = decode(bytes) as { c?: unknown; s?: unknown; k?: unknown }
  if (typeof r?.c !== 'string' || typeof r.s !== 'string' || !(r.k instanceof Uint8Array) || r.k.byteLength !== 32) {
    throw new Error(`key record ${record} does not have the shape of one`)
  }
  const id = keyIdOf(r.c, r.s, r.k)
  if (record !== KEY_PREFIX + id) throw new Error(`key record ${record} holds the key of id ${id}`)
  return { id, collection: r.c, subject: r.s, key: Buffer.from(r.k) }
}

function concat(label: string, bytes: Uint8Array): Uint8Array {
  return Buffer.concat([Buffer.from(label), bytes])
}
