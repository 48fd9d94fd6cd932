/**
 * @packageDocumentation
 * A Convergent {@link @convergent/core!Backend | Backend} over Automerge: one Automerge document
 * per entity, values as JSON-like maps and lists, strings last-writer-wins. Remote deltas are
 * bounded by what they decode to (compressed chunks inflate), catch-ups send the whole compact
 * document when it is smaller than the changes, and concurrently created nested objects merge
 * field by field. Runs core's backend compliance suite; see its README for the merge semantics.
 */
export { AutomergeBackend, automergeBackend, type AutomergeBackendOptions } from './backend.js'
export type { AutomergeDoc } from './backend.js'
