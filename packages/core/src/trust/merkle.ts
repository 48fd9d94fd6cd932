import { bytesEqual, concatBytes, sha256 } from '../hash.js'

/**
 * A Merkle tree over a list of leaves, as Certificate Transparency defines it (RFC 9162,
 * §2.1): leaf hash = SHA-256(0x00 ‖ leaf), node = SHA-256(0x01 ‖ left ‖ right), a list of n > 1
 * leaves split at the largest power of two below n. One signature over the root then vouches
 * for every leaf, and one leaf is proven by its index and the ~log2(n) hashes beside its path
 * (an inclusion proof, §2.1.3), without the other leaves.
 */
const LEAF = new Uint8Array([0])
const NODE = new Uint8Array([1])

export function leafHash(leaf: Uint8Array): Uint8Array {
  return sha256(concatBytes([LEAF, leaf]))
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  const input = new Uint8Array(1 + left.byteLength + right.byteLength)
  input[0] = NODE[0]!
  input.set(left, 1)
  input.set(right, 1 + left.byteLength)
  return sha256(input)
}

/** Where RFC 9162 splits a list of n > 1 leaves: the largest power of two below n. */
export function split(n: number): number {
  let k = 1
  while (k * 2 < n) k *= 2
  return k
}

/** The root over leaf hashes (n ≥ 1) and, for each leaf, its inclusion proof (RFC 9162 PATH). */
export function merkleTree(hashes: readonly Uint8Array[]): { root: Uint8Array; paths: Uint8Array[][] } {
  if (hashes.length === 0) throw new RangeError('a Merkle tree needs at least one leaf')
  if (hashes.length === 1) return { root: hashes[0]!, paths: [[]] }
  const k = split(hashes.length)
  const left = merkleTree(hashes.slice(0, k))
  const right = merkleTree(hashes.slice(k))
  return {
    root: nodeHash(left.root, right.root),
    paths: [...left.paths.map((p) => [...p, right.root]), ...right.paths.map((p) => [...p, left.root])],
  }
}

/** RFC 9162 §2.1.3.2: true if `path` proves the leaf hash at `index` of a tree of `size` leaves with this root. */
export function verifyInclusion(hash: Uint8Array, index: number, size: number, path: readonly Uint8Array[], root: Uint8Array): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false
  let fn = index
  let sn = size - 1
  let r = hash
  for (const p of path) {
    if (sn === 0) return false
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r)
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2)
          sn = Math.floor(sn / 2)
        }
      }
    } else {
      r = nodeHash(r, p)
    }
    fn = Math.floor(fn / 2)
    sn = Math.floor(sn / 2)
  }
  return sn === 0 && bytesEqual(r, root)
}

/** A leaf of a multiproof: its index in the tree and its inclusion path (RFC 9162 PATH, bottom-up). */
export interface ProvenLeaf {
  index: number
  path: readonly Uint8Array[]
}

/**
 * The hashes that, with some of a tree's leaves, rebuild its root (a multiproof): the roots of
 * the subtrees that hold none of those leaves, in the order rebuildRoot takes them (depth
 * first, left before right). Taken from the leaves' own inclusion paths, so a replica that
 * holds some leaves of a statement with their paths can prove them all with one list: all
 * leaves of a tree need no hash, one leaf needs its path. `leaves` sorted by index, distinct.
 * Undefined if the paths do not fit a tree of `count` leaves (a damaged record).
 */
export function multiproof(count: number, leaves: readonly ProvenLeaf[]): Uint8Array[] | undefined {
  const out: Uint8Array[] = []
  // `up`: path entries above this subtree (its leaves' paths end with the siblings of its ancestors).
  const prove = (lo: number, hi: number, items: readonly ProvenLeaf[], up: number): boolean => {
    if (hi - lo === 1) return items.length === 1 && items[0]!.path.length === up
    const k = split(hi - lo)
    const mid = items.findIndex((l) => l.index >= lo + k)
    const left = mid === -1 ? items : items.slice(0, mid)
    const right = mid === -1 ? [] : items.slice(mid)
    // A half with none of the leaves: its root is the sibling each leaf of the other half names here.
    const sibling = (of: ProvenLeaf): Uint8Array | undefined => of.path[of.path.length - 1 - up]
    if (left.length === 0) {
      const hash = sibling(right[0]!)
      if (hash === undefined) return false
      out.push(hash)
    } else if (!prove(lo, lo + k, left, up + 1)) return false
    if (right.length === 0) {
      const hash = sibling(left[0]!)
      if (hash === undefined) return false
      out.push(hash)
    } else if (!prove(lo + k, hi, right, up + 1)) return false
    return true
  }
  if (leaves.length === 0 || leaves.some((l, i) => l.index < 0 || l.index >= count || (i > 0 && l.index <= leaves[i - 1]!.index))) return undefined
  return prove(0, count, leaves, 0) ? out : undefined
}

/**
 * The root of a tree of `count` leaves rebuilt from some of its leaf hashes (sorted by index,
 * distinct) and the multiproof's hashes, with each leaf's inclusion path — or why not (too
 * few or too many hashes, indexes out of order or out of the tree). The root is not checked
 * here: the caller compares it with what was signed.
 */
export function rebuildRoot(
  count: number,
  leaves: readonly { index: number; hash: Uint8Array }[],
  hashes: readonly Uint8Array[],
): { root: Uint8Array; paths: Uint8Array[][] } | { refused: string } {
  if (!Number.isSafeInteger(count) || count < 1) return { refused: `a tree of ${count} leaves` }
  if (leaves.length === 0) return { refused: 'no leaves' }
  for (let i = 0; i < leaves.length; i++) {
    const index = leaves[i]!.index
    if (!Number.isSafeInteger(index) || index < 0 || index >= count) return { refused: `leaf index ${index} of a tree of ${count}` }
    if (i > 0 && index <= leaves[i - 1]!.index) return { refused: 'leaf indexes not in ascending order' }
  }
  const paths: Uint8Array[][] = leaves.map(() => [])
  let next = 0
  // Leaves [from, to) of the sorted list lie in the subtree [lo, hi).
  const build = (lo: number, hi: number, from: number, to: number): Uint8Array | undefined => {
    if (from === to) return hashes[next++]
    if (hi - lo === 1) return leaves[from]!.hash
    const k = split(hi - lo)
    let mid = from
    while (mid < to && leaves[mid]!.index < lo + k) mid++
    const left = build(lo, lo + k, from, mid)
    const right = left === undefined ? undefined : build(lo + k, hi, mid, to)
    if (left === undefined || right === undefined) return undefined
    for (let j = from; j < mid; j++) paths[j]!.push(right)
    for (let j = mid; j < to; j++) paths[j]!.push(left)
    return nodeHash(left, right)
  }
  const root = build(0, count, 0, leaves.length)
  if (root === undefined) return { refused: `fewer hashes than the leaves need (${hashes.length})` }
  if (next !== hashes.length) return { refused: `${hashes.length - next} hashes more than the leaves need` }
  return { root, paths }
}
