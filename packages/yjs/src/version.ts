import * as Y from 'yjs'
import { ConvergentError, bytesEqual, sha256 } from '@convergent/core'
import { entityText, type TextCache } from './read.js'

/**
 * A Yjs version is a snapshot: the delete set and the state vector. The state vector alone
 * is not enough — it does not move on deletions — so two replicas that differ only by a
 * delete would look equal. Yjs writes both parts in a canonical order (clients sorted,
 * delete ranges merged from the struct store), so equal states encode to equal bytes.
 *
 * The bytes are exactly Y.encodeSnapshot(Y.snapshot(doc)), but built from a delete set kept
 * up to date transaction by transaction (see Tracked) instead of a scan of every struct:
 * a hot entity's struct store grows with every overwrite of a field (tombstones of different
 * keys do not merge), which made each write's version O(history).
 */
export function encodeVersion(doc: Y.Doc): Uint8Array {
  const t = track(doc)
  t.bytes ??= encode(doc, t)
  return t.bytes.slice()
}

/**
 * The version hash: sha256 of encodeVersion(doc) followed by the value the document reads as
 * (entityText: canonical JSON, empty when it reads undefined). Computed once per state.
 *
 * Why the value and not only the version: the version names operations by (client, clock),
 * and a forged update can put different content under ids an honest replica also holds.
 * Replicas that hold different content under equal versions then read differently for good,
 * and anti-entropy, which compares these hashes, must see that they differ. Honest replicas
 * that hold the same operations read the same value (that is what convergence means), so the
 * hash stays equal on them. Structs still waiting for their dependencies (pending) are in
 * neither part: the value is read from integrated structs only, as the version is.
 */
export function versionHashOf(doc: Y.Doc): Uint8Array {
  const t = track(doc)
  if (t.hash === undefined) {
    // One string, hashed in one call (cheaper than a Hash object fed twice): the version's
    // bytes as latin1 characters (self-delimiting, so the value needs no length), then the value.
    const version = (t.bytes ??= encode(doc, t))
    t.hash = sha256(Buffer.from(version.buffer, version.byteOffset, version.byteLength).toString('latin1') + entityText(doc, t.texts))
  }
  return t.hash
}

/** What we keep per document; dropped with it (WeakMap). */
interface Tracked {
  /** Deleted clock ranges per client, flat [start, end, start, end, …], sorted and merged. */
  readonly ds: Map<number, number[]>
  /** encodeVersion's bytes and the version hash, until the next transaction. */
  bytes: Uint8Array | undefined
  hash: Uint8Array | undefined
  /** entityText's text of each Y.Map and Y.Array, until a transaction changes it or one inside it. */
  readonly texts: TextCache
}

const tracked = new WeakMap<Y.Doc, Tracked>()

function track(doc: Y.Doc): Tracked {
  let t = tracked.get(doc)
  if (t === undefined) {
    const fresh: Tracked = { ds: deleteRangesOf(doc.store), bytes: undefined, hash: undefined, texts: new WeakMap() }
    doc.on('afterTransaction', (tr: Y.Transaction) => onTransaction(fresh, tr))
    tracked.set(doc, fresh)
    t = fresh
  }
  return t
}

/**
 * Adds what one transaction deleted. A struct becomes deleted either in the transaction that
 * deletes it (it is then in tr.deleteSet) or by arriving deleted (a GC struct or deleted
 * content in a received update): those are among the structs the transaction added, which
 * are exactly the clocks between its before and after state. Adding a range twice is
 * harmless, and splits or merges of structs never change what is deleted.
 */
function onTransaction(t: Tracked, tr: Y.Transaction): void {
  t.bytes = undefined
  t.hash = undefined
  // Yjs records every type that existed before the transaction and got an entry added or
  // deleted (types made in it are new to the cache); the texts of those holding it change too.
  // A type whose text is not kept has no kept text above it either: the walk stops there.
  tr.changed.forEach((_, type) => {
    let ty: Y.AbstractType<Y.YEvent<Y.AbstractType<unknown>>> | null = type
    while (ty !== null && t.texts.delete(ty)) ty = (ty._item?.parent ?? null) as typeof ty
  })
  tr.deleteSet.clients.forEach((items, client) => {
    for (const item of items) addRange(t.ds, client, item.clock, item.clock + item.len)
  })
  tr.afterState.forEach((after, client) => {
    const before = tr.beforeState.get(client) ?? 0
    if (after <= before) return
    const structs = tr.doc.store.clients.get(client)!
    for (let i = Y.findIndexSS(structs, before); i < structs.length; i++) {
      const struct = structs[i]!
      if (struct.deleted) addRange(t.ds, client, struct.id.clock, struct.id.clock + struct.length)
    }
  })
}

/** The delete set from a scan of the struct store (as Yjs' createDeleteSetFromStructStore). */
function deleteRangesOf(store: Y.Doc['store']): Map<number, number[]> {
  const ds = new Map<number, number[]>()
  store.clients.forEach((structs, client) => {
    for (const struct of structs) if (struct.deleted) addRange(ds, client, struct.id.clock, struct.id.clock + struct.length)
  })
  return ds
}

/** Adds [start, end) to a client's ranges, merging with every range it overlaps or touches. */
export function addRange(ds: Map<number, number[]>, client: number, start: number, end: number): void {
  const r = ds.get(client)
  if (r === undefined) {
    ds.set(client, [start, end])
    return
  }
  const n = r.length
  // Fast paths: deletes of recent structs land after or on the last range.
  if (start > r[n - 1]!) {
    r.push(start, end)
    return
  }
  if (start >= r[n - 2]!) {
    r[n - 1] = Math.max(r[n - 1]!, end)
    return
  }
  // The first range that ends at or after start, then every range that starts by end.
  let lo = 0
  let hi = n / 2
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (r[2 * mid + 1]! < start) lo = mid + 1
    else hi = mid
  }
  let j = lo
  let s = start
  let e = end
  while (j < n / 2 && r[2 * j]! <= e) {
    s = Math.min(s, r[2 * j]!)
    e = Math.max(e, r[2 * j + 1]!)
    j++
  }
  r.splice(2 * lo, 2 * (j - lo), s, e)
}

/** Y.encodeSnapshot's V1 layout: delete set, then state vector, clients in descending order. */
function encode(doc: Y.Doc, t: Tracked): Uint8Array {
  const w = new VarUintWriter()
  const dsClients = Array.from(t.ds.keys()).sort((a, b) => b - a)
  w.write(dsClients.length)
  for (const client of dsClients) {
    const r = t.ds.get(client)!
    w.write(client)
    w.write(r.length / 2)
    for (let i = 0; i < r.length; i += 2) {
      w.write(r[i]!)
      w.write(r[i + 1]! - r[i]!)
    }
  }
  const svClients = Array.from(doc.store.clients.keys()).sort((a, b) => b - a)
  w.write(svClients.length)
  for (const client of svClients) {
    const structs = doc.store.clients.get(client)!
    const last = structs[structs.length - 1]!
    w.write(client)
    w.write(last.id.clock + last.length)
  }
  return w.bytes()
}

/** lib0's writeVarUint into one growing buffer (shared: encode() never runs re-entrantly). */
class VarUintWriter {
  private static shared = new Uint8Array(256)
  private buf = VarUintWriter.shared
  private pos = 0

  write(n: number): void {
    if (this.pos + 8 > this.buf.length) {
      const bigger = new Uint8Array(this.buf.length * 2)
      bigger.set(this.buf)
      this.buf = VarUintWriter.shared = bigger
    }
    while (n > 0x7f) {
      this.buf[this.pos++] = 0x80 | (n & 0x7f)
      n = Math.floor(n / 128)
    }
    this.buf[this.pos++] = n & 0x7f
  }

  bytes(): Uint8Array {
    return this.buf.slice(0, this.pos)
  }
}

const EMPTY_VERSION = Y.encodeSnapshot(Y.emptySnapshot)

/**
 * Decodes version bytes. The empty byte string is the version of "no document at all".
 * Anything that does not re-encode to the very same bytes is rejected: a canonical encoding
 * is the only thing encodeVersion produces, and Yjs' decoder ignores trailing garbage.
 */
export function decodeVersion(bytes: Uint8Array): Y.Snapshot {
  // The empty document's version (what a peer that holds nothing sends, and what a whole
  // state is computed against): no decoding.
  if (bytes.byteLength === 0 || bytesEqual(bytes, EMPTY_VERSION)) return Y.emptySnapshot
  try {
    const snapshot = Y.decodeSnapshot(bytes.slice())
    if (bytesEqual(Y.encodeSnapshot(snapshot), bytes)) return snapshot
  } catch {
    // fall through
  }
  throw new ConvergentError(
    'ERR_INVALID_VERSION',
    `These ${bytes.byteLength} bytes are not a Yjs version (delete set + state vector); pass the bytes version() returned.`,
  )
}

/**
 * True when a replica at `remote` already holds every insert and delete `doc` holds. From the
 * tracked delete set and the struct store's last clocks, not Y.snapshot(doc), which scans
 * every struct: an anti-entropy exchange asks this of every entity that differs.
 */
export function coversDoc(remote: Y.Snapshot, doc: Y.Doc): boolean {
  for (const [client, structs] of doc.store.clients) {
    const last = structs[structs.length - 1]!
    if ((remote.sv.get(client) ?? 0) < last.id.clock + last.length) return false
  }
  for (const [client, ranges] of track(doc).ds) {
    const covered = mergedRanges(remote.ds.clients.get(client) ?? [])
    for (let i = 0; i < ranges.length; i += 2) if (!rangeCovered(covered, ranges[i]!, ranges[i + 1]!)) return false
  }
  return true
}

/**
 * True when `doc` holds every insert and delete of a replica at `wanted` — coversDoc the other
 * way round. The state vector alone would answer yes to a delete at once: it does not move on
 * deletions, so the wanted delete set must lie within the document's tracked one too.
 */
export function includesVersion(doc: Y.Doc, wanted: Y.Snapshot): boolean {
  for (const [client, clock] of wanted.sv) {
    const structs = doc.store.clients.get(client)
    const last = structs?.[structs.length - 1]
    if ((last === undefined ? 0 : last.id.clock + last.length) < clock) return false
  }
  const ds = track(doc).ds
  for (const [client, items] of wanted.ds.clients) {
    const held = ds.get(client) ?? []
    for (const item of items) if (!flatCovered(held, item.clock, item.clock + item.len)) return false
  }
  return true
}

/** Whether [start, end) lies inside one range of flat, sorted, merged [start, end, …] ranges. */
function flatCovered(r: readonly number[], start: number, end: number): boolean {
  if (start >= end) return true
  let lo = 0
  let hi = r.length / 2 - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    if (r[2 * mid + 1]! <= start) lo = mid + 1
    else if (r[2 * mid]! > start) hi = mid - 1
    else return r[2 * mid + 1]! >= end
  }
  return false
}

interface Range {
  start: number
  end: number
}

/** Sorted, merged [start, end) ranges, so a covered interval lies inside one of them. */
function mergedRanges(items: readonly { clock: number; len: number }[]): Range[] {
  const sorted = items.map((i) => ({ start: i.clock, end: i.clock + i.len })).sort((a, b) => a.start - b.start)
  const out: Range[] = []
  for (const r of sorted) {
    const last = out[out.length - 1]
    if (last !== undefined && r.start <= last.end) last.end = Math.max(last.end, r.end)
    else out.push(r)
  }
  return out
}

function rangeCovered(ranges: readonly Range[], start: number, end: number): boolean {
  if (start >= end) return true
  let lo = 0
  let hi = ranges.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const r = ranges[mid]!
    if (r.end <= start) lo = mid + 1
    else if (r.start > start) hi = mid - 1
    else return r.end >= end
  }
  return false
}
