import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

const CHILD = fileURLToPath(new URL('./child-store.js', import.meta.url))

export interface StoreChild {
  process: ChildProcess
  /** Every seq the child reported as acknowledged (its write() had resolved). */
  acked: Set<number>
  /** Resolves when the child reports it is done writing (mode write60). */
  done: Promise<void>
  /** SIGKILLs the child and waits until it is gone and its IPC channel is drained. */
  kill(): Promise<void>
}

/** Forks child-store.js and resolves once it has opened the store. */
export async function forkStoreChild(mode: 'hold' | 'write' | 'write60', dir: string): Promise<StoreChild> {
  const child = fork(CHILD, [mode, dir], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const acked = new Set<number>()
  let onReady: () => void = () => undefined
  let onDone: () => void = () => undefined
  const ready = new Promise<void>((resolve) => (onReady = resolve))
  const done = new Promise<void>((resolve) => (onDone = resolve))
  child.on('message', (message: { type: string; seqs?: number[] }) => {
    if (message.type === 'ready') onReady()
    else if (message.type === 'done') onDone()
    else if (message.type === 'acked') for (const seq of message.seqs!) acked.add(seq)
  })
  // Both fire once the child is dead; 'disconnect' also means every message sent was read.
  const gone = Promise.all([once(child, 'exit'), child.connected ? once(child, 'disconnect') : undefined])
  const exitedEarly = gone.then(() => {
    throw new Error(`child exited before it was ready (code ${child.exitCode}, signal ${child.signalCode})`)
  })
  await Promise.race([ready, exitedEarly])
  exitedEarly.catch(() => undefined)
  const doneOrGone = Promise.race([
    done,
    gone.then(() => Promise.reject(new Error(`child exited before it was done (code ${child.exitCode}, signal ${child.signalCode})`))),
  ])
  doneOrGone.catch(() => undefined) // only write60's caller waits for it
  return {
    process: child,
    acked,
    done: doneOrGone,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await gone
    },
  }
}
