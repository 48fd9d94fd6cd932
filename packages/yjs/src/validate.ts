import * as decoding from 'lib0/decoding'
import * as Y from 'yjs'
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
  return scan(bytes, allowEmpty, undefined).own
}

/**
 * validateUpdate, for applying to `doc`: the bytes to hand to Y.applyUpdate. When a struct
 * begins before what `doc` holds of its client and ends after it, Yjs integrates its unknown
 * part next to the struct it holds at the clock before, with the parent the update names: a
 * forged update can name one that does not fit there (Yjs then throws half-way, or builds a
 * structure it throws on later). Such an update is cut to what `doc` lacks first
 * (Y.diffUpdate), so the cut part takes its parent from the struct before it, as Yjs itself
 * writes a struct it sends from an offset. For an honest update both ways give the same.
 */
export function updateToApply(bytes: Uint8Array, doc: Y.Doc, allowEmpty = false): Uint8Array {
  const { own, overlaps } = scan(bytes, allowEmpty, doc.store.clients)
  return overlaps ? Y.diffUpdate(own, Y.encodeStateVector(doc)) : own
}

/**
 * After a remote update was applied in `tr` (before the transaction ends): throws if it left a
 * live map entry that is not a single value holding its key (what Y.Map.set always writes).
 * Yjs keeps such an entry live to the left of its key's value and throws in a later
 * transaction — any later one that deletes the map, a local put included — when it collects
 * it. The scan sees this only where the entry takes its key from a struct the document already
 * holds, not from one in the same update. Only the structs the transaction added are looked at.
 */
export function checkIntegrated(tr: Y.Transaction): void {
  tr.doc.store.clients.forEach((structs, client) => {
    const before = tr.beforeState.get(client) ?? 0
    const last = structs[structs.length - 1]!
    if (last.id.clock + last.length <= before) return
    for (let i = Y.findIndexSS(structs, before); i < structs.length; i++) {
      const s = structs[i]!
      if (!(s instanceof Y.Item) || s.deleted || s.parentSub === null) continue
      if (s.length !== 1 || (s.parent as Y.AbstractType<unknown>)._map.get(s.parentSub) !== s) {
        throw invalid("it makes a map entry of several values, or one that is not its key's value")
      }
    }
  })
}

function scan(bytes: Uint8Array, allowEmpty: boolean, held: HeldStructs | undefined): { own: Uint8Array; overlaps: boolean } {
  if (bytes.byteLength === 0) throw invalid('it is empty')
  const own = bytes.slice()
  let result: ScanResult
  try {
    result = scanUpdate(decoding.createDecoder(own), held)
  } catch (err) {
    if (err instanceof ConvergentError) throw err
    throw invalid(`Yjs cannot decode it (${err instanceof Error ? err.message : String(err)})`)
  }
  if (!allowEmpty && result.carried === 0) throw invalid('it carries no operation')
  return { own, overlaps: result.overlaps }
}

interface ScanResult {
  /** How many structs and delete ranges the update carries. */
  carried: number
  /** True if a struct begins before the state the document holds of its client and ends after it. */
  overlaps: boolean
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
 * structs: applying builds them once, and a full decode ahead of it would cost as much as
 * the apply. Accepts only what this backend writes (JSON scalars, maps, arrays, tombstones, under
 * our two roots) and the update must fill the bytes exactly (Yjs ignores what follows).
 * `held`: the struct store of the document it is for, if any (to find partial overlaps).
 */
function scanUpdate(d: decoding.Decoder, held: HeldStructs | undefined): ScanResult {
  let carried = 0
  let overlaps = false
  const clients = decoding.readVarUint(d)
  const seen = clients > 1 ? new Set<number>() : undefined
  for (let c = 0; c < clients; c++) {
    const structs = decoding.readVarUint(d)
    const client = decoding.readVarUint(d)
    if (structs > 0) checkClient(client)
    // Yjs keeps only the last group of a client and drops the others without a word (its
    // merge keeps them all): refused, as its own writers never repeat a client.
    if (seen !== undefined) {
      if (seen.has(client)) throw invalid('it lists a client twice')
      seen.add(client)
    }
    let clock = decoding.readVarUint(d)
    const heldStructs = held?.get(client)
    const last = heldStructs?.[heldStructs.length - 1]
    const state = last === undefined ? 0 : last.id.clock + last.length
    carried += structs
    for (let i = 0; i < structs; i++) {
      const start = clock
      clock += scanStruct(d, client, clock, held)
      if (clock > Number.MAX_SAFE_INTEGER) throw invalid('its clocks run past 2^53')
      if (start < state && state < clock) overlaps = true
    }
  }
  carried += scanDeleteSet(d)
  if (d.pos !== d.arr.byteLength) throw invalid('it has bytes after the end of the update')
  return { carried, overlaps }
}

/** What scanUpdate is given of the document an update is for: its struct store. */
type HeldStructs = Map<number, readonly (Y.Item | Y.GC)[]>

/** Reads one struct, the one of `client` at `clock`; returns its length (clocks it takes). */
function scanStruct(d: decoding.Decoder, client: number, clock: number, held: HeldStructs | undefined): number {
  const info = decoding.readUint8(d)
  if (info === undefined) throw invalid('it ends inside a struct')
  if (info === SKIP || (info & CONTENT_REF) === 0) return length(decoding.readVarUint(d)) // a skip or GC struct
  // The neighbour Yjs copies the parent and key from: the origin, else the right origin.
  let neighbourClient = -1
  let neighbourClock = -1
  if ((info & HAS_RIGHT_ORIGIN) !== 0 || (info & HAS_ORIGIN) !== 0) {
    if ((info & HAS_ORIGIN) !== 0) {
      neighbourClient = decoding.readVarUint(d)
      neighbourClock = decoding.readVarUint(d)
      checkEarlier(client, clock, neighbourClient, neighbourClock)
    }
    if ((info & HAS_RIGHT_ORIGIN) !== 0) {
      const rightClient = decoding.readVarUint(d)
      const rightClock = decoding.readVarUint(d)
      checkEarlier(client, clock, rightClient, rightClock)
      if (neighbourClient < 0) {
        neighbourClient = rightClient
        neighbourClock = rightClock
      }
    }
  }
  let mapEntry = false
  if ((info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN)) === 0) {
    // No origin to copy the parent from: it is named, a root by its key or a type by its id.
    if (decoding.readVarUint(d) === 1) {
      const root = decoding.readVarString(d)
      if (!ROOT_NAMES.has(root)) throw invalid(`it writes to an unknown root type "${root}"`)
    } else {
      checkEarlier(client, clock, decoding.readVarUint(d), decoding.readVarUint(d))
    }
    if ((info & HAS_PARENT_SUB) !== 0) {
      decoding.readVarString(d)
      mapEntry = true
    }
  }
  switch (info & CONTENT_REF) {
    case CONTENT_DELETED:
      return length(decoding.readVarUint(d))
    case CONTENT_ANY: {
      const count = length(decoding.readVarUint(d))
      // A map entry is one value (Y.Map.set writes one). Yjs would keep all but the last of
      // several live, to the left of the entry's value, and throw when it collects them later.
      // An entry takes its key from its neighbour when it has one: known when the document holds it.
      if (count !== 1 && (mapEntry || (neighbourClient >= 0 && isMapEntry(held, neighbourClient, neighbourClock)))) {
        throw invalid('a map entry holds several values')
      }
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
 * An id a struct refers to (origin, right origin, parent) that is of the struct's own client
 * must come before it: a client writes in clock order, so what it referred to already existed.
 * Yjs checks that other clients' ids have arrived (else the struct waits), but looks its own
 * client's up in the store directly, and throws half-way through the update when it is not there.
 */
function checkEarlier(client: number, clock: number, idClient: number, idClock: number): void {
  if (idClient === client && idClock >= clock) throw invalid('a struct refers to a later one of its own client')
}

/** True if the document holds the struct at (client, clock) and it is an entry of a map. */
function isMapEntry(held: HeldStructs | undefined, client: number, clock: number): boolean {
  const structs = held?.get(client)
  if (structs === undefined || structs.length === 0) return false
  const last = structs[structs.length - 1]!
  if (clock >= last.id.clock + last.length) return false
  const struct = structs[Y.findIndexSS(structs as (Y.Item | Y.GC)[], clock)]
  return struct instanceof Y.Item && struct.parentSub !== null
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
