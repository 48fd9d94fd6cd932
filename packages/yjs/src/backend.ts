import * as Y from 'yjs'
import { ConvergentError, wrapError } from '@convergent/core'
import type { Backend, Change, DeltaLimits, JsonObject } from '@convergent/core'
import { clientIdFromActor } from './actor.js'
import { liveKeys, readEntity, readMap } from './read.js'
import { reconcileMap } from './reconcile.js'
import { DELETED_KEY, META_ROOT, VALUE_ROOT } from './schema.js'
import { checkIntegrated, updateToApply, validateUpdate } from './validate.js'
import { coversDoc, decodeVersion, encodeVersion, includesVersion, versionHashOf } from './version.js'

/** Transaction origins, so the update listener only captures our own local change. */
const LOCAL = Symbol('convergent-local')
const REMOTE = Symbol('convergent-remote')

/**
 * Backend over Yjs: one Y.Doc per entity, mutated in place. The value lives in the root
 * Y.Map 'value' (nested objects are Y.Maps, arrays Y.Arrays, scalars plain values — strings
 * are last-writer-wins, not Y.Text); the delete flag in the root Y.Map 'meta'.
 */
export class YjsBackend implements Backend<Y.Doc> {
  readonly name = 'yjs'

  create(actor: Uint8Array): Y.Doc {
    // A fixed guid: it only matters for sub-documents, and a random uuid costs time per entity.
    const doc = new Y.Doc({ guid: 'convergent' })
    doc.clientID = clientIdFromActor(actor)
    return doc
  }

  load(snapshot: Uint8Array | undefined, deltas: readonly Uint8Array[], actor: Uint8Array): Y.Doc {
    const doc = this.create(actor)
    if (snapshot !== undefined) applyChecked(doc, snapshot, true)
    for (const delta of deltas) applyChecked(doc, delta, false)
    return doc
  }

  save(doc: Y.Doc): Uint8Array {
    // Includes structs still waiting for their dependencies, so compaction loses nothing.
    return Y.encodeStateAsUpdate(doc)
  }

  read(doc: Y.Doc): JsonObject | undefined {
    return readEntity(doc)
  }

  readHidden(doc: Y.Doc): JsonObject | undefined {
    if (doc.getMap(META_ROOT).get(DELETED_KEY) === false) return undefined // live: read() shows it
    const value = doc.getMap(VALUE_ROOT)
    return liveKeys(value).length === 0 ? undefined : readMap(value)
  }

  put(doc: Y.Doc, value: JsonObject): Change<Y.Doc> {
    const delta = transactCapturingUpdate(doc, () => {
      const meta = doc.getMap(META_ROOT)
      // Only a put on a deleted (or never written) entity touches the flag, so a delete
      // concurrent with this put still wins.
      if (meta.get(DELETED_KEY) !== false) meta.set(DELETED_KEY, false)
      reconcileMap(doc.getMap(VALUE_ROOT), value)
    })
    return { doc, delta }
  }

  delete(doc: Y.Doc): Change<Y.Doc> {
    const meta = doc.getMap(META_ROOT)
    if (meta.get(DELETED_KEY) !== false) return { doc, delta: null }
    const delta = transactCapturingUpdate(doc, () => {
      meta.set(DELETED_KEY, true)
      const value = doc.getMap(VALUE_ROOT)
      for (const key of liveKeys(value)) value.delete(key)
    })
    return { doc, delta }
  }

  /** The stateless scan of applyDelta (validateUpdate), before any document exists for the delta. */
  checkDelta(delta: Uint8Array, limits: DeltaLimits): void {
    if (delta.byteLength > limits.maxDecodedBytes) {
      throw new ConvergentError('ERR_TOO_LARGE', `A Yjs delta of ${delta.byteLength} bytes exceeds the decoded limit of ${limits.maxDecodedBytes}.`)
    }
    validateUpdate(delta)
  }

  applyDelta(doc: Y.Doc, delta: Uint8Array, limits?: DeltaLimits): Y.Doc {
    // A Yjs update is not compressed: it decodes to about its own size.
    if (limits !== undefined && delta.byteLength > limits.maxDecodedBytes) {
      throw new ConvergentError('ERR_TOO_LARGE', `A Yjs delta of ${delta.byteLength} bytes exceeds the decoded limit of ${limits.maxDecodedBytes}.`)
    }
    applyChecked(doc, delta, false)
    return doc
  }

  version(doc: Y.Doc): Uint8Array {
    return encodeVersion(doc)
  }

  versionHash(doc: Y.Doc): Uint8Array {
    return versionHashOf(doc)
  }

  deltaSince(doc: Y.Doc, version: Uint8Array): Uint8Array | null {
    const remote = decodeVersion(version)
    // From nothing: everything, unless there is nothing (no structs means no deletes either),
    // without computing the document's snapshot (a scan of its struct store) to compare.
    if (remote === Y.emptySnapshot) return doc.store.clients.size === 0 ? null : Y.encodeStateAsUpdate(doc)
    if (coversDoc(remote, doc)) return null
    // Structs the remote lacks plus our whole delete set (Yjs sends deletes that way).
    return Y.encodeStateAsUpdate(doc, Y.encodeStateVector(remote.sv))
  }

  includes(doc: Y.Doc, version: Uint8Array): boolean {
    return includesVersion(doc, decodeVersion(version))
  }

  mergeDeltas(deltas: readonly Uint8Array[]): Uint8Array {
    if (deltas.length === 0) throw new ConvergentError('ERR_INVALID_ARGUMENT', 'mergeDeltas needs at least one delta.')
    if (deltas.length === 1) return deltas[0]!
    try {
      return Y.mergeUpdates(deltas.map((d) => validateUpdate(d)))
    } catch (err) {
      throw wrapError('ERR_INVALID_DELTA', 'Yjs could not merge these deltas', err)
    }
  }

  hasPending(doc: Y.Doc): boolean {
    return doc.store.pendingStructs !== null || doc.store.pendingDs !== null
  }
}

export function yjsBackend(): Backend<Y.Doc> {
  return new YjsBackend()
}

/**
 * Validates `update` for `doc` and applies it, then what Yjs held back for missing
 * dependencies once one of them has arrived. A throw after Yjs started may leave part of the
 * update in `doc`: callers discard it.
 *
 * Yjs would retry the held-back structs (store.pendingStructs) itself, inside the next
 * update's transaction and unchecked: a forged struct accepted while it waited (nothing it
 * refers to could be looked at then) would make that next update — an honest one — throw, or
 * be refused by the checks below, on every replica that held it, for good. So they are taken
 * out before each update and retried here, through the same checks as an update: if those
 * refuse them, they are dropped (they were never part of the version, and whatever honest
 * structs were among them come back through sync, which sends what the version lacks).
 */
function applyChecked(doc: Y.Doc, update: Uint8Array, allowEmpty: boolean): void {
  const store = doc.store
  const held = store.pendingStructs
  store.pendingStructs = null
  try {
    applyOnce(doc, updateToApply(update, doc, allowEmpty))
  } catch (err) {
    store.pendingStructs ??= held
    throw err
  }
  if (held === null) return
  // What this update left waiting (read through a cast: TypeScript still thinks it is null).
  const fresh = (store as { pendingStructs: typeof held }).pendingStructs
  let arrived = false
  for (const [client, clock] of held.missing) if (clock < Y.getState(store, client)) arrived = true
  if (!arrived) {
    // Nothing to retry yet: keep both, as Yjs does.
    if (fresh !== null) {
      for (const [client, clock] of held.missing) if (!(fresh.missing.get(client)! <= clock)) fresh.missing.set(client, clock)
      fresh.update = Y.mergeUpdatesV2([held.update, fresh.update])
    } else {
      store.pendingStructs = held
    }
    return
  }
  store.pendingStructs = null
  const waiting = Y.convertUpdateFormatV2ToV1(fresh === null ? held.update : Y.mergeUpdatesV2([held.update, fresh.update]))
  let bytes: Uint8Array
  try {
    bytes = updateToApply(waiting, doc, true)
  } catch {
    return // refused as it stands now: dropped (see above)
  }
  applyOnce(doc, bytes)
}

/**
 * Applies validated bytes in a transaction of our own (Y.applyUpdate joins it), and checks what
 * it integrated before the transaction ends (see checkIntegrated).
 */
function applyOnce(doc: Y.Doc, bytes: Uint8Array): void {
  doc.transact((tr) => {
    try {
      Y.applyUpdate(doc, bytes, REMOTE)
    } catch (err) {
      throw wrapError('ERR_INVALID_DELTA', 'Yjs rejected a delta that decoded cleanly', err)
    }
    checkIntegrated(tr)
  }, REMOTE)
}

/**
 * Runs `fn` in one transaction and returns exactly the update it produced (null if none).
 * The listener is there only for this transaction: with an 'update' listener on the
 * document, Yjs also encodes an update for every remote delta applied to it.
 */
function transactCapturingUpdate(doc: Y.Doc, fn: () => void): Uint8Array | null {
  let update: Uint8Array | null = null
  const onUpdate = (u: Uint8Array, origin: unknown): void => {
    if (origin === LOCAL) update = u
  }
  doc.on('update', onUpdate)
  try {
    doc.transact(fn, LOCAL)
  } finally {
    doc.off('update', onUpdate)
  }
  return update
}
