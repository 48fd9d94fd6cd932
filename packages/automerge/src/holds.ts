import * as A from '@automerge/automerge'

/**
 * Whether `doc` has applied every change named — A.hasHeads (a change queued there for a
 * missing dependency is not held), answered from the change graph. Automerge 3's hasHeads calls
 * getChangeByHash, which rebuilds the whole change from the op set: ~50–60 µs a hash on a small
 * document, against ~3 µs here. Signed heads ask it several times per entity (which changes a
 * delta brings, whether a head's change is here), so a catch-up paid it per entity.
 *
 * A.getMissingDeps lists the hashes, among those named and those queued changes wait for, that
 * are neither applied nor queued: an empty list means all are applied and nothing is queued (a
 * queued change always waits for a change that is missing). A named hash in it is not held. Any
 * other list means changes are queued, and a named hash may be one of them: hasHeads decides.
 * Hashes that are not 32-byte hex throw, as they do in hasHeads.
 */
export function holdsAll(doc: A.Doc<unknown>, hashes: readonly string[]): boolean {
  if (hashes.length === 0) return true
  const missing = A.getMissingDeps(doc, [...hashes])
  if (missing.length === 0) return true
  const absent = new Set(missing)
  if (hashes.some((h) => absent.has(h))) return false
  return A.hasHeads(doc, [...hashes])
}

/** holdsAll for one change. */
export function holds(doc: A.Doc<unknown>, hash: string): boolean {
  return holdsAll(doc, [hash])
}
