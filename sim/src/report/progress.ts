import type { Progress } from '../run/runner.js'

/**
 * A progress bar on stderr. On a TTY it redraws one line; otherwise (CI logs, pipes) it
 * prints a plain line every 10 % so logs stay readable.
 */
export class ProgressBar {
  private lastDecile = -1
  private drawn = false

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  update(p: Progress): void {
    const fraction = Math.min(1, p.virtualMs / Math.max(1, p.totalMs))
    const text = `${p.phase.padEnd(8)} ${(p.virtualMs / 1000).toFixed(1)} s virtual · ${p.liveNodes} live`
    if (this.stream.isTTY === true) {
      const width = 30
      const filled = Math.round(fraction * width)
      const line = `${this.label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.round(fraction * 100)).padStart(3)}% ${text}`
      this.stream.write(`\r${line.slice(0, Math.max(20, (this.stream.columns ?? 120) - 1)).padEnd(Math.min(120, (this.stream.columns ?? 120) - 1))}`)
      this.drawn = true
      return
    }
    const decile = Math.floor(fraction * 10)
    if (decile > this.lastDecile) {
      this.lastDecile = decile
      this.stream.write(`${this.label} ${decile * 10}% ${text}\n`)
    }
  }

  done(): void {
    if (this.drawn) this.stream.write('\n')
  }
}
