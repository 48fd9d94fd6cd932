/**
 * @packageDocumentation
 * A Convergent {@link @convergent/core!Backend | Backend} over Yjs: one Y.Doc per entity, nested
 * objects as Y.Maps and arrays as Y.Arrays, scalars last-writer-wins. Every remote update is
 * scanned field by field before Yjs sees it (only what this backend writes is accepted), and
 * the version hash covers the value, so replicas holding different content under the same
 * operation ids do not look equal. Runs core's backend compliance suite; see its README for
 * the merge semantics.
 */
export { YjsBackend, yjsBackend } from './backend.js'
