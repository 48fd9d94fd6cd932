export { AutomergeBackend, automergeBackend } from './backend.js'
export type { AutomergeDoc } from './backend.js'
