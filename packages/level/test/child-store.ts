/**
 * A child process for the durability and lock tests (forked from dist/test/child-store.js).
 *
 *   child-store.js hold  <dir>   opens the store, reports 'ready', and keeps it open forever
 *   child-store.js write <dir>   opens the store, reports 'ready', then writes entities in a
 *                                loop, reporting every acknowledged one — until it is killed
 *   child-store.js write60 <dir> opens the store, reports 'ready', writes entities 1 … 60 one
 *                                write() after another, reporting each, then reports 'done' and
 *                                waits to be killed (so they sit in LevelDB's log, not a table)
 *
 * Messages to the parent: { type: 'ready' }, { type: 'acked', seqs: number[] }, { type: 'done' }.
 */
import { classicLevelStore } from '../src/index.js'
import { entityWrite } from './entity-ops.js'

const [mode, dir] = process.argv.slice(2)
if (dir === undefined || (mode !== 'hold' && mode !== 'write' && mode !== 'write60')) {
  console.error('usage: child-store.js hold|write|write60 <dir>')
  process.exit(2)
}

const send = (message: unknown): void => {
  process.send!(message)
}

const store = classicLevelStore(dir)
await store.open()
send({ type: 'ready' })

if (mode === 'hold') {
  setInterval(() => undefined, 60_000) // keep the store (and its lock) until killed
} else if (mode === 'write60') {
  for (let n = 1; n <= 60; n++) {
    await store.write(entityWrite('c', n))
    send({ type: 'acked', seqs: [n] })
  }
  send({ type: 'done' })
  setInterval(() => undefined, 60_000) // never closes: killed with the writes in the log
} else {
  await writeForever()
}

/** Keeps up to WINDOW writes in flight, like a busy service; acks go out once per tick. */
async function writeForever(): Promise<never> {
  const WINDOW = 64
  let pending = 0
  let seq = 0
  let acked: number[] = []
  let wake: (() => void) | undefined
  const flushAcks = (): void => {
    if (acked.length === 0) return
    send({ type: 'acked', seqs: acked })
    acked = []
  }
  for (;;) {
    while (pending >= WINDOW) await new Promise<void>((resolve) => (wake = resolve))
    const n = ++seq
    pending++
    store.write(entityWrite('c', n)).then(
      () => {
        if (acked.length === 0) setImmediate(flushAcks)
        acked.push(n) // reported only now: its write() has resolved
        pending--
        wake?.()
      },
      (err: unknown) => {
        console.error('write failed', err)
        process.exit(1)
      },
    )
    if (n % WINDOW === 0) await new Promise((resolve) => setImmediate(resolve)) // let batches go out
  }
}
