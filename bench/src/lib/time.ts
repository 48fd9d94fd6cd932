import { setTimeout as sleepMs } from 'node:timers/promises'

export const now = (): number => performance.now()

export const sleep = (ms: number): Promise<void> => sleepMs(ms).then(() => undefined)

/**
 * Polls `done` every `everyMs` until it returns true. Rejects after `timeoutMs` with a message
 * naming what was awaited (a hang must fail the run, not the whole suite).
 */
export async function waitFor(what: string | (() => string), done: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 5): Promise<void> {
  const deadline = now() + timeoutMs
  while (!(await done())) {
    if (now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${typeof what === 'string' ? what : what()}`)
    await sleep(everyMs)
  }
}

/** Runs `task(i)` for i in [0, n) with at most `window` in flight: a service with concurrent requests. */
export async function inWindow(n: number, window: number, task: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++
      await task(i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(window, n) }, worker))
}
