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
 */
import { ConvergentError, StoreCorruptError } from '@convergent/core'
import { decodeJson, encodeJson } from './codec.js'
import { FORMAT_KEY, MIGRATION_KEY } from './keys.js'
import { putRecord, type LevelOp, type Prefixes } from './ops.js'
import { encryptedError, keyIdOfRecord, notEncryptedError, wrongKeyError, type AtRestSealer } from './encryption.js'
import { RECORD_FORMAT, type RecordSealer } from './record.js'
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
 * the format the folder is in now (1 stays 1 until needed: see above).
 */
export async function prepareFormat(m: Maintenance): Promise<number> {
  const version = readVersion(m)
  if (version === STORE_FORMAT || version === 1 || version === 2) return version
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
    return STORE_FORMAT
  }
  await migrate(m)
  return STORE_FORMAT
}

function readVersion(m: Maintenance): number | undefined {
  const stored = m.sub.store.getSync(FORMAT_KEY)
  if (stored === undefined) return undefined
  // Encrypted or not: the format record says, before anything is read or written.
  const folderKeyId = keyIdOfRecord(stored)
  if (folderKeyId !== undefined) {
    if (m.encryption === undefined) throw encryptedError(m.where, folderKeyId)
    const keyId = m.encryption.keyId.toString('hex')
    if (folderKeyId !== keyId) throw wrongKeyError(m.where, folderKeyId, keyId)
  } else if (m.encryption !== undefined && stored[0] === RECORD_FORMAT) {
    throw notEncryptedError(m.where)
  }
  const body = openBody(m, 'store', FORMAT_KEY, stored)
  const version = body === undefined ? undefined : (decodeOrUndefined(body) as { version?: unknown } | undefined)?.version
  if (typeof version !== 'number') throw new StoreCorruptError({ keyspace: 'store', key: FORMAT_KEY }, "the store's format record failed its checksum")
  return version
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
