/**
 * Child for review-s30-inspect: opens a store for inspection (a private snapshot of `dir`),
 * reports { type: 'ready', snapshot } and waits until it is signalled or killed, as `convergent
 * ls` does while it prints a long listing.
 */
import { readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { classicLevelStore } from '../src/index.js'

const dir = process.argv[2]!
const before = new Set(readdirSync(tmpdir()).filter((n) => n.startsWith('convergent-inspect-')))
const store = classicLevelStore(dir, { inspect: true })
await store.open()
const made = readdirSync(tmpdir()).filter((n) => n.startsWith('convergent-inspect-') && !before.has(n))
process.send!({ type: 'ready', snapshot: made[0] })
setInterval(() => undefined, 60_000)
