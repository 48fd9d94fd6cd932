/**
 * A child process for logs.test.ts (dist/test/log-child.js [logLevel]): opens a replica with
 * open()'s default logger — libp2p without a cluster key, so open() warns — and closes it.
 * stdout must stay empty: it is the application's.
 */
import { open, type LogLevel } from '../src/index.js'

const level = process.argv[2] as LogLevel | undefined
const replica = await open(level === undefined ? {} : { logLevel: level })
await replica.close()
