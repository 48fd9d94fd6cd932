import type { Backend } from './backend.js'

const cache = new WeakMap<Backend, { version: Uint8Array; versionHash: Uint8Array }>()

/** The version and version hash of an empty document of this backend (computed once). */
export function emptyVersionOf(backend: Backend): { version: Uint8Array; versionHash: Uint8Array } {
  let v = cache.get(backend)
  if (v === undefined) {
    const doc = backend.create(new Uint8Array(16).fill(1))
    v = { version: backend.version(doc), versionHash: backend.versionHash(doc) }
    cache.set(backend, v)
  }
  return v
}
