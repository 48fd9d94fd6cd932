/**
 * Encrypting a plain store folder in place, key rotation and decrypting in place (`npx
 * convergent encrypt` / `rekey` / `decrypt`): every record is opened with the old sealer (plain,
 * or the old key) and sealed with the new one (the new key, or plain: a checksummed record) into
 * a NEW folder beside it (`<db>.convergent-new`), which is then swapped in:
 *
 *   1. `<db>.convergent-new` is created with the mark of a copy being built (swap.ts:
 *      BUILDING_MARK in the file `convergent-swap`), then built (its last batch fsynced) and
 *      closed. Then a swap mark (a random id, fsynced) is written into `<db>`, then the same one
 *      into `<db>.convergent-new` in place of the first: a new folder with an id is complete and
 *      a copy of the `<db>` that has the same one;
 *   2. `<db>` is renamed to `<db>.convergent-old`, then `<db>.convergent-new` to `<db>`;
 *   3. `<db>.convergent-old` is deleted, its mark last (removeSwapFolder), then the mark in
 *      `<db>` (best effort).
 *
 * finishSwap() (run first by every recrypt) finishes what a crash left, deleting a leftover
 * folder only when the marks prove it belongs to a swap of this `<db>`:
 *
 *   - `<db>.convergent-new` beside `<db>`, with the building mark, with `<db>`'s, or empty: a
 *     crash in 1 or before the first rename, `<db>` is as it was; the copy is deleted, the run
 *     starts over;
 *   - no `<db>`, and `-old` and `-new` with the same mark: a crash between the two renames of 2;
 *     `-new` (complete) is renamed into place, then as below;
 *   - `<db>.convergent-old` with `<db>`'s mark, or empty: a crash in 3; it is deleted.
 *
 * Anything else is refused with nothing deleted, since either folder may hold the only copy of
 * the data: marks missing (folders left by an earlier release, which wrote none: its complete
 * `-new` beside a `<db>` created empty after `-old` was lost is the only copy) or different
 * (`<db>` created again after one folder of an interrupted swap was lost). And the store (so
 * open()) refuses to create `<db>` while it is missing and a swap folder is there
 * (checkFolder in encryption.ts), with a message saying which folder holds the data.
 *
 * Each rename is followed by an fsync of the parent folder (and the new folder's own entries are
 * fsynced before the first): after a power loss the folders are in one of the states above,
 * never a rename that the disk lost while a later step (deleting the old folder) was kept.
 * The whole run, finishSwap included, holds the swap lock of `<db>` (swap.ts withSwapLock): a
 * second run meanwhile would take the first's new folder for a leftover and delete it.
 * A `<db>` that is a symbolic link is swapped beside the folder it points to (swapBase), so the
 * link keeps pointing at the data, on its volume.
 * The old folder holds the data under the OLD key (or plain) until it is deleted; so do
 * backups made before: rotating a key does not re-protect copies made under the old one.
 */
import { randomBytes } from 'node:crypto'
import { closeSync, copyFileSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { ConvergentError } from '@convergent/core'
import { ClassicLevel } from 'classic-level'
import { ACKED_FILE } from './acked.js'
import { AtRestSealer, checkFolder, folderKeyId, resolveKey, type EncryptionOptions } from './encryption.js'
import { checkIsFolder, fsyncDir } from './folder.js'
import { classicLevelStore } from './factories.js'
import { PLAIN_SEALER, prefixSum, type RecordSealer } from './record.js'
import {
  BUILDING_MARK,
  holdsNothing,
  interruptedSwap,
  isMountPoint,
  NEW_SUFFIX,
  OLD_SUFFIX,
  readSwapMark,
  removeSwapFolder,
  removeSwapMark,
  strandedSwapError,
  strandedSwapFolder,
  SWAP_MARK_FILE,
  swapBase,
  withSwapLock,
  writeSwapMark,
} from './swap.js'

export interface RecryptResult {
  records: number
  /** The new key's id (hex), or undefined when the folder was decrypted. */
  keyId: string | undefined
  /** true: this run only finished the swap of a run a crash interrupted (records is 0). */
  resumed: boolean
}

/**
 * Finishes or cleans up after a recrypt a crash interrupted (see the top of this file): a
 * leftover folder is deleted only when its swap mark proves it belongs to a swap of `given`;
 * anything else is refused (ERR_STORE), nothing deleted. Only under the swap lock (recryptLocked):
 * run beside another recrypt, it would take that run's new folder for a leftover.
 */
function finishSwap(given: string): void {
  const db = swapBase(given)
  const old = db + OLD_SUFFIX
  const fresh = db + NEW_SUFFIX
  if (!existsSync(old) && !existsSync(fresh)) return
  if (!existsSync(db)) {
    const stranded = strandedSwapFolder(db)
    if (stranded !== undefined) throw strandedSwapError(db, stranded)
    // Between the two renames: -new is the complete copy only if it has -old's mark.
    const mark = readSwapMark(old)
    if (mark === undefined || readSwapMark(fresh) !== mark) throw unmatchedHalvesError(db)
    renameSync(fresh, db)
    fsyncDir(dirname(db))
  }
  if (existsSync(old) && existsSync(fresh)) {
    throw new ConvergentError(
      'ERR_STORE',
      `${db}, ${old} and ${fresh} all exist: an interrupted encrypt/rekey was followed by something that created ${db} again. Nothing was deleted; keep the folder that holds your data as ${db} and remove the others by hand.`,
    )
  }
  const mark = readSwapMark(db)
  if (existsSync(old)) {
    // Step 3 was cut short (an empty -old: partway through deleting its last entry, the mark).
    if (!holdsNothing(old) && (mark === undefined || readSwapMark(old) !== mark)) throw unprovenLeftoverError(db, old)
    removeSwapFolder(old)
    removeSwapMark(db)
  }
  if (existsSync(fresh)) {
    // Step 1 was cut short: -new being built, or complete with db's mark (before the first
    // rename), or empty (created, its mark not written yet). One with no mark is an earlier
    // release's, complete or not: refused.
    const freshMark = readSwapMark(fresh)
    const cutShort = freshMark === BUILDING_MARK || (freshMark !== undefined && freshMark === mark) || holdsNothing(fresh)
    if (!cutShort) throw unprovenLeftoverError(db, fresh)
    removeSwapFolder(fresh)
  }
}

const EARLIER_RELEASE = `A leftover of an earlier release of Convergent (which wrote no ${SWAP_MARK_FILE} file) is refused this way too.`

/** `leftover` (-old or -new) beside `db` without the mark that would prove it is a leftover of a swap of `db`. */
function unprovenLeftoverError(db: string, leftover: string): ConvergentError {
  const isOld = leftover.endsWith(OLD_SUFFIX)
  const what = isOld ? 'the folder a finished encrypt/rekey/decrypt swapped out of it' : 'a copy an interrupted encrypt/rekey/decrypt was making of it'
  const opens = isOld
    ? 'it opens with the key the folder had before the command, or without one'
    : "it opens with the command's new key, or without one after decrypt"
  return new ConvergentError(
    'ERR_STORE',
    `${db} and ${leftover} both exist, and nothing proves ${leftover} is ${what} (no matching ${SWAP_MARK_FILE} file in both): it may hold the only copy of your data, e.g. if ${db} was created empty after an interrupted swap lost its other folder. Nothing was deleted. If ${db} opens with all your data, delete ${leftover} by hand; otherwise move ${db} aside and rename ${leftover} to ${db} (${opens}), then run the command again. ${EARLIER_RELEASE}`,
  )
}

/** No `db`, and its -old and -new folders without the same mark: not known to be one interrupted swap. */
function unmatchedHalvesError(db: string): ConvergentError {
  const [old, fresh] = [db + OLD_SUFFIX, db + NEW_SUFFIX]
  return new ConvergentError(
    'ERR_STORE',
    `${db} is missing, and ${old} and ${fresh} do not hold the same ${SWAP_MARK_FILE} file, so they are not known to be the two folders of one interrupted encrypt/rekey/decrypt. Nothing was moved or deleted. ${fresh} is normally the complete new folder: rename it to ${db} and check that it opens with all your data (with the command's new key, or without one after decrypt), then delete ${old}; if it does not, rename ${old} to ${db} instead. ${EARLIER_RELEASE}`,
  )
}

/**
 * Re-seals every record of the (closed) store folder `given` (or the folder it is a symbolic
 * link to): `from` is its key (undefined: it is plain), `to` the new one (undefined: decrypt). A record that fails its check stops the run
 * (nothing changed) naming it: open the store with the service first, so it is quarantined.
 */
export async function recryptStore(given: string, from: EncryptionOptions | undefined, to: EncryptionOptions | undefined): Promise<RecryptResult> {
  const fromSealer = from === undefined ? undefined : new AtRestSealer(resolveKey(from))
  const toSealer = to === undefined ? undefined : new AtRestSealer(resolveKey(to))
  if (fromSealer === undefined && toSealer === undefined) throw new ConvergentError('ERR_INVALID_ARGUMENT', 'recrypt: give the new key, the old one, or both.')
  if (fromSealer !== undefined && toSealer !== undefined && fromSealer.keyId.equals(toSealer.keyId)) {
    throw new ConvergentError('ERR_INVALID_ARGUMENT', 'recrypt: the new key is the key the folder already has.')
  }
  // Before finishSwap: with db a file it would take db for the new folder in place and delete
  // db.convergent-old (or -new) beside it.
  checkIsFolder(given)
  // A db that is a symbolic link: swap beside its target, so the link keeps pointing at the
  // data (renaming the link would move the data off the linked volume, leaving the old copy there).
  const db = swapBase(given)
  // Nothing there: said before a lock folder is made beside a path that holds nothing.
  if (!existsSync(db) && !existsSync(db + OLD_SUFFIX) && !existsSync(db + NEW_SUFFIX)) throw noStoreHere(db)
  return withSwapLock(db, () => recryptLocked(db, fromSealer, toSealer))
}

function noStoreHere(db: string): ConvergentError {
  return new ConvergentError('ERR_INVALID_ARGUMENT', `${db} holds no store (no LevelDB CURRENT file).`)
}

/** recryptStore's work, on the real folder `db`, holding its swap lock (withSwapLock). */
async function recryptLocked(db: string, fromSealer: AtRestSealer | undefined, toSealer: AtRestSealer | undefined): Promise<RecryptResult> {
  if (interruptedSwap(db)) {
    // The new folder is sealed with the key of the run that built it: say so if it is not this one.
    const built = folderKeyId(db + NEW_SUFFIX)
    const asked = toSealer?.keyId.toString('hex')
    if (built !== asked) {
      throw new ConvergentError(
        'ERR_INVALID_ARGUMENT',
        `an interrupted encrypt/rekey of ${db} is waiting to be finished with the key it used (key id ${built ?? 'none: plain'}), not this one (key id ${asked ?? 'none: plain'}); run it again with that key.`,
      )
    }
    finishSwap(db)
    return { records: 0, keyId: asked, resumed: true }
  }
  finishSwap(db)
  if (!existsSync(join(db, 'CURRENT'))) throw noStoreHere(db)
  if (isMountPoint(db)) {
    throw new ConvergentError(
      'ERR_STORE',
      `${db} is a mount point: encrypt/rekey/decrypt build the re-sealed copy beside it and swap the two by renaming, which a mount point does not allow. Nothing was changed. Mount the volume one folder up (the data folder) so that ${basename(db)} is a folder in it, or run the command on a copy of ${db} in a folder of its own.`,
    )
  }
  // Opening the store checks the key (the codes of open()), migrates format 0 and finishes
  // interrupted drops: what is copied below is format 1, 2 or 3 (all current code reads; format.ts).
  const check = classicLevelStore(db, fromSealer === undefined ? {} : { encryption: fromSealer })
  try {
    await check.open()
  } finally {
    await check.close()
  }
  const target = db + NEW_SUFFIX
  rmSync(target, { recursive: true, force: true })
  // Marked as a copy being built before anything is in it (finishSwap deletes such a folder).
  mkdirSync(target)
  writeSwapMark(target, BUILDING_MARK)
  checkFolder(target, toSealer) // marks the new folder encrypted before LevelDB creates it
  const source = new ClassicLevel<string, Uint8Array>(db, { keyEncoding: 'utf8', valueEncoding: 'view' })
  const dest = new ClassicLevel<string, Uint8Array>(target, { keyEncoding: 'utf8', valueEncoding: 'view' })
  const opener: RecordSealer = fromSealer ?? PLAIN_SEALER
  const sealer: RecordSealer = toSealer ?? PLAIN_SEALER
  let records = 0
  try {
    await Promise.all([source.open(), dest.open()])
    let batch: { type: 'put'; key: string; value: Uint8Array }[] = []
    for await (const [fullKey, value] of source.iterator()) {
      const end = fullKey.indexOf('!', 1)
      if (fullKey[0] !== '!' || end < 0)
        throw new ConvergentError('ERR_STORE', `recrypt: a record outside every keyspace (${JSON.stringify(fullKey)}); nothing changed.`)
      const prefix = fullKey.slice(0, end + 1)
      const body = opener.open(prefix, prefixSum(prefix), fullKey.slice(end + 1), value)
      if (body === undefined) {
        throw new ConvergentError(
          'ERR_STORE_CORRUPT',
          `recrypt: the record ${JSON.stringify(fullKey)} fails its check; nothing changed. Open the store once (the service quarantines damaged records as it meets them) or restore it from a peer.`,
        )
      }
      batch.push({ type: 'put', key: fullKey, value: sealer.sealCopy(fullKey, body) })
      records++
      if (batch.length >= 1000) {
        await dest.batch(batch)
        batch = []
      }
    }
    await dest.batch(batch, { sync: true })
  } finally {
    await Promise.all([source.close(), dest.close()])
  }
  if (existsSync(join(db, ACKED_FILE))) {
    copyFileSync(join(db, ACKED_FILE), join(target, ACKED_FILE))
    fsyncFile(join(target, ACKED_FILE))
  }
  // The mark proves to finishSwap which folders belong to this swap: db's first, so that a new
  // folder with a mark always has a db with the same one. writeSwapMark fsyncs the folder: the
  // new folder's names (LevelDB's files, the marker, the mark) are on disk before it is swapped
  // in. Then each rename is on disk before the next step: the parent folder holds the names.
  const mark = randomBytes(16).toString('hex')
  writeSwapMark(db, mark)
  writeSwapMark(target, mark)
  const parent = dirname(db)
  renameSync(db, db + OLD_SUFFIX)
  fsyncDir(parent)
  renameSync(target, db)
  fsyncDir(parent)
  removeSwapFolder(db + OLD_SUFFIX)
  removeSwapMark(db)
  return { records, keyId: toSealer?.keyId.toString('hex'), resumed: false }
}

function fsyncFile(path: string): void {
  const fd = openSync(path, 'r+')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}
