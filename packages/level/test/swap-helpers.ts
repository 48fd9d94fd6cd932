// What the tests of the encrypt/rekey/decrypt folder swap share (recrypt-swap, review-s32-swap):
// a store folder of a few entities, a check that all of them are there, and crashes injected
// into node:fs's renames and removals.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { classicLevelStore } from '../src/index.js'
import { entityHead, entityWrite } from './entity-ops.js'

/** A plain store at `db` holding entities 1…`count` of collection 'c'. */
export async function writeEntities(db: string, count: number): Promise<void> {
  const store = classicLevelStore(db)
  await store.open()
  for (let n = 1; n <= count; n++) await store.write(entityWrite('c', n))
  await store.close()
}

/** Entities 1…`count` (as writeEntities wrote them) are all in `db`, opened with `key` (undefined: plain). */
export async function expectEntities(db: string, key: string | undefined, count: number): Promise<void> {
  const store = classicLevelStore(db, key === undefined ? {} : { encryption: { key } })
  await store.open()
  try {
    for (let n = 1; n <= count; n++) assert.deepEqual((await store.readEntity('c', `entity-${n}`))?.head, entityHead(n), `${db}: entity ${n}`)
  } finally {
    await store.close()
  }
}

/**
 * Runs `run` with node:fs's renameSync and rmSync patched (the modules' named imports follow
 * after syncBuiltinESMExports): `hook` sees each call first — its name and string arguments —
 * and may do part of it and throw, as a crash there would stop the run; no call after that is
 * seen. true if a hook threw (the run's error is then swallowed).
 */
export async function crashingFs(hook: (call: 'rm' | 'rename', paths: string[]) => void, run: () => Promise<unknown>): Promise<boolean> {
  const original = { renameSync: fs.renameSync, rmSync: fs.rmSync }
  let crashed = false
  const wrap =
    <A extends unknown[], R>(name: 'rm' | 'rename', real: (...args: A) => R) =>
    (...args: A): R => {
      if (!crashed) {
        try {
          hook(
            name,
            args.filter((a): a is string => typeof a === 'string'),
          )
        } catch (err) {
          crashed = true
          throw err
        }
      }
      return real(...args)
    }
  Object.assign(fs, { renameSync: wrap('rename', original.renameSync), rmSync: wrap('rm', original.rmSync) })
  syncBuiltinESMExports()
  try {
    await run()
  } catch (err) {
    if (!crashed) throw err
  } finally {
    Object.assign(fs, original)
    syncBuiltinESMExports()
  }
  return crashed
}
