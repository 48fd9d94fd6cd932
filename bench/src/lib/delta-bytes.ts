import { randomBytes } from 'node:crypto'
import { automergeBackend, yjsBackend, type Backend, type JsonObject } from 'convergent'

/**
 * The size of the deltas Convergent itself produces for the same writes, computed by running
 * its backend (the public one) on the same values. W3 and W4 compare wire bytes to this: the
 * least any replication could send.
 */
export function deltaBytes(backendName: 'yjs' | 'automerge', writes: readonly { before?: object; after: object }[]): number {
  const backend = (backendName === 'yjs' ? yjsBackend() : automergeBackend()) as Backend<unknown>
  let total = 0
  for (const w of writes) {
    let doc = backend.create(randomBytes(16))
    if (w.before !== undefined) doc = backend.put(doc, w.before as JsonObject).doc
    const change = backend.put(doc, w.after as JsonObject)
    total += change.delta?.byteLength ?? 0
  }
  return total
}
