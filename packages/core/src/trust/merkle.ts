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

function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  const input = new Uint8Array(1 + left.byteLength + right.byteLength)
  input[0] = NODE[0]!
  input.set(left, 1)
  input.set(right, 1 + left.byteLength)
  return sha256(input)
}

function split(n: number): number {
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
