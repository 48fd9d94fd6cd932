/**
 * Encrypting a plain store folder in place, key rotation and decrypting in place (`npx
 * convergent encrypt` / `rekey` / `decrypt`): every record is opened with the old sealer (plain,
 * or the old key) and sealed with the new one (the old key, or plain: a checksummed record) into a NEW folder beside it (`<db>.convergent-new`), which is then swapped in:
 *
 *   1. `<db>.convergent-new` is built from scratch (a leftover of a crashed run is deleted
 *      first), its last batch fsynced, and closed;
 *   2. `<db>` is renamed to `<db>.convergent-old`, then `<db>.convergent-new` to `<db>`;
 *   3. `<db>.convergent-old` is deleted.
 *
 * A crash in 1 leaves `<db>` as it was (the next run starts over); between the two renames of
 * 2 there is no `<db>`, but `<db>.convergent-old` exists only once the new folder is complete:
 * finishSwap() (run first by the next recrypt, and refused by open() with a message saying to
 * run it) renames the new one into place. After 2 the old folder is only deleted.
 * Each rename is followed by an fsync of the parent folder (and the new folder's own entries are
 * fsynced before the first): after a power loss the folders are in one of the states above,
 * never a rename that the disk lost while a later step (deleting the old folder) was kept.
 * The old folder holds the data under the OLD key (or plain) until it is deleted; so do
 * backups made before: rotating a key does not re-protect copies made under the old one.
 */
import { closeSync, copyFileSync, existsSync, fsyncSync, openSync, renameSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { ConvergentError } from '@convergent/core'
import { ClassicLevel } from 'classic-level'
import { ACKED_FILE } from './acked.js'
import { AtRestSealer, checkFolder, folderKeyId, fsyncDir, interruptedSwap, NEW_SUFFIX, OLD_SUFFIX, resolveKey, type EncryptionOptions } from './encryption.js'
import { checkIsFolder } from './folder.js'
import { classicLevelStore } from './factories.js'
import { PLAIN_SEALER, prefixSum, type RecordSealer } from './record.js'

export { NEW_SUFFIX, OLD_SUFFIX, interruptedSwap } from './encryption.js'

export interface RecryptResult {
  records: number
  /** The new key's id (hex), or undefined when the folder was decrypted. */
  keyId: string | undefined
  /** true: this run only finished the swap of a run a crash interrupted (records is 0). */
  resumed: boolean
}

/**
 * Finishes or cleans up after a recrypt a crash interrupted. The old folder is deleted only
 * once the new one is in place (no `-new` left); `db`, `-old` and `-new` all present is a state
 * no crash of ours leaves (something created `db` in between): refused, nothing deleted.
 */
export function finishSwap(db: string): void {
  if (interruptedSwap(db)) {
    renameSync(db + NEW_SUFFIX, db)
    fsyncDir(dirname(db))
  }
  const [here, old, fresh] = [existsSync(db), existsSync(db + OLD_SUFFIX), existsSync(db + NEW_SUFFIX)]
  if (here && old && fresh) {
    throw new ConvergentError(
      'ERR_STORE',
      `${db}, ${db}${OLD_SUFFIX} and ${db}${NEW_SUFFIX} all exist: an interrupted encrypt/rekey was followed by something that created ${db} again. Nothing was deleted; keep the folder that holds your data as ${db} and remove the others by hand.`,
    )
  }
  if (here && old) rmSync(db + OLD_SUFFIX, { recursive: true, force: true }) // step 3 was cut short
  if (here && fresh) rmSync(db + NEW_SUFFIX, { recursive: true, force: true }) // step 1 was cut short
}

/**
 * Re-seals every record of the (closed) store folder `db`: `from` is its key (undefined: it is
 * plain), `to` the new one (undefined: decrypt). A record that fails its check stops the run
 * (nothing changed) naming it: open the store with the service first, so it is quarantined.
 */
export async function recryptStore(db: string, from: EncryptionOptions | undefined, to: EncryptionOptions | undefined): Promise<RecryptResult> {
  const fromSealer = from === undefined ? undefined : new AtRestSealer(resolveKey(from))
  const toSealer = to === undefined ? undefined : new AtRestSealer(resolveKey(to))
  if (fromSealer === undefined && toSealer === undefined) throw new ConvergentError('ERR_INVALID_ARGUMENT', 'recrypt: give the new key, the old one, or both.')
  if (fromSealer !== undefined && toSealer !== undefined && fromSealer.keyId.equals(toSealer.keyId)) {
    throw new ConvergentError('ERR_INVALID_ARGUMENT', 'recrypt: the new key is the key the folder already has.')
  }
  // Before finishSwap: with db a file it would take db for the new folder in place and delete
  // db.convergent-old (or -new) beside it.
  checkIsFolder(db)
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
  if (!existsSync(join(db, 'CURRENT'))) throw new ConvergentError('ERR_INVALID_ARGUMENT', `${db} holds no store (no LevelDB CURRENT file).`)
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
  // The new folder's names (LevelDB's files, the marker, the mark) on disk before it is swapped
  // in; then each rename on disk before the next step: the parent folder holds the names.
  fsyncDir(target)
  const parent = dirname(db)
  renameSync(db, db + OLD_SUFFIX)
  fsyncDir(parent)
  renameSync(target, db)
  fsyncDir(parent)
  rmSync(db + OLD_SUFFIX, { recursive: true, force: true })
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
