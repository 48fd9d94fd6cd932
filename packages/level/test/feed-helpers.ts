// Shared by the feed-page tests: entries and feed ops by seq, the folder's format as its sealed
// 'format' record says, and a damaged record written behind the store's back.
import type { FeedEntry, StoreOp } from '@convergent/core'
import { classicLevelStore, type LevelStore } from '../src/index.js'
import { AtRestSealer } from '../src/encryption.js'
import { FORMAT_KEY } from '../src/keys.js'
import { putRaw } from './helpers.js'

export function entry(seq: number, extra: Partial<FeedEntry> = {}): FeedEntry {
  return { seq, id: `e${seq}`, origin: 'local', time: 1_000 + seq, kind: 'put', ...extra }
}

export const feedOps = (collection: string, seqs: number[]): StoreOp[] => seqs.map((seq) => ({ type: 'feed', collection, entry: entry(seq) }))

/** The version the folder's 'format' record (sealed with `key`) says. */
export function formatOf(records: Map<string, Uint8Array>, key: Uint8Array): number {
  const body = new AtRestSealer(key).open('!store!', 0, FORMAT_KEY, records.get('!store!' + FORMAT_KEY)!)!
  return (JSON.parse(Buffer.from(body).toString()) as { version: number }).version
}

type RawDb = { get(k: string, o: object): Promise<Uint8Array | undefined>; put(k: string, v: Uint8Array, o: object): Promise<void> }

/** The store's database, read and written by full key behind its back. */
export const rawDb = (store: LevelStore): RawDb => store.db

/** Flips one byte `fromEnd` bytes before the end of a stored value (it then fails its crc or tag). */
export async function damage(store: LevelStore, key: string, fromEnd = 1): Promise<void> {
  const db = rawDb(store)
  const value = new Uint8Array((await db.get(key, { valueEncoding: 'view' }))!)
  value[value.byteLength - fromEnd]! ^= 1
  await db.put(key, value, { valueEncoding: 'view' })
}

/** An encrypted folder whose 'format' record says `version` (as one an older release wrote), opened again. */
export async function storeAtFormat(dir: string, key: Uint8Array, version: number): Promise<LevelStore> {
  const fresh = classicLevelStore(dir, { encryption: { key } })
  await fresh.open()
  await fresh.close()
  const format = '!store!' + FORMAT_KEY
  await putRaw(dir, [[format, new AtRestSealer(key).sealCopy(format, new TextEncoder().encode(JSON.stringify({ version })))]])
  const store = classicLevelStore(dir, { encryption: { key } })
  await store.open()
  return store
}
