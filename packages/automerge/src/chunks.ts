import { inflateRawSync } from 'node:zlib'
import * as A from '@automerge/automerge'
import { ConvergentError, bytesEqual, sha256 } from '@convergent/core'

/**
 * Automerge binary data is a sequence of chunks:
 *   magic (85 6f 4a 83) · checksum (4 bytes) · type (1 byte) · body length (uLEB128) · body
 * The checksum is the first 4 bytes of SHA-256 over type, length and body (for a compressed
 * change: over the uncompressed change). Automerge's loadIncremental throws only when the
 * first chunk is bad: it silently skips a bad chunk after a good one, and accepts empty input.
 * So the framing and every checksum are verified here, before Automerge sees the bytes.
 */
const MAGIC = [0x85, 0x6f, 0x4a, 0x83]
const DOCUMENT = 0
const CHANGE = 1
const COMPRESSED_CHANGE = 2
const HEADER_BYTES = 9 // magic + checksum + type, before the length
const MAX_INFLATED_BYTES = 64 * 1024 * 1024

export interface CheckedChunks {
  /** Whether any chunk is a change (plain or compressed), as opposed to a whole document. */
  readonly hasChange: boolean
}

/**
 * Verifies framing and checksums. With `parseAfterFirst`, the chunks after the first are also
 * parsed: a body that is garbage under a valid checksum would otherwise be skipped by
 * loadIncremental after a good first chunk and stored with it — and a later A.load of the
 * stored bytes drops everything on it. (The first chunk needs no parse: Automerge throws on it.)
 */
export function checkChunks(bytes: Uint8Array, parseAfterFirst = false): CheckedChunks {
  if (bytes.byteLength === 0) throw invalid('it is empty')
  let offset = 0
  let hasChange = false
  while (offset < bytes.byteLength) {
    const start = offset
    const type = bytes[offset + 8]
    offset = checkChunk(bytes, offset)
    if (type !== DOCUMENT) hasChange = true
    if (parseAfterFirst && start > 0) parseChunk(bytes.subarray(start, offset), type === DOCUMENT)
  }
  return { hasChange }
}

function parseChunk(chunk: Uint8Array, document: boolean): void {
  try {
    if (document) A.free(A.load(chunk))
    else A.decodeChange(chunk)
  } catch {
    throw invalid(`a ${document ? 'document' : 'change'} chunk after the first does not parse`)
  }
}

/** Verifies one chunk starting at `offset`; returns where the next one starts. */
function checkChunk(bytes: Uint8Array, offset: number): number {
  if (bytes.byteLength - offset < HEADER_BYTES + 1) throw invalid('a chunk header is truncated')
  for (let i = 0; i < MAGIC.length; i++) {
    if (bytes[offset + i] !== MAGIC[i]) throw invalid('a chunk does not start with the Automerge magic bytes')
  }
  const checksum = bytes.subarray(offset + 4, offset + 8)
  const type = bytes[offset + 8]!
  const [length, bodyStart] = readUleb(bytes, offset + HEADER_BYTES)
  const end = bodyStart + length
  if (end > bytes.byteLength) throw invalid('a chunk is truncated')

  let hash: Uint8Array
  if (type === DOCUMENT || type === CHANGE) {
    hash = sha256(bytes.subarray(offset + 8, end))
  } else if (type === COMPRESSED_CHANGE) {
    const body = inflate(bytes.subarray(bodyStart, end))
    hash = sha256(Uint8Array.of(CHANGE), encodeUleb(body.byteLength), body)
  } else {
    throw invalid(`a chunk has the unknown type ${type}`)
  }
  if (!bytesEqual(hash.subarray(0, 4), checksum)) throw invalid('a chunk fails its checksum')
  return end
}

function readUleb(bytes: Uint8Array, offset: number): [value: number, next: number] {
  let value = 0
  let scale = 1
  for (let i = offset; i < bytes.byteLength; i++) {
    const b = bytes[i]!
    value += (b & 0x7f) * scale
    if (value > Number.MAX_SAFE_INTEGER) throw invalid('a chunk length is out of range')
    if (b < 0x80) return [value, i + 1]
    scale *= 128
  }
  throw invalid('a chunk length is truncated')
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

function inflate(compressed: Uint8Array): Uint8Array {
  try {
    return inflateRawSync(compressed, { maxOutputLength: MAX_INFLATED_BYTES })
  } catch {
    throw invalid('a compressed chunk does not inflate')
  }
}

function invalid(why: string): ConvergentError {
  return new ConvergentError('ERR_INVALID_DELTA', `These bytes are not a valid Automerge delta: ${why}. Drop them and fetch the entity again through sync.`)
}
