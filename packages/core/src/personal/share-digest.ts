import { sha256 } from '../hash.js'

/**
 * What a replica shares in the key exchange (subject keys and forget tombstones, see
 * key-exchange.ts), kept so that each round's summary and each diff costs what changed, not
 * what is held.
 *
 * Every record has a sort key ('k' + key id, 't' + collection NUL subject) and falls in one of
 * BUCKETS buckets: a key by the first byte of its id (itself SHA-256 output), a tombstone by the
 * first byte of SHA-256 of its sort key. Records are grouped by collection, kind and bucket; a
 * group's digest is SHA-256 over its sort keys, sorted, each prefixed with its length — computed when first asked for after the
 * group changed, then kept. The digest of a bucket for a peer is SHA-256 over the digests of the
 * non-empty groups that peer may see, in order. The summary a round compares is SHA-256 over
 * the 256 bucket digests; when it differs, the exchange sends the buckets that differ only.
 *
 * Every digest is a hash over sorted lists, so equal digests mean equal sets (SHA-256 collision
 * resistance). Not XOR or sums of record hashes, cheaper to update as those are: a member could
 * then find records whose hashes cancel out (Wagner's generalised birthday attack, ~2^31 work
 * for 256-bit hashes) and keep another replica from ever fetching a genuine key.
 *
 * (Before, the summary was SHA-256 over every sort key, sorted, recomputed per round and page:
 * 105 ms for 100,000 keys, and any difference sent everything.)
 */
export const BUCKETS = 256
/** Bytes of one bucket's digest on the wire. */
export const BUCKET_DIGEST_BYTES = 16

export type RecordKind = 'k' | 't'

interface Group {
  keys: Set<string>
  /** SHA-256 over the sorted keys; undefined once they changed, until asked for again. */
  digest: Uint8Array | undefined
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

export class ShareDigest {
  /** collection → kind → bucket → its group (made when first needed). */
  private readonly groups = new Map<string, Record<RecordKind, (Group | undefined)[]>>()
  /** sort key → where it is counted. */
  private readonly places = new Map<string, { collection: string; kind: RecordKind; bucket: number }>()
  /** bucket → sort keys in it, every collection. */
  private readonly byBucket: Set<string>[] = Array.from({ length: BUCKETS }, () => new Set<string>())

  /** Counts every add and remove that changed something (lists built from the records are stale once it moves). */
  version = 0

  get size(): number {
    return this.places.size
  }

  /** Counts a record (once: adding a sort key already counted does nothing). */
  add(collection: string, kind: RecordKind, sortKey: string): void {
    if (this.places.has(sortKey)) return
    const bucket = ShareDigest.bucketOf(sortKey)
    this.places.set(sortKey, { collection, kind, bucket })
    this.byBucket[bucket]!.add(sortKey)
    let of = this.groups.get(collection)
    if (of === undefined) {
      of = { k: new Array<Group | undefined>(BUCKETS), t: new Array<Group | undefined>(BUCKETS) }
      this.groups.set(collection, of)
    }
    const group = (of[kind][bucket] ??= { keys: new Set(), digest: undefined })
    group.keys.add(sortKey)
    group.digest = undefined
    this.version++
  }

  /** Stops counting a record (nothing if it is not counted). */
  remove(sortKey: string): void {
    const place = this.places.get(sortKey)
    if (place === undefined) return
    this.places.delete(sortKey)
    this.byBucket[place.bucket]!.delete(sortKey)
    const group = this.groups.get(place.collection)![place.kind][place.bucket]!
    group.keys.delete(sortKey)
    group.digest = undefined
    this.version++
  }

  /**
   * Each sort key prefixed with its length: joined by a separator, a member could make one
   * record spell two (a tombstone's subject may hold any character) and hide them.
   */
  private static groupDigest(group: Group): Uint8Array {
    return (group.digest ??= sha256(
      [...group.keys]
        .sort()
        .map((k) => `${k.length}:${k}`)
        .join(''),
    ))
  }

  /**
   * The bucket digests of the records `shared` lets a peer see (by collection and kind):
   * BUCKETS × BUCKET_DIGEST_BYTES bytes. Empty groups count as absent, so a collection whose
   * records are all gone is as one that never had any.
   */
  buckets(shared: (collection: string, kind: RecordKind) => boolean): Uint8Array {
    const visible: { name: string; groups: (Group | undefined)[] }[] = []
    for (const collection of [...this.groups.keys()].sort()) {
      for (const kind of ['k', 't'] as const)
        if (shared(collection, kind)) visible.push({ name: `${collection}\u0000${kind}`, groups: this.groups.get(collection)![kind] })
    }
    const out = new Uint8Array(BUCKETS * BUCKET_DIGEST_BYTES)
    for (let b = 0; b < BUCKETS; b++) {
      const parts: (string | Uint8Array)[] = []
      for (const v of visible) {
        const group = v.groups[b]
        if (group === undefined || group.keys.size === 0) continue
        parts.push(`${v.name.length}:${v.name}`, ShareDigest.groupDigest(group))
      }
      // An empty bucket stays all zeros (no hash to compute).
      if (parts.length > 0) out.set(sha256(...parts).subarray(0, BUCKET_DIGEST_BYTES), b * BUCKET_DIGEST_BYTES)
    }
    return out
  }

  /** The buckets whose digests differ between `ours` and `theirs` (each BUCKETS × BUCKET_DIGEST_BYTES). */
  static differing(ours: Uint8Array, theirs: Uint8Array): Set<number> {
    const out = new Set<number>()
    for (let b = 0; b < BUCKETS; b++) {
      const at = b * BUCKET_DIGEST_BYTES
      for (let i = 0; i < BUCKET_DIGEST_BYTES; i++) {
        if (ours[at + i] !== theirs[at + i]) {
          out.add(b)
          break
        }
      }
    }
    return out
  }

  /** The sort keys counted in `buckets` (every bucket when undefined). */
  *sortKeysIn(buckets: ReadonlySet<number> | undefined): Iterable<string> {
    if (buckets === undefined) {
      yield* this.places.keys()
      return
    }
    for (const b of buckets) if (b >= 0 && b < BUCKETS) yield* this.byBucket[b]!
  }

  /**
   * The bucket of a sort key: for a key ('k' + 22 base64url characters of 16 bytes of SHA-256),
   * the first byte of its id — no hashing on the write that makes a key; for anything else,
   * the first byte of SHA-256 of the sort key.
   */
  static bucketOf(sortKey: string): number {
    if (sortKey.length === 23 && sortKey.charCodeAt(0) === 107 /* k */) {
      const hi = BASE64URL.indexOf(sortKey.charAt(1))
      const lo = BASE64URL.indexOf(sortKey.charAt(2))
      if (hi >= 0 && lo >= 0) return ((hi << 2) | (lo >> 4)) & 0xff
    }
    return sha256(sortKey)[0]!
  }
}

/** A set of buckets as a BUCKETS-bit map (what the wire carries), and back. */
export function bucketsToBitmap(buckets: ReadonlySet<number>): Uint8Array {
  const out = new Uint8Array(BUCKETS / 8)
  for (const b of buckets) if (b >= 0 && b < BUCKETS) out[b >> 3] = out[b >> 3]! | (1 << (b & 7))
  return out
}

export function bitmapToBuckets(bitmap: Uint8Array): Set<number> {
  const out = new Set<number>()
  for (let b = 0; b < BUCKETS; b++) if ((bitmap[b >> 3]! & (1 << (b & 7))) !== 0) out.add(b)
  return out
}
