import { StoreCorruptError } from './errors.js'
import type { Store } from './store.js'

/**
 * What a scan does with a meta record that failed the store's check: told the error and
 * whether the record can be removed (false on a store opened read-only: it stays, and the scan
 * goes on past it). When `removable`, it must take the record out of the prefix — Store.quarantine,
 * or a delete where keeping the bytes aside would be wrong (a subject key) — and may log and count.
 */
export type DamagedMeta = (err: StoreCorruptError, removable: boolean) => Promise<void>

/**
 * The meta records under `prefix` in key order, as Store.metas lists them, past damaged ones:
 * a record that fails its check (a StoreCorruptError naming a meta key under the prefix) is
 * handed to `damaged`, and the scan resumes after it (Store.metas' `after`: not from the start,
 * which many damaged records would make quadratic — review2-damaged-disk HOLE 5). Any other
 * error, or the same record failing again, is thrown.
 */
export async function* metasPastDamage(store: Store, prefix: string, damaged: DamagedMeta): AsyncGenerator<[string, Uint8Array]> {
  if (store.metas === undefined) return
  let after: string | undefined
  for (;;) {
    try {
      for await (const [key, bytes] of store.metas(prefix, after)) {
        if (after !== undefined && key <= after) continue
        after = key
        yield [key, bytes]
      }
      return
    } catch (err) {
      const key = err instanceof StoreCorruptError && err.record.keyspace === 'meta' ? err.record.key : undefined
      if (key === undefined || !key.startsWith(prefix) || (after !== undefined && key <= after)) throw err
      await damaged(err as StoreCorruptError, store.readOnly !== true)
      after = key
    }
  }
}
