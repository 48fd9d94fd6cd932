/**
 * The store's format version, kept in its own keyspace `store` under 'format' (a record like
 * any other: checksummed, body JSON {"version": 1}):
 *
 *   0  (no 'format' record) values stored bare: written before checksums (before 2026-12)
 *   1  every value is a checksummed record (record.ts)
 *   2  as 1; feed entries may also be in the layout with a proof id (codec.ts: signed writes),
 *      which format-1 code would read as damaged records. 1 → 2 rewrites nothing: a format-1
 *      folder stays 1 until the first feed entry with a proof is written, and the batch that
 *      writes it also writes 'format' = 2 (LevelStore.write) — from then on format-1 code
 *      refuses the folder outright, and a folder only looked at (dump, audit) stays openable by it.
 *   3  as 2; feed records may also be pages of entries (codec.ts: one record, so one checksum
 *      or seal, for the entries of one write). Lazily too: a folder stays 1 or 2 until the
 *      first page is written, in the batch that also writes 'format' = 3.
 *
 * open() brings a format-0 folder to format 1 IN PLACE before anything is read: every record
 * of every data keyspace is rewritten as a sealed record, in batches of `chunk` records (and at
 * most ~4 MiB). Each batch also writes the migration's progress — the keyspace and the last key
 * it rewrote — ATOMICALLY with the records, so after a crash the records up to that key are
 * format 1 and the rest format 0: the next open() resumes right after it. The last batch writes
 * 'format' = 1 and deletes the progress record. Nothing is lost: a record is only ever replaced
 * by itself behind a header, and no record is read as data before the migration has finished.
 * (A format-0 record damaged on disk before the migration gets sealed as it is: checksums guard
 * from the migration on.)
 *
 * A newer store may not be opened by older code: code of format n refuses to open a folder whose
 * 'format' says more than n. Format-0 code (before checksums) does not look: do not go back.
 *
 * A 'format' record that fails its check (a damaged disk) does not condemn the folder when its
 * other records tell: if some of them open as sealed records of THIS store (a checksum, or the
 * tag under the key given — so the folder is format >= 1, plain or encrypted as opened) and
 * decode, and none is sealed another way (encrypted, under another key, or plain when a key is
 * given) nor opens without decoding (a layout this code does not know), the folder is taken as
 * the current format: one atomic batch moves the damaged record aside (quarantine) and writes
 * 'format' = STORE_FORMAT (never less than the folder may need: older code then refuses it,
 * which is the safe side), and store.damage says so. Otherwise open() still refuses — the same
 * ERR_ENCRYPTED / ERR_WRONG_KEY / ERR_NOT_ENCRYPTED as an intact record would give when the
 * records say the folder is sealed another way, else ERR_STORE_CORRUPT naming the record and
 * the way out — and nothing is written.
 */
import { ConvergentError } from '@convergent/core'
import { decodeJson, encodeJson } from './codec.js'
import { isLevelCorruption } from './errors.js'
import { FORMAT_KEY, MIGRATION_KEY } from './keys.js'
import { putRecord, type LevelOp, type Prefixes } from './ops.js'
import { encryptedError, keyIdOfRecord, notEncryptedError, wrongKeyError, type AtRestSealer } from './encryption.js'
import { PLAIN_SEALER, RECORD_FORMAT, type RecordSealer } from './record.js'
import { DATA_KEYSPACES, type AnyLevel, type DataKeyspace, type Keyspace, type Sublevels } from './sublevels.js'

export const STORE_FORMAT = 3

/** What the format work needs of the store. */
export interface Maintenance {
  db: AnyLevel
  sub: Sublevels
  prefixes: Prefixes
  /** crc32 of each keyspace's prefix (record.ts prefixSum). */
  sums: Record<Keyspace, number>
  /** Writes one atomic batch. */
  write(ops: LevelOp[]): Promise<void>
  /** Records per batch (migration, dropCollection). */
  chunk: number
  /** How records are sealed and opened (plain or encrypted). */
  sealer: RecordSealer
  /** The encryption at rest, if any: the store's 'format' record must be sealed with its key. */
  encryption: AtRestSealer | undefined
  /** For error messages. */
  where: string
  /**
   * Decodes the body of a data record, throwing if it does not decode (the recovery of a
   * damaged 'format' record looks for layouts this code does not know). Without it, that
   * recovery is not tried.
   */
  decode?: (keyspace: DataKeyspace, key: string, body: Uint8Array) => unknown
  /** The ops that move a damaged record of the store keyspace aside (quarantine), for the batch that replaces it. */
  moveAsideOps?: (key: string, stored: Uint8Array) => LevelOp[]
  /** Opened to look (LevelStoreOptions.inspect): nothing is written. */
  inspect?: boolean
}

/** What prepareFormat found: the folder's format, and what it repaired (for store.damage). */
export interface PreparedFormat {
  version: number
  damage: string[]
}

/** Opens a record of keyspace `keyspace` with the store's sealer. */
export function openBody(m: Pick<Maintenance, 'prefixes' | 'sums' | 'sealer'>, keyspace: Keyspace, key: string, stored: Uint8Array): Uint8Array | undefined {
  return m.sealer.open(m.prefixes[keyspace], m.sums[keyspace], key, stored)
}

const MAX_BATCH_BYTES = 4 << 20

interface Progress {
  keyspace: DataKeyspace
  /** The last key rewritten in that keyspace. */
  after: string
}

/**
 * Reads the format; a fresh database gets the current one, a format-0 one is migrated. Returns
 * the format the folder is in now (1 stays 1 until needed: see above), and what it repaired.
 */
export async function prepareFormat(m: Maintenance): Promise<PreparedFormat> {
  const version = readVersion(m)
  if (typeof version === 'object') return recoverFormat(m, version.damaged)
  if (version === STORE_FORMAT || version === 1 || version === 2) return { version, damage: [] }
  if (version !== undefined) {
    throw new ConvergentError(
      'ERR_STORE',
      `The data dir is in store format ${version}, newer than this version of Convergent understands (${STORE_FORMAT}). Use a newer version.`,
    )
  }
  const [any] = (await m.db.keys({ limit: 1 }).all()) as unknown[]
  if (any !== undefined && m.encryption !== undefined) throw notEncryptedError(m.where) // format 0: plain
  if (any === undefined) {
    await m.write([formatOp(m)]) // a new database: nothing to migrate
    return { version: STORE_FORMAT, damage: [] }
  }
  await migrate(m)
  return { version: STORE_FORMAT, damage: [] }
}

/** The version the 'format' record says; `damaged` (its stored bytes) if it does not open under this store's sealer. */
function readVersion(m: Maintenance): number | undefined | { damaged: Uint8Array } {
  const stored = m.sub.store.getSync(FORMAT_KEY)
  if (stored === undefined) return undefined
  // A record that opens under this store's sealer says by that alone that the folder is sealed
  // as this store seals (plain, or encrypted with the key given). One that does not: encrypted
  // or not, with which key — the folder's other records tell (recoverFormat).
  const body = openBody(m, 'store', FORMAT_KEY, stored)
  const version = body === undefined ? undefined : (decodeOrUndefined(body) as { version?: unknown } | undefined)?.version
  return typeof version === 'number' ? version : { damaged: stored }
}

/** Records read per keyspace to tell the format of a folder whose 'format' record is damaged. */
const PROBE_RECORDS = 64

/** What the records beside a damaged 'format' record say about the folder. */
interface Evidence {
  /** Records that open under this store's sealer and decode. */
  sound: number
  /** One that opens but does not decode (a layout this code does not know: a newer format?). */
  undecodable?: string
  /** The key id of a record encrypted under another key than this store's (or under one when it has none). */
  otherKeyId?: string
  /** A record that opens as a plain checksummed one while this store is encrypted. */
  plain?: string
  /** Keyspaces LevelDB reported corrupt while they were read (a table block it cannot decode), and the first error it gave. */
  unreadable: string[]
  unreadableError?: string
}

/** Reads up to PROBE_RECORDS records of each keyspace (but the format record itself) and sorts them. */
async function probe(m: Maintenance, decode: NonNullable<Maintenance['decode']>): Promise<Evidence> {
  const out: Evidence = { sound: 0, unreadable: [] }
  const ownKeyId = m.encryption?.keyId.toString('hex')
  for (const keyspace of [...DATA_KEYSPACES, 'quarantine', 'store'] as const) {
    let entries: [string, Uint8Array][]
    try {
      entries = await m.sub[keyspace].iterator({ limit: PROBE_RECORDS + 1 }).all()
    } catch (err) {
      // A block LevelDB cannot decode: no record of it says anything, as a damaged record says
      // nothing (its own read reports it, naming it). The other keyspaces still tell.
      if (!isLevelCorruption(err)) throw err
      out.unreadable.push(keyspace)
      out.unreadableError ??= err instanceof Error ? err.message : String(err)
      continue
    }
    for (const [key, stored] of entries) {
      if (keyspace === 'store' && key === FORMAT_KEY) continue
      const body = openBody(m, keyspace, key, stored)
      if (body !== undefined) {
        try {
          if (keyspace === 'quarantine' || keyspace === 'store') decodeJson(body, 'store record')
          else decode(keyspace, key, body)
          out.sound++
        } catch {
          out.undecodable ??= `${keyspace} ${JSON.stringify(key)}`
        }
        continue
      }
      const keyId = keyIdOfRecord(stored)
      if (keyId !== undefined && keyId !== ownKeyId) out.otherKeyId ??= keyId
      else if (m.encryption !== undefined && PLAIN_SEALER.open(m.prefixes[keyspace], m.sums[keyspace], key, stored) !== undefined) {
        out.plain ??= `${keyspace} ${JSON.stringify(key)}`
      }
      // else: damaged too (its own read reports it)
    }
  }
  return out
}

/**
 * The 'format' record does not open under this store's sealer: either the folder is sealed
 * another way (no key, another key, or a key for a plain folder), or the record is damaged.
 * The folder's other records tell (see the top of this file); if they do not, open() refuses.
 */
async function recoverFormat(m: Maintenance, stored: Uint8Array): Promise<PreparedFormat> {
  const evidence: Evidence = m.decode === undefined ? { sound: 0, unreadable: [] } : await probe(m, m.decode)
  const migrating = m.sub.store.getSync(MIGRATION_KEY) !== undefined // format 0 → 1 under way: no 'format' record is written before its end
  if (evidence.sound > 0 && evidence.undecodable === undefined && evidence.otherKeyId === undefined && evidence.plain === undefined && !migrating) {
    const sealed = m.encryption === undefined ? 'checksummed' : 'encrypted with the key given'
    const message =
      `The store's format record ('format' in the store keyspace) failed its check, but the folder's other records open as ${sealed} records of this store ` +
      `(${evidence.sound} read): the folder was taken as store format ${STORE_FORMAT}` +
      (m.inspect === true
        ? ' (left as it is: opened for inspection).'
        : ` and the record rewritten (the damaged one moved aside). Releases before format ${STORE_FORMAT} now refuse the folder.`)
    if (m.inspect !== true) await m.write([...(m.moveAsideOps?.(FORMAT_KEY, stored) ?? []), formatOp(m)])
    const unreadable =
      evidence.unreadable.length === 0
        ? []
        : [
            `LevelDB could not read records of the ${evidence.unreadable.join(', ')} keyspaces while the format was told from them (${evidence.unreadableError}): each is reported where it is read.`,
          ]
    return { version: STORE_FORMAT, damage: [message, ...unreadable] }
  }
  // Sealed another way: the record itself says so, or the other records do (as before: the mode first).
  const folderKeyId = keyIdOfRecord(stored) ?? evidence.otherKeyId
  if (evidence.sound === 0 && folderKeyId !== undefined) {
    if (m.encryption === undefined) throw encryptedError(m.where, folderKeyId)
    const keyId = m.encryption.keyId.toString('hex')
    if (folderKeyId !== keyId) throw wrongKeyError(m.where, folderKeyId, keyId)
  }
  if (evidence.sound === 0 && m.encryption !== undefined && (stored[0] === RECORD_FORMAT || evidence.plain !== undefined)) throw notEncryptedError(m.where)
  const why =
    evidence.undecodable !== undefined
      ? `the record ${evidence.undecodable} opens but is in a layout this version does not know (a folder of a newer release?)`
      : evidence.otherKeyId !== undefined || evidence.plain !== undefined
        ? 'the other records are not all sealed the same way (plain, or encrypted with one key), so whether the folder is encrypted cannot be told'
        : migrating
          ? 'a migration from format 0 is under way in it'
          : 'no other record opens as a sealed record of this store'
  throw new ConvergentError(
    'ERR_STORE_CORRUPT',
    `The store's format record ('format' in the store keyspace) in the ${m.where} failed its check, and its format cannot be told: ${why}. Nothing was written. ` +
      'If the folder was encrypted, open it with its key; otherwise check the disk, then restore the folder from a backup, or move it away and let the replica fetch its data again from its peers.',
  )
}

/** The 'format' record saying `version` (STORE_FORMAT unless a lazy bump needs less). */
export function formatOp(m: Pick<Maintenance, 'prefixes' | 'sealer'>, version = STORE_FORMAT): LevelOp {
  return putRecord(m.prefixes.store + FORMAT_KEY, encodeJson({ version }), m.sealer)
}

/** Format 0 → 1, resuming where an interrupted run stopped (see the top of this file). */
async function migrate(m: Maintenance): Promise<number> {
  const progress = readProgress(m)
  // A progress record that fails its check: start over, sealing only what does not open
  // yet (a format-0 value passes a crc32 over its key by chance once in ~4 billion).
  const checkEach = progress === 'unreadable'
  const from = progress === undefined || progress === 'unreadable' ? undefined : progress
  let migrated = 0
  for (let k = from === undefined ? 0 : DATA_KEYSPACES.indexOf(from.keyspace); k < DATA_KEYSPACES.length; k++) {
    const keyspace = DATA_KEYSPACES[k]!
    const prefix = m.prefixes[keyspace]
    const iterator = m.sub[keyspace].iterator(from?.keyspace === keyspace ? { gt: from.after } : {})
    try {
      // The iterator reads a snapshot taken when it was made: it never meets its own rewrites.
      let ops: LevelOp[] = []
      let bytes = 0
      let last: string | undefined
      const flush = async (): Promise<void> => {
        if (last === undefined) return
        ops.push(putRecord(m.prefixes.store + MIGRATION_KEY, encodeJson({ keyspace, after: last }), m.sealer))
        await m.write(ops)
        ops = []
        bytes = 0
        last = undefined
      }
      for (;;) {
        const entries = await iterator.nextv(Math.min(m.chunk, 256))
        if (entries.length === 0) break
        for (const [key, value] of entries) {
          last = key
          if (checkEach && openBody(m, keyspace, key, value) !== undefined) continue
          ops.push(putRecord(prefix + key, value, m.sealer))
          bytes += value.byteLength
          migrated++
          if (ops.length >= m.chunk || bytes >= MAX_BATCH_BYTES) await flush()
        }
      }
      await flush()
    } finally {
      await iterator.close()
    }
  }
  await m.write([formatOp(m), { type: 'del', key: m.prefixes.store + MIGRATION_KEY }])
  return migrated
}

function readProgress(m: Maintenance): Progress | 'unreadable' | undefined {
  const stored = m.sub.store.getSync(MIGRATION_KEY)
  if (stored === undefined) return undefined
  const body = openBody(m, 'store', MIGRATION_KEY, stored)
  const progress = body === undefined ? undefined : (decodeOrUndefined(body) as Partial<Progress> | undefined)
  if (typeof progress?.after !== 'string' || !(DATA_KEYSPACES as readonly unknown[]).includes(progress.keyspace)) return 'unreadable'
  return progress as Progress
}

function decodeOrUndefined(body: Uint8Array): unknown {
  try {
    return decodeJson(body, 'store record')
  } catch {
    return undefined
  }
}
