export { YjsBackend, yjsBackend } from './backend.js'
