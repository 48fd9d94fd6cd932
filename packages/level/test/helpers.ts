import { cp, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ErrorCode } from '@convergent/core'
import { ClassicLevel } from 'classic-level'
import type { LevelStore } from '../src/index.js'

export const tempDir = (prefix = 'convergent-level-'): Promise<string> => mkdtemp(join(tmpdir(), prefix))
export const removeDir = (dir: string): Promise<void> => rm(dir, { recursive: true, force: true })

/** A copy of test/fixtures/format-0 (a folder written by the store before checksums) in a new temp dir. */
export async function copyFormat0Fixture(): Promise<string> {
  const dir = await tempDir('convergent-format0-')
  // dist/test/helpers.js → the fixture stays in the sources (test/fixtures), not copied by tsc.
  await cp(fileURLToPath(new URL('../../test/fixtures/format-0', import.meta.url)), dir, { recursive: true })
  return dir
}

/** Every record of a CLOSED LevelDB folder: full key (sublevel prefix and all) → stored bytes. */
export async function rawRecords(dir: string): Promise<Map<string, Uint8Array>> {
  const db = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' })
  await db.open()
  try {
    return new Map(await db.iterator().all())
  } finally {
    await db.close()
  }
}

/** Writes records into a CLOSED LevelDB folder behind the store's back (full keys). */
export async function putRaw(dir: string, records: [string, Uint8Array][]): Promise<void> {
  const db = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' })
  await db.open()
  try {
    await db.batch(records.map(([key, value]) => ({ type: 'put' as const, key, value })))
  } finally {
    await db.close()
  }
}

/**
 * Makes the store's database fail every batch after the first `n` (as a crash would stop them):
 * the failed batch writes nothing. Returns a function that heals it.
 */
export function failBatchesAfter(store: LevelStore, n: number): () => void {
  let left = n
  let failing = true
  const batch = store.db.batch.bind(store.db)
  store.db.batch = (() => {
    const b = batch()
    if (failing && left-- <= 0) b.write = () => b.close().then(() => Promise.reject(new Error('injected failure: the disk is gone')))
    return b
  }) as typeof store.db.batch
  return () => void (failing = false)
}

/** What the promise rejected with; throws if it resolved. */
export async function rejection(promise: Promise<unknown>): Promise<Error & { code?: ErrorCode }> {
  try {
    await promise
  } catch (err) {
    return err as Error & { code?: ErrorCode }
  }
  throw new Error('expected a rejection, but it resolved')
}

export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of iterable) out.push(x)
  return out
}

/** Why opening a store `make` makes fails: made and opened (then closed), or refused when made. */
export async function refusal(make: () => LevelStore): Promise<Error & { code?: string }> {
  let store: LevelStore
  try {
    store = make()
  } catch (err) {
    return err as Error & { code?: string } // refused before LevelDB was given the folder
  }
  try {
    return await rejection(store.open())
  } finally {
    await store.close().catch(() => undefined)
  }
}
