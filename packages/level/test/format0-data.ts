/**
 * The data in test/fixtures/format-0: a LevelDB folder written by the store BEFORE records
 * carried checksums (format 0, commit be61170), by make-format0.ts through the Store API.
 * migration.test.ts opens a copy with today's code and checks every record came through.
 * Deterministic: the same ops every time.
 */
import { leafOf, sha256, type EntityHead, type FeedEntry, type StoreOp } from '@convergent/core'

const text = (s: string): Uint8Array => new TextEncoder().encode(s)

export const FORMAT0_COLLECTIONS = [
  ['products', 'yjs'],
  ['orders/eu', 'automerge'],
] as const

/** Entities per collection: enough that a migration in small batches takes many of them. */
export const FORMAT0_ENTITIES = 120

export function format0Id(k: number): string {
  return k % 7 === 0 ? `ünïcødé-${k}` : `e${k}`
}

export function format0Head(collection: string, k: number): EntityHead {
  return {
    backend: collection === 'products' ? 'yjs' : 'automerge',
    versionHash: sha256(collection, String(k)),
    deltaCount: 1 + (k % 3),
    deleted: k % 11 === 0,
  }
}

export function format0Snapshot(collection: string, k: number): Uint8Array | undefined {
  return k % 2 === 0 ? text(`snapshot of ${collection}/${k} `.repeat(1 + (k % 4))) : undefined
}

export function format0Delta(collection: string, k: number, index: number): Uint8Array {
  return text(`delta ${index} of ${collection}/${k}`)
}

export function format0Feed(k: number): FeedEntry {
  return { seq: k + 1, id: format0Id(k), origin: k % 5 === 0 ? '12D3KooWpeer' : 'local', time: 1_700_000_000_000 + k, kind: k % 5 === 0 ? 'remote' : 'put' }
}

export const FORMAT0_META: readonly [string, Uint8Array][] = [
  ['peer-id', text('12D3KooWfixture')],
  ['empty', new Uint8Array(0)],
  ['binary', new Uint8Array([0, 1, 2, 255, 254])],
]

/** Every write of the fixture, one write() per entity (plus collections and meta first). */
export function format0Writes(): StoreOp[][] {
  const writes: StoreOp[][] = [
    [
      ...FORMAT0_COLLECTIONS.map(([collection, backend]): StoreOp => ({ type: 'collection', collection, meta: { backend } })),
      ...FORMAT0_META.map(([key, bytes]): StoreOp => ({ type: 'meta', key, bytes })),
    ],
  ]
  for (const [collection] of FORMAT0_COLLECTIONS) {
    for (let k = 0; k < FORMAT0_ENTITIES; k++) {
      const id = format0Id(k)
      const head = format0Head(collection, k)
      const ops: StoreOp[] = []
      const snapshot = format0Snapshot(collection, k)
      if (snapshot !== undefined) ops.push({ type: 'snapshot', collection, id, bytes: snapshot })
      for (let i = 0; i < head.deltaCount; i++) ops.push({ type: 'delta', collection, id, index: i, bytes: format0Delta(collection, k, i) })
      ops.push({ type: 'head', collection, id, head })
      ops.push({ type: 'leaf', collection, leaf: leafOf(id), bytes: sha256('leaf', collection, id) })
      ops.push({ type: 'feed', collection, entry: format0Feed(k) })
      writes.push(ops)
    }
  }
  return writes
}
