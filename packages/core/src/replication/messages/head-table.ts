import { bytesEqual, latin1, toHex } from '../../hash.js'
import { leafHash, multiproof, rebuildRoot } from '../../trust/merkle.js'
import { decodeStatement, encodeHeadProof, MAX_LEAVES, provenRecords, type HeadProof } from '../../trust/signed-heads.js'
import { MAX_SIGNATURE_BYTES } from '../../trust/signed-push.js'
import { decodeHeaded, encodeHeaded, isHeaded, withHeads } from '../heads.js'
import { asArray, asBytes, asHash, asInt, invalid } from './fields.js'

/**
 * Signed heads of a batch, each statement once (issue #13, W3): what a catch-up sends a peer
 * that reads them (RootsRequest `z`, FEATURE_COMPACT_HEADS) instead of a whole head proof per
 * entity (~0.5 KB: statement, signature, leaf, a 6–7-hash path). A batch of deltas (a
 * DeltasRequest, a RangeResponse) carries a table beside its entries: per statement its bytes
 * and signature once, the leaves of the batch's entities under it, and the few hashes that
 * rebuild its root from those leaves (merkle.ts multiproof). Entries whose heads are in the
 * table go bare; the receiver puts each head proof back together (the paths come out of the
 * rebuilt tree) and hands on ordinary headed deltas, so nothing after the decoder changes and
 * every proof is checked as one that came whole — but for its path, which the table proved
 * (signed-heads.ts, provenRecords). A table whose leaves do not rebuild their
 * statement's root is a malformed message.
 *
 * Wire `t: [[statement, signature, [[entry, leaf, index], …], [hash, …]], …]`.
 */
export type HeadTable = [statement: Uint8Array, signature: Uint8Array, leaves: [entry: number, leaf: Uint8Array, index: number][], hashes: Uint8Array[]][]

/** A head that goes with a delta, decoded (its proof) and as stored (its record). */
export interface OutgoingHead {
  record: Uint8Array
  proof: HeadProof
}

/**
 * The bytes a batch's heads add to it, as its entries come (for sizing batches; an upper bound).
 * A head that goes in the table counts its leaf and up to its path of multiproof hashes, a
 * statement once with its signature; one past the table's room (maxTableLeaves) counts its
 * whole proof, which then goes in its delta.
 */
export class TableSizer {
  private readonly statements = new Set<string>()
  private entries = 0
  private leaves = 0

  /** The bytes an entry's heads add (the entry is counted in the batch). */
  add(heads: readonly OutgoingHead[]): number {
    this.entries++
    let bytes = 0
    for (const { record, proof } of heads) {
      if (this.leaves >= maxTableLeaves(this.entries)) {
        bytes += record.byteLength + 5
        continue
      }
      this.leaves++
      bytes += proof.leaf.byteLength + 8 + 33 * proof.path.length
      const key = toHex(proof.signature)
      if (this.statements.has(key)) continue
      this.statements.add(key)
      bytes += proof.statement.byteLength + proof.signature.byteLength + 8
    }
    return bytes
  }
}

/**
 * Entries with their heads as a batch: bare deltas and one table. Heads that cannot go in the
 * table stay in their delta, as full proofs: past the table's bound, of a statement that does
 * not decode, the same leaf twice, or leaves and paths that do not rebuild their statement's
 * root (a damaged record: it must not make the receiver refuse the whole batch).
 */
export function packHeads<S>(entries: readonly [id: string, delta: S | Uint8Array, heads: readonly OutgoingHead[]][]): {
  entries: [string, S | Uint8Array][]
  table: HeadTable
} {
  const kept: OutgoingHead[][] = entries.map(() => [])
  const groups = new Map<string, { entry: number; head: OutgoingHead }[]>()
  let room = maxTableLeaves(entries.length)
  let unpacked = 0 // what the receiver will rebuild: within its bound (unpackHeads)
  entries.forEach(([, delta, heads], entry) => {
    if (heads.length > 0 && !(delta instanceof Uint8Array)) throw new TypeError(`heads for entry ${entry}, which is not inline`)
    for (const head of heads) {
      const bytes = rebuiltBytes(head.proof.statement, head.proof.signature, head.proof.leaf)
      if (room === 0 || unpacked + bytes > MAX_UNPACKED_BYTES) {
        kept[entry]!.push(head)
        continue
      }
      room--
      unpacked += bytes
      // Signatures vary in length: the length first keeps two pairs from spelling one key.
      const key = `${head.proof.signature.byteLength}:${latin1(head.proof.signature)}${latin1(head.proof.statement)}`
      const group = groups.get(key)
      if (group === undefined) groups.set(key, [{ entry, head }])
      else group.push({ entry, head })
    }
  })
  const table: HeadTable = []
  for (const leaves of groups.values()) {
    const row = tableRow(leaves.sort((a, b) => a.head.proof.index - b.head.proof.index))
    if (row === undefined) for (const l of leaves) kept[l.entry]!.push(l.head)
    else table.push(row)
  }
  return {
    entries: entries.map(([id, delta], entry) => {
      const heads = kept[entry]!
      return [id, heads.length === 0 ? delta : withHeads(delta as Uint8Array, heads)]
    }),
    table,
  }
}

/** The table row of one statement's leaves (sorted by index), if they fit it (see packHeads). */
function tableRow(leaves: readonly { entry: number; head: OutgoingHead }[]): HeadTable[number] | undefined {
  const { statement, signature } = leaves[0]!.head.proof
  let count: number
  let root: Uint8Array
  try {
    ;({ count, root } = decodeStatement(statement))
  } catch {
    return undefined
  }
  const proofs = leaves.map((l) => l.head.proof)
  const hashes = multiproof(count, proofs) // undefined for the same index twice, or paths that do not fit
  if (hashes === undefined) return undefined
  const rebuilt = rebuildRoot(
    count,
    proofs.map((p) => ({ index: p.index, hash: leafHash(p.leaf) })),
    hashes,
  )
  if ('refused' in rebuilt || !bytesEqual(rebuilt.root, root)) return undefined
  return [statement, signature, leaves.map((l): [number, Uint8Array, number] => [l.entry, l.head.proof.leaf, l.head.proof.index]), hashes]
}

/**
 * A statement's bytes (namespace, collection and author of at most 1 KB each, a root, two
 * numbers) and a leaf's (an entity id of at most 1 KB, an actor, a seq, a hash), at most: each
 * is copied into every head proof a table rebuilds.
 */
const MAX_STATEMENT_BYTES = 4096
const MAX_LEAF_BYTES = 1200
/** The head proofs one table may rebuild, in bytes (an honest full batch: a few MB). */
const MAX_UNPACKED_BYTES = 16 * 1024 * 1024

/** What a head proof rebuilt from a table takes, at most (its path: up to 13 hashes). */
function rebuiltBytes(statement: Uint8Array, signature: Uint8Array, leaf: Uint8Array): number {
  return statement.byteLength + signature.byteLength + leaf.byteLength + 32 * 13
}

/**
 * Heads a table may hold for a batch of `entries`: two per entity on average (an entity that
 * many processes wrote sends the rest of its heads in its delta). Rebuilding a root costs up
 * to ~13 hashes a leaf: this bounds what one message makes a receiver hash.
 */
export function maxTableLeaves(entries: number): number {
  return 2 * entries + 64
}

/** The heads a table holds (each rebuilt into a proof when it is unpacked). */
export function tableLeaves(table: HeadTable): number {
  return table.reduce((n, row) => n + row[2].length, 0)
}

/** A table as decoded, shape and bounds checked (InvalidMessageError if not). */
export function decodeHeadTable(v: unknown, entries: number): HeadTable {
  let room = maxTableLeaves(entries)
  return asArray(v, 'head table', maxTableLeaves(entries)).map((g, i) => {
    const t = asArray(g, `head table ${i}`, 4)
    const listed = asArray(t[2], `head table ${i} leaves`, MAX_LEAVES)
    room -= listed.length
    if (room < 0) throw invalid(`a head table of more than ${maxTableLeaves(entries)} leaves for ${entries} entries`)
    const leaves = listed.map((l, j): [number, Uint8Array, number] => {
      const x = asArray(l, `head table ${i} leaf ${j}`, 3)
      const leaf = asBytes(x[1], `head table ${i} leaf ${j}`)
      if (leaf.byteLength > MAX_LEAF_BYTES) throw invalid(`head table ${i} leaf ${j}: ${leaf.byteLength} bytes`)
      return [asInt(x[0], `head table ${i} leaf ${j} entry`, 0, entries - 1), leaf, asInt(x[2], `head table ${i} leaf ${j} index`, 0, MAX_LEAVES - 1)]
    })
    const hashes = asArray(t[3], `head table ${i} hashes`, MAX_LEAVES).map((h, j) => asHash(h, `head table ${i} hash ${j}`))
    const statement = asBytes(t[0], `head table ${i} statement`)
    const signature = asBytes(t[1], `head table ${i} signature`)
    // Both are copied into the proof rebuilt for each leaf: bounded before that multiplies them.
    if (statement.byteLength > MAX_STATEMENT_BYTES) throw invalid(`head table ${i}: a statement of ${statement.byteLength} bytes`)
    if (signature.byteLength > MAX_SIGNATURE_BYTES) throw invalid(`head table ${i}: a signature of ${signature.byteLength} bytes`)
    return [statement, signature, leaves, hashes]
  })
}

/**
 * The entries with the table's heads put back into their deltas (as head proofs, in headed
 * deltas), or InvalidMessageError: a statement that does not decode, leaves that do not rebuild
 * its root, a head for an entry that is not an inline delta.
 */
export function unpackHeads<S>(entries: [string, S | Uint8Array][], table: HeadTable): [string, S | Uint8Array][] {
  if (table.length === 0) return entries
  // What the rebuilt proofs take, bounded before any is made (an honest table: ~0.5 KB a head).
  let bytes = 0
  for (const [statement, signature, leaves] of table) for (const [, leaf] of leaves) bytes += rebuiltBytes(statement, signature, leaf)
  if (bytes > MAX_UNPACKED_BYTES) throw invalid(`a head table that would rebuild ${bytes} bytes of head proofs`)
  const records = new Map<number, Uint8Array[]>()
  table.forEach(([statement, signature, leaves, hashes], i) => {
    let count: number
    let root: Uint8Array
    try {
      ;({ count, root } = decodeStatement(statement))
    } catch (err) {
      throw invalid(`head table ${i}: ${(err as Error).message}`)
    }
    const rebuilt = rebuildRoot(
      count,
      leaves.map(([, leaf, index]) => ({ index, hash: leafHash(leaf) })),
      hashes,
    )
    if ('refused' in rebuilt) throw invalid(`head table ${i}: ${rebuilt.refused}`)
    if (!bytesEqual(rebuilt.root, root)) throw invalid(`head table ${i}: its leaves do not rebuild the statement's root`)
    leaves.forEach(([entry, leaf, index], j) => {
      const record = encodeHeadProof({ statement, signature, leaf, index, path: rebuilt.paths[j]! })
      // The signature is checked where the heads are (HeadVerifier.check); their paths need not be walked again there.
      provenRecords.add(record)
      const list = records.get(entry)
      if (list === undefined) records.set(entry, [record])
      else list.push(record)
    })
  })
  return entries.map(([id, slot], entry) => {
    const added = records.get(entry)
    if (added === undefined) return [id, slot]
    if (!(slot instanceof Uint8Array)) throw invalid(`head table names entry ${entry}, which is not inline`)
    if (!isHeaded(slot)) return [id, encodeHeaded(slot, added)]
    const { delta, heads } = decodeHeaded(slot)
    return [id, encodeHeaded(delta, [...heads, ...added])]
  })
}
