/**
 * Runs a task at once and again `intervalMs` after each run ends (never two at a time) until
 * stop(), which waits for a run in progress. The driver's pollers (stock, metrics) use it.
 */
export class Repeater {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined

  constructor(
    private readonly task: () => Promise<void>,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    const tick = (): void => {
      this.running = this.task().finally(() => {
        if (this.timer !== undefined) this.timer = setTimeout(tick, this.intervalMs)
      })
    }
    this.timer = setTimeout(tick, 0)
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    await this.running
  }
}
