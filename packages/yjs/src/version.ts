import * as Y from 'yjs'
import { ConvergentError, bytesEqual } from '@convergent/core'

/**
 * A Yjs version is a snapshot: the delete set and the state vector. The state vector alone
 * is not enough — it does not move on deletions — so two replicas that differ only by a
 * delete would look equal. Yjs writes both parts in a canonical order (clients sorted,
 * delete ranges merged from the struct store), so equal states encode to equal bytes.
 */
export function encodeVersion(doc: Y.Doc): Uint8Array {
  return Y.encodeSnapshot(Y.snapshot(doc))
}

/**
 * Decodes version bytes. The empty byte string is the version of "no document at all".
 * Anything that does not re-encode to the very same bytes is rejected: a canonical encoding
 * is the only thing encodeVersion produces, and Yjs' decoder ignores trailing garbage.
 */
export function decodeVersion(bytes: Uint8Array): Y.Snapshot {
  if (bytes.byteLength === 0) return Y.emptySnapshot
  try {
    const snapshot = Y.decodeSnapshot(bytes.slice())
    if (bytesEqual(Y.encodeSnapshot(snapshot), bytes)) return snapshot
  } catch {
    // fall through
  }
  throw new ConvergentError('ERR_INVALID_VERSION', `These ${bytes.byteLength} bytes are not a Yjs version (delete set + state vector); pass the bytes version() returned.`)
}

/** True when a replica at `remote` already holds every insert and delete `local` holds. */
export function coversSnapshot(remote: Y.Snapshot, local: Y.Snapshot): boolean {
  for (const [client, clock] of local.sv) {
    if ((remote.sv.get(client) ?? 0) < clock) return false
  }
  for (const [client, ranges] of local.ds.clients) {
    const covered = mergedRanges(remote.ds.clients.get(client) ?? [])
    for (const r of ranges) if (!rangeCovered(covered, r.clock, r.clock + r.len)) return false
  }
  return true
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
