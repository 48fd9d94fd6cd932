import * as A from '@automerge/automerge'
import { wrapError, type JsonValue } from '@convergent/core'
import { DOCUMENT_CHUNK, splitChunks } from './chunks.js'
import { opIdOf } from './conflicts.js'
import { holds } from './holds.js'
import { DELETED_KEY } from './schema.js'

/**
 * BackendHistory.nextTopLevelWrites: a delta that is one change on top of `doc`, read from the
 * change (not applied) — its top-level writes in order, when each replaces exactly the values
 * the document shows at that key (its `pred` names every one of them, as an honest write on top
 * of the document does): then the document with the change applied reads as read(doc) with
 * these writes, and no key it writes holds concurrent values. Undefined for anything else.
 */
export function nextTopLevelWrites(doc: A.Doc<unknown>, delta: Uint8Array): [string, JsonValue | undefined][] | undefined {
  const chunks = splitChunks(delta)
  if (chunks.length !== 1 || chunks[0]![8] === DOCUMENT_CHUNK) return undefined
  let change: A.DecodedChange
  try {
    change = A.decodeChange(chunks[0]!)
  } catch (err) {
    throw wrapError('ERR_INVALID_DELTA', 'Not a delta of Automerge changes', err)
  }
  const heads = A.getHeads(doc)
  if (!heads.every((h) => change.deps.includes(h)) || !change.deps.every((d) => holds(doc, d))) return undefined
  const handle = A.getBackend(doc)
  // The operation ids of the values each key shows: the document's, then as the change's own ops left them.
  const shown = new Map<string, string[]>()
  const idsAt = (key: string): string[] => shown.get(key) ?? handle.getAll('_root', key).map(opIdOf)
  const writes: [string, JsonValue | undefined][] = []
  for (const [i, op] of change.ops.entries()) {
    if (op.obj !== '_root' || op.key === undefined || op.key === DELETED_KEY) return undefined
    if (op.action !== 'set' && op.action !== 'del') return undefined
    if (!sameIds(op.pred, idsAt(op.key))) return undefined // it would leave or make a concurrent value
    if (op.action === 'del') {
      writes.push([op.key, undefined])
      shown.set(op.key, [])
      continue
    }
    const value = plainScalar(op)
    if (value === undefined) return undefined
    writes.push([op.key, value])
    shown.set(op.key, [`${change.startOp + i}@${change.actor}`])
  }
  return writes
}

/** The same op ids, each once: a pred naming one value twice replaces only that one (the other still shows). */
function sameIds(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && new Set(a).size === a.length && a.every((id) => b.includes(id))
}

/** The value read() shows for a put scalar, or undefined where it would show it otherwise (a timestamp, bytes, a counter…). */
function plainScalar(op: A.DecodedChange['ops'][number]): JsonValue | undefined {
  const { value, datatype } = op as { value?: unknown; datatype?: string }
  if (typeof value === 'string' || typeof value === 'boolean' || value === null) return datatype === undefined || datatype === 'str' ? value : undefined
  if (typeof value === 'number' && Number.isFinite(value) && (datatype === 'int' || datatype === 'uint' || datatype === 'float64')) return value
  return undefined
}
