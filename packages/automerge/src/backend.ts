import * as A from '@automerge/automerge'
import { ConvergentError, sha256, toHex, wrapError } from '@convergent/core'
import type { Backend, Change, JsonObject } from '@convergent/core'
import { checkChunks } from './chunks.js'
import { decodeHeads, encodeHeads } from './heads.js'
import { readRoot } from './read.js'
import { reconcileMap } from './reconcile.js'
import { DELETED_KEY } from './schema.js'

export type AutomergeDoc = A.Doc<Record<string, unknown>>

/**
 * Backend over Automerge: one document per entity. Automerge documents are immutable
 * values — every change returns a new one and outdates the old — so callers always continue
 * with the doc a method returns. Entity fields live at the root; strings are
 * ImmutableString (last-writer-wins), not collaborative text.
 */
export class AutomergeBackend implements Backend<AutomergeDoc> {
  readonly name = 'automerge'

  create(actor: Uint8Array): AutomergeDoc {
    return A.init({ actor: toHex(actor) })
  }

  load(snapshot: Uint8Array | undefined, deltas: readonly Uint8Array[], actor: Uint8Array): AutomergeDoc {
    let doc = this.create(actor)
    if (snapshot !== undefined) doc = this.applyDelta(doc, snapshot)
    for (const delta of deltas) doc = this.applyDelta(doc, delta)
    return doc
  }

  save(doc: AutomergeDoc): Uint8Array {
    return A.save(doc)
  }

  read(doc: AutomergeDoc): JsonObject | undefined {
    // Materialised from the wasm state, not the doc object: Automerge 3.5 can patch the doc
    // object wrongly when one loadIncremental carries concurrent changes (a put and a delete
    // of the same key), while the wasm state stays right.
    const root = A.toJS(doc)
    if (root[DELETED_KEY] !== false) return undefined
    return readRoot(root)
  }

  put(doc: AutomergeDoc, value: JsonObject): Change<AutomergeDoc> {
    if (Object.prototype.hasOwnProperty.call(value, DELETED_KEY)) {
      throw new ConvergentError('ERR_INVALID_VALUE', `The field name ${JSON.stringify(DELETED_KEY)} is reserved by the Automerge backend; rename the field.`)
    }
    const next = change(doc, (root) => {
      // Only a put on a deleted (or never written) entity touches the flag, so a delete
      // concurrent with this put still wins.
      if (root[DELETED_KEY] !== false) root[DELETED_KEY] = false
      reconcileMap(root, value, DELETED_KEY)
    })
    return { doc: next, delta: next === doc ? null : lastLocalChange(next) }
  }

  delete(doc: AutomergeDoc): Change<AutomergeDoc> {
    // The flag is read through the change proxy (the wasm state), like everything in put.
    const next = change(doc, (root) => {
      if (root[DELETED_KEY] !== false) return // already deleted, or never written
      root[DELETED_KEY] = true
      for (const key of Object.keys(root)) if (key !== DELETED_KEY) delete root[key]
    })
    return { doc: next, delta: next === doc ? null : lastLocalChange(next) }
  }

  applyDelta(doc: AutomergeDoc, delta: Uint8Array): AutomergeDoc {
    checkChunks(delta)
    try {
      return A.loadIncremental(doc, delta)
    } catch (err) {
      throw wrapError('ERR_INVALID_DELTA', 'Automerge rejected a delta whose chunks were well-formed', err)
    }
  }

  version(doc: AutomergeDoc): Uint8Array {
    return encodeHeads(A.getHeads(doc))
  }

  versionHash(doc: AutomergeDoc): Uint8Array {
    return sha256(this.version(doc))
  }

  deltaSince(doc: AutomergeDoc, version: Uint8Array): Uint8Array | null {
    const remote = decodeHeads(version)
    const remoteSet = new Set(remote)
    // Heads are the frontier of the history: holding all of ours means holding everything.
    if (A.getHeads(doc).every((h) => remoteSet.has(h))) return null
    // Heads we have never seen cannot be a starting point; without any, send everything.
    const known = remote.filter((h) => A.hasHeads(doc, [h]))
    const delta = A.saveSince(doc, known)
    return delta.byteLength === 0 ? null : delta
  }

  mergeDeltas(deltas: readonly Uint8Array[]): Uint8Array {
    if (deltas.length === 0) throw new ConvergentError('ERR_INVALID_ARGUMENT', 'mergeDeltas needs at least one delta.')
    if (deltas.length === 1) return deltas[0]!
    // A sequence of chunks is itself valid input to loadIncremental, in any order.
    const out = new Uint8Array(deltas.reduce((n, d) => n + d.byteLength, 0))
    let offset = 0
    for (const d of deltas) {
      out.set(d, offset)
      offset += d.byteLength
    }
    return out
  }

  hasPending(doc: AutomergeDoc): boolean {
    // Queued changes are exactly those with a dependency we do not have.
    return A.getMissingDeps(doc, []).length > 0
  }
}

export function automergeBackend(): Backend<AutomergeDoc> {
  return new AutomergeBackend()
}

/** A.change, with Automerge's own refusals (e.g. a "__proto__" key) as ERR_INVALID_VALUE. */
function change(doc: AutomergeDoc, fn: (root: Record<string, unknown>) => void): AutomergeDoc {
  try {
    return A.change(doc, fn)
  } catch (err) {
    throw wrapError('ERR_INVALID_VALUE', 'Automerge cannot store this value', err)
  }
}

function lastLocalChange(doc: AutomergeDoc): Uint8Array | null {
  return A.getLastLocalChange(doc) ?? null
}
