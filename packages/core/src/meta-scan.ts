import { StoreCorruptError } from './errors.js'
import type { Logger } from './logger.js'
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

/** What getMetaPastDamage does with a meta record that failed the store's check, and what it reads as then. */
export interface MetaDamage<D> {
  /** What the record is, for the log line (after the store's message), e.g. "The read audit's mark". */
  what: string
  /**
   * True: moved aside (Store.quarantine), or left as it is on a store opened read-only. False:
   * left where it is (the caller deletes or rewrites it itself).
   */
  moveAside: boolean
  /** What the damaged record reads as (undefined: as absent). */
  readsAs: D
  /** How it is read, for the log line, e.g. "read as absent — the end of the log is found from its entries". */
  then: string
  logger: Logger
  /** Called once per damaged record met (a corruptRecords counter), if given. */
  counted?: () => void
}

/**
 * The meta record `key` (Store.getMeta), past damage: one that fails the store's check (a
 * StoreCorruptError) is logged as ERR_STORE_CORRUPT naming it, counted, moved aside if
 * `moveAside` (unless the store is read-only), and read as `readsAs` — so the replica still
 * opens. Any other error is thrown.
 */
export async function getMetaPastDamage<D>(store: Store, key: string, damage: MetaDamage<D>): Promise<Uint8Array | undefined | D> {
  try {
    return await store.getMeta(key)
  } catch (err) {
    if (!(err instanceof StoreCorruptError)) throw err
    damage.counted?.()
    const aside = damage.moveAside && store.readOnly !== true
    const where = damage.moveAside ? (aside ? 'moved aside' : 'left as it is (the store is opened read-only)') + ', ' : ''
    damage.logger.error(`${err.message} ${damage.what}: ${where}${damage.then}.`, { code: err.code })
    if (aside) await store.quarantine(err.record)
    return damage.readsAs
  }
}
