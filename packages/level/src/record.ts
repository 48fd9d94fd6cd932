/**
 * Record checksums (store format 1). LevelDB as classic-level runs it checks nothing on reads
 * (no paranoid_checks, no block checksum verification, neither exposed): a flipped byte in a
 * table comes back as data. So every value the store writes, in every keyspace, starts with
 * a header that covers the record's key AND value:
 *
 *   [format u8 = 1][crc32 u32 BE][body …]
 *
 * crc32 (zlib's, IEEE) runs over the record's full key on disk — the keyspace prefix (e.g.
 * '!heads!') and the key, as UTF-8 — then over the body. A flipped byte anywhere in the value,
 * in the key (the record then sits under a key it was not written for), or a record moved to
 * another keyspace fails the check. The format byte is not covered: any other value than 1 is
 * refused as unknown, which catches a flip there too.
 *
 * Cost: one checksum per written record (two zlib.crc32 calls chained: key, then body; a record
 * is written at the offset its encoder leaves room for, so sealing copies nothing), and one per
 * record read (see test/bench/write-path.ts for numbers).
 */
import { crc32 } from 'node:zlib'

/** The header's format byte: a crc32 over key and body follows. */
export const RECORD_FORMAT = 1
/** Bytes in front of every body. */
export const HEADER_BYTES = 5

/** A value with room for the header: the caller writes the body at HEADER_BYTES, then seal()s it. */
export function allocRecord(bodyBytes: number): Uint8Array {
  return new Uint8Array(HEADER_BYTES + bodyBytes)
}

/** Fills in the header of a record allocated by allocRecord (the body already in place). */
export function seal(fullKey: string, record: Uint8Array): Uint8Array {
  return writeHeader(record, sumOf(record.subarray(HEADER_BYTES), crc32(fullKey)))
}

/** A record holding a copy of `body`, sealed under fullKey. */
export function sealCopy(fullKey: string, body: Uint8Array): Uint8Array {
  const sum = sumOf(body, crc32(fullKey)) // over the caller's bytes: no view to make
  const record = allocRecord(body.byteLength)
  record.set(body, HEADER_BYTES)
  return writeHeader(record, sum)
}

function writeHeader(record: Uint8Array, sum: number): Uint8Array {
  record[0] = RECORD_FORMAT
  record[1] = sum >>> 24
  record[2] = (sum >>> 16) & 0xff
  record[3] = (sum >>> 8) & 0xff
  record[4] = sum & 0xff
  return record
}

/**
 * The crc32 state after a keyspace prefix: readers know the prefix and the key apart, and
 * crc32(prefix + key) = crc32(key, crc32(prefix)), so the prefix is summed once per keyspace.
 */
export function prefixSum(prefix: string): number {
  return crc32(prefix)
}

/**
 * The body of a stored record (a view into `stored`), or undefined if the record fails its
 * check: too short, an unknown format byte, or a checksum that does not match key and body.
 */
export function openRecord(prefixCrc: number, key: string, stored: Uint8Array): Uint8Array | undefined {
  if (stored.byteLength < HEADER_BYTES || stored[0] !== RECORD_FORMAT) return undefined
  const body = stored.subarray(HEADER_BYTES)
  const expected = ((stored[1]! << 24) | (stored[2]! << 16) | (stored[3]! << 8) | stored[4]!) >>> 0
  return sumOf(body, crc32(key, prefixCrc)) === expected ? body : undefined
}

/**
 * crc32 of `bytes` continuing from `sum`. An empty body leaves the sum as it is — and must not
 * reach zlib: an empty Buffer from classic-level has no data pointer, and zlib's crc32() of a
 * null buffer returns its initial value, 0, whatever the running sum was.
 */
function sumOf(bytes: Uint8Array, sum: number): number {
  return bytes.byteLength === 0 ? sum : crc32(bytes, sum)
}

/**
 * How a store turns bodies into stored values and back: the plain checksummed record above,
 * or XChaCha20-Poly1305 (encryption.ts). Encoders leave HEADER_BYTES in front of a body for seal().
 */
export interface RecordSealer {
  /** Seals a record allocated with HEADER_BYTES of room in front of its body. */
  seal(fullKey: string, record: Uint8Array): Uint8Array
  /** A sealed record holding a copy of `body`. */
  sealCopy(fullKey: string, body: Uint8Array): Uint8Array
  /** The body of a stored record of keyspace `prefix` (its crc32 state `prefixCrc`), or undefined if it fails its check. */
  open(prefix: string, prefixCrc: number, key: string, stored: Uint8Array): Uint8Array | undefined
}

/** The plain checksummed record (format 1). */
export const PLAIN_SEALER: RecordSealer = {
  seal,
  sealCopy,
  open: (_prefix, prefixCrc, key, stored) => openRecord(prefixCrc, key, stored),
}
