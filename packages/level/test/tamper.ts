import type { Store } from '@convergent/core'
import type { LevelStore } from '../src/index.js'

/**
 * The compliance suite's `tamper` hook for a LevelStore: damages records behind the store's
 * back, through its database (as a bad disk would; see StoreFixture.tamper). 'value' flips the
 * lowest bit of a byte in the middle of the stored body (past the 5-byte header); 'key' moves
 * the stored bytes to the key with the lowest bit of its last character flipped.
 */
export async function tamperLevel(store: Store, keyspace: string, keyFilter: (key: string) => boolean, part: 'value' | 'key' = 'value'): Promise<number> {
  const sub = (store as LevelStore).db.sublevel<string, Uint8Array>(keyspace, { keyEncoding: 'utf8', valueEncoding: 'view' })
  const victims = (await sub.iterator().all()).filter(([key]) => keyFilter(key))
  for (const [key, value] of victims) {
    const bytes = new Uint8Array(value)
    if (part === 'value') {
      const at = bytes.length > 5 ? 5 + ((bytes.length - 5) >> 1) : bytes.length - 1
      bytes[at]! ^= 1
      await sub.put(key, bytes)
    } else {
      const moved = key.slice(0, -1) + String.fromCharCode(key.charCodeAt(key.length - 1) ^ 1)
      await sub.batch([
        { type: 'del', key },
        { type: 'put', key: moved, value: bytes },
      ])
    }
  }
  return victims.length
}
