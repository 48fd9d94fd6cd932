import { constants as bufferConstants } from 'node:buffer'
import { inflateRawSync } from 'node:zlib'
import * as A from '@automerge/automerge'
import { ConvergentError, bytesEqual, sha256, toHex } from '@convergent/core'

/**
 * Automerge binary data is a sequence of chunks:
 *   magic (85 6f 4a 83) · checksum (4 bytes) · type (1 byte) · body length (uLEB128) · body
 * The checksum is the first 4 bytes of SHA-256 over type, length and body (for a compressed
 * change: over the uncompressed change; for a document: over the body as sent, compressed
 * columns and all). Automerge's loadIncremental throws only when the first chunk is bad: it
 * silently skips a bad chunk after a good one, and accepts empty input. So the framing and
 * every checksum are verified here, before Automerge sees the bytes.
 *
 * Chunks can be deflate-compressed — a whole change (type 2) or single columns of a document
 * (type 0) — and a few KB can inflate to gigabytes. What a delta decodes to is therefore
 * measured here, inflating every compressed part with a ceiling of what is left of the budget,
 * before Automerge (which would inflate without one) sees any of it. Columns are also
 * run-length encoded, so every row (operation, or change of a document) counts ROW_BYTES too.
 */
const MAGIC = [0x85, 0x6f, 0x4a, 0x83]
const DOCUMENT = 0
const CHANGE = 1
const COMPRESSED_CHANGE = 2
const HEADER_BYTES = 9 // magic + checksum + type, before the length
const HASH_BYTES = 32
/** The column specification bit that marks a deflated column (Automerge's ColumnSpec). */
const DEFLATE_BIT = 0b1000

export interface CheckOptions {
  /**
   * Also parse the chunks after the first: a body that is garbage under a valid checksum
   * would otherwise be skipped by loadIncremental after a good first chunk and stored with
   * it — and a later A.load of the stored bytes drops everything on it. (The first chunk
   * needs no parse: Automerge throws on it.)
   */
  readonly parseAfterFirst?: boolean
  /** Most bytes the chunks may decode to, all together: over it, ERR_TOO_LARGE. */
  readonly maxDecodedBytes: number
}

export interface CheckedChunks {
  /** Whether any chunk is a change (plain or compressed), and whether any is a whole document. */
  readonly hasChange: boolean
  readonly hasDocument: boolean
  /** The change chunks (plain or compressed, as they came) and how many operations they hold. */
  readonly changes: Uint8Array[]
  readonly changeOps: number
  /** What the chunks decode to: their bytes with every compressed part inflated. */
  readonly decodedBytes: number
}

/**
 * Verifies framing, checksums and the decoded size (see the module comment), then, with
 * `parseAfterFirst`, parses the chunks after the first. Throws ERR_INVALID_DELTA or
 * ERR_TOO_LARGE; nothing is inflated past the budget.
 */
export function checkChunks(bytes: Uint8Array, options: CheckOptions): CheckedChunks {
  if (bytes.byteLength === 0) throw invalid('it is empty')
  const budget = new Budget(options.maxDecodedBytes)
  let offset = 0
  let hasChange = false
  let hasDocument = false
  const later: [start: number, end: number][] = []
  const changes: Uint8Array[] = []
  while (offset < bytes.byteLength) {
    const start = offset
    const type = bytes[offset + 8]
    offset = checkChunk(bytes, offset, budget)
    if (type !== DOCUMENT) {
      hasChange = true
      changes.push(bytes.subarray(start, offset))
    } else hasDocument = true
    if (start > 0) later.push([start, offset])
  }
  // Parsed only once every chunk is known to fit: a parse inflates.
  if (options.parseAfterFirst) {
    for (const [start, end] of later) parseChunk(bytes.subarray(start, end), bytes[start + 8] === DOCUMENT)
  }
  return { hasChange, hasDocument, decodedBytes: budget.used, changes, changeOps: budget.changeOps }
}

/**
 * How deep the objects these changes create nest, counted from the objects they start from
 * (existing objects count as depth 0). Automerge applies changes recursively: a delta nesting
 * lists ~10,000 deep (22 KB) runs its WASM module out of stack, which ends every Automerge
 * document of the process. Decodes the changes (~60 µs each): callers skip it when the
 * changes hold fewer operations than the depth they would refuse.
 */
export function nestingDepth(changes: readonly Uint8Array[]): number {
  const depth = new Map<string, number>()
  let deepest = 0
  for (const chunk of changes) {
    let decoded: A.DecodedChange
    try {
      decoded = A.decodeChange(chunk)
    } catch {
      throw invalid('a change chunk does not parse')
    }
    decoded.ops.forEach((op, i) => {
      if (!op.action.startsWith('make')) return
      const d = (depth.get(op.obj) ?? 0) + 1
      depth.set(`${decoded.startOp + i}@${decoded.actor}`, d)
      if (d > deepest) deepest = d
    })
  }
  return deepest
}

/** What has been decoded so far, against the ceiling. */
class Budget {
  used = 0
  /** Operations of the change chunks seen. */
  changeOps = 0
  constructor(readonly max: number) {}

  get left(): number {
    return this.max - this.used
  }

  add(n: number): void {
    this.used += n
    if (this.used > this.max) throw tooLarge(this.max)
  }
}

function parseChunk(chunk: Uint8Array, document: boolean): void {
  try {
    if (document) A.free(A.load(chunk))
    else A.decodeChange(chunk)
  } catch {
    throw invalid(`a ${document ? 'document' : 'change'} chunk after the first does not parse`)
  }
}

/** Verifies one chunk starting at `offset` and counts what it decodes to; returns where the next one starts. */
function checkChunk(bytes: Uint8Array, offset: number, budget: Budget): number {
  if (bytes.byteLength - offset < HEADER_BYTES + 1) throw invalid('a chunk header is truncated')
  for (let i = 0; i < MAGIC.length; i++) {
    if (bytes[offset + i] !== MAGIC[i]) throw invalid('a chunk does not start with the Automerge magic bytes')
  }
  const checksum = bytes.subarray(offset + 4, offset + 8)
  const type = bytes[offset + 8]!
  const [length, bodyStart] = readUleb(bytes, offset + HEADER_BYTES)
  const end = bodyStart + length
  if (end > bytes.byteLength) throw invalid('a chunk is truncated')

  const headerBytes = bodyStart - offset
  if (type === DOCUMENT || type === CHANGE) {
    verifyChecksum(sha256(bytes.subarray(offset + 8, end)), checksum)
    const body = bytes.subarray(bodyStart, end)
    if (type === DOCUMENT) {
      budget.add(headerBytes + documentBodyDecodedBytes(body, budget.left - headerBytes, budget.max))
    } else {
      // A change chunk's columns are never compressed (Automerge refuses one that says so).
      budget.add(headerBytes + length)
      const ops = changeRows(body)
      budget.changeOps += ops
      budget.add(ops * ROW_BYTES)
    }
  } else if (type === COMPRESSED_CHANGE) {
    // The inflated change has a header of its own, with its length: at most as long as this one's.
    const body = inflate(bytes.subarray(bodyStart, end), budget.left - headerBytes, budget.max)
    const inflatedLength = encodeUleb(body.byteLength)
    budget.add(HEADER_BYTES + inflatedLength.byteLength + body.byteLength)
    verifyChecksum(sha256(Uint8Array.of(CHANGE), inflatedLength, body), checksum)
    const ops = changeRows(body)
    budget.changeOps += ops
    budget.add(ops * ROW_BYTES)
  } else {
    throw invalid(`a chunk has the unknown type ${type}`)
  }
  return end
}

function verifyChecksum(hash: Uint8Array, checksum: Uint8Array): void {
  if (!bytesEqual(hash.subarray(0, 4), checksum)) throw invalid('a chunk fails its checksum')
}

/**
 * The size of a document chunk's body once its deflated columns are inflated (Automerge's
 * storage/document.rs): actors · heads · change column metadata · op column metadata ·
 * change column data · op column data · head indexes. Column metadata is a count, then per
 * column its specification (uLEB128 u32; bit 3 = deflated) and its length in the data.
 * Each deflated column is inflated within what is left of the budget (`left`, less what the
 * body holds besides: columns not inflated yet count at their compressed length) and only its
 * size is kept.
 */
function documentBodyDecodedBytes(body: Uint8Array, left: number, max: number): number {
  let { changeColumns, opColumns, offset } = documentColumns(body)
  // The metadata (and the prefix before it) counts at its length; so do the head indexes after
  // the data, and every column that is not deflated. Then the rows, as in changeRows.
  let decoded = body.byteLength
  const rows = [0, 0]
  for (const [group, columns] of [changeColumns, opColumns].entries()) {
    for (const [spec, length] of columns) {
      const start = offset
      offset += length
      if (offset > body.byteLength) throw invalid('a document chunk is shorter than its columns')
      let data = body.subarray(start, offset)
      if ((spec & DEFLATE_BIT) !== 0) {
        decoded -= length
        data = inflate(data, left - decoded, max)
        decoded += data.byteLength
      }
      rows[group] = Math.max(rows[group]!, columnRows(data, spec))
      if (decoded + (rows[0]! + rows[1]!) * ROW_BYTES > left) throw tooLarge(max)
    }
  }
  return decoded + (rows[0]! + rows[1]!) * ROW_BYTES
}

/** A document body's column metadata, and where its column data starts (after actors and heads). */
function documentColumns(body: Uint8Array): { changeColumns: Column[]; opColumns: Column[]; offset: number } {
  let [count, offset] = readUleb(body, skipActors(body))
  offset += count * HASH_BYTES
  if (offset > body.byteLength) throw invalid('a document chunk is truncated in its heads')
  let changeColumns: Column[]
  let opColumns: Column[]
  ;[changeColumns, offset] = readColumns(body, offset)
  ;[opColumns, offset] = readColumns(body, offset)
  return { changeColumns, opColumns, offset }
}

/** A column's specification (bit 3: deflated; bits 0–2: its type) and its length in the data. */
type Column = [spec: number, length: number]

function readColumns(body: Uint8Array, offset: number): [Column[], number] {
  let count: number
  ;[count, offset] = readUleb(body, offset)
  const columns: Column[] = []
  for (let i = 0; i < count; i++) {
    let spec: number
    let length: number
    ;[spec, offset] = readUleb(body, offset)
    ;[length, offset] = readUleb(body, offset)
    columns.push([spec, length])
  }
  return [columns, offset]
}

/**
 * What a change's operations cost besides their bytes: columns are run-length encoded, so a
 * change of ~120 bytes can hold 10,000,000 list insertions — Automerge then runs out of memory
 * (the WASM heap, for every document of the process). Every row of a column counts
 * ROW_BYTES towards the limit: the number of operations (and, in a document, of changes) is
 * the most rows any of their columns has.
 */
const ROW_BYTES = 16

/** The operations of a change chunk's body (storage/change.rs): the most rows of its op columns. */
function changeRows(body: Uint8Array): number {
  let [count, offset] = readUleb(body, 0) // dependencies
  offset += count * HASH_BYTES
  let n: number
  ;[n, offset] = readUleb(body, offset) // actor
  offset += n
  offset = skipLeb(body, offset) // seq
  offset = skipLeb(body, offset) // start op
  offset = skipLeb(body, offset) // time (signed)
  ;[n, offset] = readUleb(body, offset) // message
  offset += n
  ;[count, offset] = readUleb(body, offset) // other actors
  for (let i = 0; i < count; i++) {
    ;[n, offset] = readUleb(body, offset)
    offset += n
  }
  if (offset > body.byteLength) throw invalid('a change chunk is truncated in its header')
  let columns: Column[]
  ;[columns, offset] = readColumns(body, offset)
  let rows = 0
  for (const [spec, length] of columns) {
    if (offset + length > body.byteLength) throw invalid('a change chunk is shorter than its columns')
    rows = Math.max(rows, columnRows(body.subarray(offset, offset + length), spec))
    offset += length
  }
  return rows
}

/**
 * The rows of one column (the Automerge binary format): boolean columns are alternating run
 * lengths; value columns are raw bytes (their rows are the metadata column's); every other
 * type is run-length encoded: a signed count n, then one value repeated n times (n > 0), -n
 * literal values (n < 0), or a count of nulls (n = 0). Values are uLEB128 (group, actor,
 * integer, value metadata), sLEB128 (delta) or length-prefixed (string).
 */
function columnRows(data: Uint8Array, spec: number): number {
  const type = spec & 0b111
  if (type === VALUE_TYPE) return 0
  let rows = 0
  let offset = 0
  let n: number
  if (type === BOOLEAN_TYPE) {
    while (offset < data.byteLength) {
      ;[n, offset] = readUleb(data, offset)
      rows += n
    }
    return rows
  }
  const skipValue = (at: number): number => {
    if (type !== STRING_TYPE) return skipLeb(data, at)
    const [length, next] = readUleb(data, at)
    return next + length
  }
  while (offset < data.byteLength) {
    ;[n, offset] = readSleb(data, offset)
    if (n > 0) {
      offset = skipValue(offset)
      rows += n
    } else if (n < 0) {
      for (let i = 0; i < -n; i++) offset = skipValue(offset)
      rows += -n
    } else {
      ;[n, offset] = readUleb(data, offset)
      rows += n
    }
  }
  if (offset > data.byteLength) throw invalid('a column is truncated')
  return rows
}

const BOOLEAN_TYPE = 4
const STRING_TYPE = 5
const VALUE_TYPE = 7

/**
 * The heads named by the document chunks among `bytes` (chunks that checkChunks accepted), as
 * hex hashes. A document chunk holds exactly the history of its heads.
 */
export function documentHeads(bytes: Uint8Array): string[] {
  const heads: string[] = []
  let offset = 0
  while (offset < bytes.byteLength) {
    const [length, bodyStart] = readUleb(bytes, offset + HEADER_BYTES)
    if (bytes[offset + 8] === DOCUMENT) {
      const body = bytes.subarray(bodyStart, bodyStart + length)
      let [count, at] = readUleb(body, skipActors(body))
      for (let i = 0; i < count; i++, at += HASH_BYTES) heads.push(toHex(body.subarray(at, at + HASH_BYTES)))
    }
    offset = bodyStart + length
  }
  return heads
}

/**
 * The deflated parts of some chunks (compressed changes, deflated document columns) and how
 * many bytes are not deflated — from the framing alone: nothing is inflated, no checksum
 * checked. For a size check that inflates off the event loop (AutomergeBackend.checkDelta).
 */
export function deflatedParts(bytes: Uint8Array): { parts: Uint8Array[]; plainBytes: number } {
  if (bytes.byteLength === 0) throw invalid('it is empty')
  const parts: Uint8Array[] = []
  let plainBytes = 0
  let offset = 0
  while (offset < bytes.byteLength) {
    if (bytes.byteLength - offset < HEADER_BYTES + 1) throw invalid('a chunk header is truncated')
    for (let i = 0; i < MAGIC.length; i++) if (bytes[offset + i] !== MAGIC[i]) throw invalid('a chunk does not start with the Automerge magic bytes')
    const type = bytes[offset + 8]!
    const [length, bodyStart] = readUleb(bytes, offset + HEADER_BYTES)
    const end = bodyStart + length
    if (end > bytes.byteLength) throw invalid('a chunk is truncated')
    const body = bytes.subarray(bodyStart, end)
    plainBytes += bodyStart - offset
    if (type === COMPRESSED_CHANGE) parts.push(body)
    else if (type === DOCUMENT) plainBytes += documentDeflatedParts(body, parts)
    else if (type === CHANGE) plainBytes += length
    else throw invalid(`a chunk has the unknown type ${type}`)
    offset = end
  }
  return { parts, plainBytes }
}

/** Adds a document body's deflated columns to `parts`; returns its other bytes. */
function documentDeflatedParts(body: Uint8Array, parts: Uint8Array[]): number {
  let { changeColumns, opColumns, offset } = documentColumns(body)
  let plain = body.byteLength
  for (const [spec, length] of [...changeColumns, ...opColumns]) {
    const start = offset
    offset += length
    if (offset > body.byteLength) throw invalid('a document chunk is shorter than its columns')
    if ((spec & DEFLATE_BIT) === 0) continue
    parts.push(body.subarray(start, offset))
    plain -= length
  }
  return plain
}

/** Where a document body's heads start: after its actors (a count, then length-prefixed ids). */
function skipActors(body: Uint8Array): number {
  let [count, offset] = readUleb(body, 0)
  for (let i = 0; i < count; i++) {
    let actorBytes: number
    ;[actorBytes, offset] = readUleb(body, offset)
    offset += actorBytes
    if (offset > body.byteLength) throw invalid('a document chunk is truncated in its actors')
  }
  return offset
}

function readUleb(bytes: Uint8Array, offset: number): [value: number, next: number] {
  return readLeb(bytes, offset, false)
}

/** A signed LEB128 number (a run-length count: negative for literal runs). */
function readSleb(bytes: Uint8Array, offset: number): [value: number, next: number] {
  return readLeb(bytes, offset, true)
}

/** LEB128 as a safe integer: larger ones are refused (no honest length or count comes near). */
function readLeb(bytes: Uint8Array, offset: number, signed: boolean): [value: number, next: number] {
  let value = 0
  let scale = 1
  for (let i = offset; i < bytes.byteLength; i++) {
    const b = bytes[i]!
    value += (b & 0x7f) * scale
    scale *= 128
    if (value > Number.MAX_SAFE_INTEGER) throw invalid('a length or count is out of range')
    if (b < 0x80) return [signed && (b & 0x40) !== 0 ? value - scale : value, i + 1]
  }
  throw invalid('a length or count is truncated')
}

/** Where the LEB128 number at `offset` ends. */
function skipLeb(bytes: Uint8Array, offset: number): number {
  for (let i = offset; i < bytes.byteLength && i < offset + 10; i++) if (bytes[i]! < 0x80) return i + 1
  throw invalid('a number is truncated or too long')
}

function encodeUleb(n: number): Uint8Array {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return Uint8Array.from(out)
}

/** Inflates raw deflate data to at most `left` bytes; more → ERR_TOO_LARGE (`max` names the limit). */
function inflate(compressed: Uint8Array, left: number, max: number): Uint8Array {
  if (left < 0) throw tooLarge(max)
  let out: Uint8Array
  try {
    // maxOutputLength must be at least 1 and at most a Buffer's largest length; a stream that
    // inflates to more than that stops there.
    out = inflateRawSync(compressed, { maxOutputLength: Math.min(bufferConstants.MAX_LENGTH, Math.max(1, left)) })
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(max)
    throw invalid('a compressed chunk or column does not inflate')
  }
  if (out.byteLength > left) throw tooLarge(max)
  return out
}

function invalid(why: string): ConvergentError {
  return new ConvergentError('ERR_INVALID_DELTA', `These bytes are not a valid Automerge delta: ${why}. Drop them and fetch the entity again through sync.`)
}

function tooLarge(max: number): ConvergentError {
  return new ConvergentError(
    'ERR_TOO_LARGE',
    `This Automerge delta decodes to more than ${max} bytes (maxDecodedBytes; compressed chunks and columns count inflated, every operation ${ROW_BYTES} bytes more). It was not applied.`,
  )
}

/** The type byte of a whole document's chunk. */
export const DOCUMENT_CHUNK = DOCUMENT

/** Some chunks (framing only: checkChunks checks the rest), one by one. */
export function splitChunks(bytes: Uint8Array): Uint8Array[] {
  const chunks: Uint8Array[] = []
  let offset = 0
  while (offset < bytes.byteLength) {
    const start = offset
    const [length, bodyStart] = readUleb(bytes, offset + HEADER_BYTES)
    offset = bodyStart + length
    chunks.push(bytes.subarray(start, offset))
  }
  if (offset !== bytes.byteLength || bytes.byteLength === 0) throw invalid('its chunks do not add up to its length')
  return chunks
}

/** The last chunk of some chunks (local changes, as put/delete return them or merged). */
export function lastChunk(bytes: Uint8Array): Uint8Array {
  return splitChunks(bytes).at(-1)!
}

/**
 * The actor, seq, hash and dependencies of an uncompressed change chunk, read from its header
 * (~2 µs, against ~15–35 µs for A.decodeChange: a micro run over 2,000 small changes): the hash is SHA-256 over type, length and body.
 * Undefined for any other chunk (a compressed change hashes its inflated form: decode those).
 */
export function changeHeader(chunk: Uint8Array): { actor: string; seq: number; hash: string; deps: string[] } | undefined {
  const fields = changeFields(chunk)
  return fields === undefined ? undefined : { ...fields, hash: toHex(sha256(chunk.subarray(8))) }
}

/** changeHeader without the hash (a SHA-256 over the whole chunk: most of its cost). */
export function changeFields(chunk: Uint8Array): { actor: string; seq: number; deps: string[] } | undefined {
  if (chunk[8] !== CHANGE) return undefined
  const [length, bodyStart] = readUleb(chunk, HEADER_BYTES)
  const body = chunk.subarray(bodyStart, bodyStart + length)
  let [count, offset] = readUleb(body, 0)
  const deps: string[] = []
  for (let i = 0; i < count; i++, offset += HASH_BYTES) deps.push(toHex(body.subarray(offset, offset + HASH_BYTES)))
  let n: number
  ;[n, offset] = readUleb(body, offset)
  const actor = toHex(body.subarray(offset, offset + n))
  offset += n
  const [seq] = readUleb(body, offset)
  if (offset > body.byteLength) throw invalid('a change chunk is truncated in its header')
  return { actor, seq, deps }
}

/**
 * The actors whose changes some chunks may hold, from their framing: a document's actor table,
 * a change's actor (a compressed change is decoded). Chunks that checkChunks accepted.
 */
export function chunkActors(bytes: Uint8Array): string[] {
  const actors = new Set<string>()
  for (const chunk of splitChunks(bytes)) {
    const type = chunk[8]
    if (type === CHANGE) {
      actors.add(changeFields(chunk)!.actor)
    } else if (type === DOCUMENT) {
      const [length, bodyStart] = readUleb(chunk, HEADER_BYTES)
      const body = chunk.subarray(bodyStart, bodyStart + length)
      let [count, offset] = readUleb(body, 0)
      for (let i = 0; i < count; i++) {
        let n: number
        ;[n, offset] = readUleb(body, offset)
        if (offset + n > body.byteLength) throw invalid('a document chunk is truncated in its actors')
        actors.add(toHex(body.subarray(offset, offset + n)))
        offset += n
      }
    } else {
      actors.add(A.decodeChange(chunk).actor)
    }
  }
  return [...actors]
}
