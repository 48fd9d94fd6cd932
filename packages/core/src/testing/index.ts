// Shared compliance suites: every Backend, Store and Network runs the same one.
// Import from '@convergent/core/testing' in a package's tests (needs mocha globals, chai, fast-check).
export * from './backend-compliance.js'
export * from './store-compliance.js'
export * from './network-compliance.js'
export * from './helpers.js'
export * from './wire-garbage.js'
export * from './random.js'
export * from './keyring.js'
export * from './spy-network.js'
export { asForger, putRow, rowKeyIn, rowNames, signedRow } from './counter-rows.js'
export { writesRawEnvelopes } from './personal.js'
