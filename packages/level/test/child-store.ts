/**
 * A child process for the durability and lock tests (forked from dist/test/child-store.js).
 *
 *   child-store.js hold  <dir>   opens the store, reports 'ready', and keeps it open forever
 *   child-store.js write <dir>   opens the store, reports 'ready', then writes entities in a
 *                                loop, reporting every acknowledged one — until it is killed
 *
 * Messages to the parent: { type: 'ready' } and { type: 'acked', seqs: number[] }.
 */
import { classicLevelStore } from '../src/index.js'
import { entityWrite } from './entity-ops.js'

const [mode, dir] = process.argv.slice(2)
if (dir === undefined || (mode !== 'hold' && mode !== 'write')) {
  console.error('usage: child-store.js hold|write <dir>')
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
