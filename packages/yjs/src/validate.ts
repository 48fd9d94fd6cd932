import * as decoding from 'lib0/decoding'
import { ConvergentError } from '@convergent/core'
import { ROOT_NAMES } from './schema.js'

const MAX_CLIENT = 0xffffffff

/**
 * Checks that `bytes` are a Yjs update this backend could have produced, before anything
 * touches a document: Yjs may throw half-way through applying garbage, or accept it silently.
 * Returns a private copy to apply (Yjs decodes views into the underlying buffer, so a
 * truncated view over a bigger buffer would read past its end instead of failing).
 *
 * `allowEmpty` admits the update that carries nothing (the snapshot of an empty document);
 * a delta always carries something.
 */
export function validateUpdate(bytes: Uint8Array, allowEmpty = false): Uint8Array {
  if (bytes.byteLength === 0) throw invalid('it is empty')
  const own = bytes.slice()
  let carried: number
  try {
    carried = scanUpdate(decoding.createDecoder(own))
  } catch (err) {
    if (err instanceof ConvergentError) throw err
    throw invalid(`Yjs cannot decode it (${err instanceof Error ? err.message : String(err)})`)
  }
  if (!allowEmpty && carried === 0) throw invalid('it carries no operation')
  return own
}

// Bits of a struct's info byte (Yjs' update format v1, as its lazy struct reader reads it).
const CONTENT_REF = 0b11111
const HAS_ORIGIN = 0b10000000
const HAS_RIGHT_ORIGIN = 0b01000000
const HAS_PARENT_SUB = 0b00100000
const SKIP = 10
const CONTENT_DELETED = 1
const CONTENT_TYPE = 7
const CONTENT_ANY = 8
const TYPE_ARRAY = 0
const TYPE_MAP = 1
// lib0's tags for the JSON scalars this backend stores as values (writeAny).
const ANY_NULL = 126
const ANY_INT = 125
const ANY_FLOAT32 = 124
const ANY_FLOAT64 = 123
const ANY_FALSE = 121
const ANY_TRUE = 120
const ANY_STRING = 119

/**
 * Reads a v1 update field by field, the way Yjs' own decoder does, without building its
 * structs: applying builds them once, and a decode ahead of it used to cost as much as the
 * apply. Accepts only what this backend writes (JSON scalars, maps, arrays, tombstones, under
 * our two roots) and the update must fill the bytes exactly (Yjs ignores what follows).
 * Returns how many structs and delete ranges it carries.
 */
function scanUpdate(d: decoding.Decoder): number {
  let carried = 0
  const clients = decoding.readVarUint(d)
  for (let c = 0; c < clients; c++) {
    const structs = decoding.readVarUint(d)
    const client = decoding.readVarUint(d)
    if (structs > 0) checkClient(client)
    let clock = decoding.readVarUint(d)
    carried += structs
    for (let i = 0; i < structs; i++) {
      clock += scanStruct(d)
      if (clock > Number.MAX_SAFE_INTEGER) throw invalid('its clocks run past 2^53')
    }
  }
  carried += scanDeleteSet(d)
  if (d.pos !== d.arr.byteLength) throw invalid('it has bytes after the end of the update')
  return carried
}

/** Reads one struct; returns its length (clocks it takes). */
function scanStruct(d: decoding.Decoder): number {
  const info = decoding.readUint8(d)
  if (info === undefined) throw invalid('it ends inside a struct')
  if (info === SKIP || (info & CONTENT_REF) === 0) return length(decoding.readVarUint(d)) // a skip or GC struct
  if ((info & HAS_ORIGIN) !== 0) readId(d)
  if ((info & HAS_RIGHT_ORIGIN) !== 0) readId(d)
  if ((info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN)) === 0) {
    // No origin to copy the parent from: it is named, a root by its key or a type by its id.
    if (decoding.readVarUint(d) === 1) {
      const root = decoding.readVarString(d)
      if (!ROOT_NAMES.has(root)) throw invalid(`it writes to an unknown root type "${root}"`)
    } else {
      readId(d)
    }
    if ((info & HAS_PARENT_SUB) !== 0) decoding.readVarString(d)
  }
  switch (info & CONTENT_REF) {
    case CONTENT_DELETED:
      return length(decoding.readVarUint(d))
    case CONTENT_ANY: {
      const count = length(decoding.readVarUint(d))
      for (let n = 0; n < count; n++) scanScalar(d)
      return count
    }
    case CONTENT_TYPE: {
      const type = decoding.readVarUint(d)
      if (type !== TYPE_ARRAY && type !== TYPE_MAP) throw invalid(`it holds a shared type (ref ${type}) this backend never writes`)
      return 1
    }
    default:
      throw invalid(`it holds content of kind ${info & CONTENT_REF}, which this backend never writes`)
  }
}

/**
 * A struct of length 0 would share its clock with the next one: Yjs stores both, and two
 * replicas could then hold different values under equal version hashes. Yjs never writes one.
 */
function length(n: number): number {
  if (n === 0) throw invalid('it holds a struct of length 0')
  return n
}

/**
 * A value slot holds one JSON scalar here (objects and arrays are Y.Maps and Y.Arrays). Other
 * tags are refused without reading them: lib0 reads nested values recursively, so their
 * depth would decide by stack size, differently from replica to replica.
 */
function scanScalar(d: decoding.Decoder): void {
  const tag = decoding.readUint8(d)
  switch (tag) {
    case ANY_NULL:
    case ANY_FALSE:
    case ANY_TRUE:
      return
    case ANY_INT:
      decoding.readVarInt(d)
      return
    case ANY_FLOAT32:
      decoding.readFloat32(d)
      return
    case ANY_FLOAT64:
      decoding.readFloat64(d)
      return
    case ANY_STRING:
      decoding.readVarString(d)
      return
    default:
      throw invalid(tag === undefined ? 'it ends inside a value' : `it holds a value of lib0 type ${tag}, where this backend writes only JSON scalars`)
  }
}

function readId(d: decoding.Decoder): void {
  decoding.readVarUint(d) // client
  decoding.readVarUint(d) // clock
}

/** Ranges must be non-empty and in order per client (across repeated entries, as Yjs merges them). */
function scanDeleteSet(d: decoding.Decoder): number {
  let ranges = 0
  const ends = new Map<number, number>()
  const clients = decoding.readVarUint(d)
  for (let c = 0; c < clients; c++) {
    const client = decoding.readVarUint(d)
    const count = decoding.readVarUint(d)
    if (count === 0) continue
    checkClient(client)
    let end = ends.get(client) ?? -1
    for (let i = 0; i < count; i++) {
      const clock = decoding.readVarUint(d)
      const len = decoding.readVarUint(d)
      if (len <= 0 || clock < end) throw invalid('its delete set is malformed')
      end = clock + len
      if (end > Number.MAX_SAFE_INTEGER) throw invalid('its delete set runs past 2^53')
    }
    ends.set(client, end)
    ranges += count
  }
  return ranges
}

function checkClient(client: number): void {
  if (client > MAX_CLIENT) throw invalid('it names a client id outside uint32')
}

function invalid(why: string): ConvergentError {
  return new ConvergentError('ERR_INVALID_DELTA', `These bytes are not a valid Yjs delta: ${why}. Drop them and fetch the entity again through sync.`)
}
