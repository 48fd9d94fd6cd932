import { ConvergentError } from './errors.js'
import { sha256, xorInto, bytesEqual } from './hash.js'

/**
 * Per-collection anti-entropy digest: a 16-ary Merkle tree of depth 4 over 65,536 leaves.
 * An entity lives in the leaf given by the first 16 bits of sha256(id); a node's digest is the
 * XOR of H(id, versionHash) over every entity below it. XOR makes each write an O(depth)
 * update with no re-reading, and the value does not depend on the order of writes, so two
 * replicas with equal entities have equal trees. Empty nodes are all-zero and are not stored.
 */
export const LEAF_BITS = 16
export const LEAF_COUNT = 1 << LEAF_BITS
export const FANOUT = 16
export const DEPTH = 4 // levels below the root: 16^4 = 65,536 leaves
export const DIGEST_BYTES = 32

const ZERO = new Uint8Array(DIGEST_BYTES)

/** The leaf (0 … 65,535) an entity id belongs to. */
export function leafOf(id: string): number {
  const h = sha256(id)
  return (h[0]! << 8) | h[1]!
}

/** The contribution of one entity version to every digest above it. */
export function entityHash(id: string, versionHash: Uint8Array): Uint8Array {
  return sha256(id, '\u0000', versionHash)
}

/** Index of a leaf's ancestor at `level` (0 = root, DEPTH = the leaf itself). */
export function ancestorAt(leaf: number, level: number): number {
  return leaf >>> (4 * (DEPTH - level))
}

export class DigestTree {
  /** levels[L] maps node index → digest; levels[DEPTH] are the leaves. */
  private readonly levels: Map<number, Uint8Array>[] = []

  constructor() {
    for (let l = 0; l <= DEPTH; l++) this.levels.push(new Map())
  }

  /** Loads a stored leaf (at open). */
  loadLeaf(leaf: number, digest: Uint8Array): void {
    if (digest.byteLength !== DIGEST_BYTES) {
      throw new ConvergentError('ERR_STORE', `Digest leaf ${leaf} is ${digest.byteLength} bytes, not ${DIGEST_BYTES}; the store is corrupt.`)
    }
    this.apply(leaf, digest)
  }

  /**
   * Replaces an entity's contribution: removes H(id, oldVersion) (if any), adds H(id, newVersion).
   * Returns the new digest of the leaf (to persist in the same batch as the entity).
   */
  update(id: string, leaf: number, oldVersion: Uint8Array | undefined, newVersion: Uint8Array | undefined): Uint8Array {
    const delta = new Uint8Array(DIGEST_BYTES)
    if (oldVersion) xorInto(delta, entityHash(id, oldVersion))
    if (newVersion) xorInto(delta, entityHash(id, newVersion))
    this.apply(leaf, delta)
    return this.node(DEPTH, leaf)
  }

  /** XORs `delta` into the leaf and every ancestor, in place (the tree owns its arrays). */
  private apply(leaf: number, delta: Uint8Array): void {
    if (bytesEqual(delta, ZERO)) return
    for (let l = 0; l <= DEPTH; l++) {
      const idx = ancestorAt(leaf, l)
      const map = this.levels[l]!
      const cur = map.get(idx)
      if (cur === undefined) {
        map.set(idx, delta.slice())
        continue
      }
      xorInto(cur, delta)
      if (bytesEqual(cur, ZERO)) map.delete(idx)
    }
  }

  /** Sets a leaf's digest (and its ancestors'), e.g. after it was recomputed from the heads. */
  setLeaf(leaf: number, digest: Uint8Array): void {
    const delta = this.node(DEPTH, leaf)
    xorInto(delta, digest)
    this.apply(leaf, delta)
  }

  /** Every non-empty leaf with its digest (copies). */
  leafDigests(): Map<number, Uint8Array> {
    const out = new Map<number, Uint8Array>()
    for (const [leaf, digest] of this.levels[DEPTH]!) out.set(leaf, digest.slice())
    return out
  }

  /** Whether a leaf holds any entity (an empty one is all-zero, and kept as no entry). */
  hasLeaf(leaf: number): boolean {
    return this.levels[DEPTH]!.has(leaf)
  }

  /** A node's digest (all-zero if empty). */
  node(level: number, index: number): Uint8Array {
    // A copy: the tree changes its own arrays in place on every update.
    return (this.levels[level]!.get(index) ?? ZERO).slice()
  }

  root(): Uint8Array {
    return this.node(0, 0)
  }

  /**
   * A node's children, sparse: [mask, digests], bit k of mask set when child k is not empty,
   * digests holding those children's digests in order (what anti-entropy sends: deep in the
   * tree most children are empty).
   */
  sparseChildren(level: number, index: number): [number, Uint8Array] {
    const below = this.levels[level + 1]!
    const kept: Uint8Array[] = []
    let mask = 0
    for (let k = 0; k < FANOUT; k++) {
      const digest = below.get(index * FANOUT + k)
      if (digest === undefined) continue
      mask |= 1 << k
      kept.push(digest)
    }
    const digests = new Uint8Array(kept.length * DIGEST_BYTES)
    kept.forEach((d, j) => digests.set(d, j * DIGEST_BYTES))
    return [mask, digests]
  }

  /** The 16 children of a node, as one 512-byte array (child i at offset 32·i). */
  children(level: number, index: number): Uint8Array {
    const out = new Uint8Array(FANOUT * DIGEST_BYTES)
    const below = this.levels[level + 1]!
    for (let i = 0; i < FANOUT; i++) {
      const digest = below.get(index * FANOUT + i)
      if (digest !== undefined) out.set(digest, i * DIGEST_BYTES)
    }
    return out
  }
}
