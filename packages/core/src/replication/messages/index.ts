// The wire protocol, one file per protocol: see envelope.ts.
export * from './envelope.js'
export * from './fields.js'
export * from './push.js'
export * from './announce.js'
export * from './sync.js'
export * from './parts.js'
export * from './rights.js'
export * from './reply.js'
