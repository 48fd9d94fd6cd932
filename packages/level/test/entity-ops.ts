import { leafOf, sha256, type EntityHead, type StoreOp } from '@convergent/core'

/** Entity n of the durability tests: id, head and delta are derived from n, so they can be checked. */
export function entityId(n: number): string {
  return `entity-${n}`
}

export function entityHead(n: number): EntityHead {
  return { backend: 'yjs', versionHash: sha256(entityId(n)), deltaCount: 1, deleted: false }
}

export function entityDelta(n: number): Uint8Array {
  return new TextEncoder().encode(`delta of ${entityId(n)} `.repeat(4))
}

/** What core writes for a new entity: delta 0, head, digest leaf and feed entry (seq n). */
export function entityWrite(collection: string, n: number): StoreOp[] {
  const id = entityId(n)
  return [
    { type: 'delta', collection, id, index: 0, bytes: entityDelta(n) },
    { type: 'head', collection, id, head: entityHead(n) },
    { type: 'leaf', collection, leaf: leafOf(id), bytes: sha256('leaf', id) },
    { type: 'feed', collection, entry: { seq: n, id, origin: 'local', time: n, kind: 'put' } },
  ]
}
