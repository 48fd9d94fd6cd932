/**
 * A progress bar on stderr. On a terminal it redraws one line in place (and steps aside when
 * a line of narration is printed); elsewhere (CI logs, pipes) it prints a short line at each
 * new stage and every 25 %, so logs stay readable.
 */
export class ProgressBar {
  private readonly tty: boolean
  private drawn = false
  private last = { done: 0, total: 1, label: '' }
  private lastDraw = 0
  private lastQuarter = -1

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly out: NodeJS.WriteStream = process.stdout,
  ) {
    this.tty = stream.isTTY === true
  }

  update(done: number, total: number, label: string): void {
    const stageChanged = label !== this.last.label
    this.last = { done, total, label }
    if (this.tty) {
      const t = performance.now()
      if (stageChanged || done >= total || t - this.lastDraw > 50) this.draw()
      return
    }
    const quarter = Math.floor((4 * done) / Math.max(1, total))
    if (stageChanged || quarter !== this.lastQuarter) {
      this.lastQuarter = quarter
      this.stream.write(`[${String(Math.round((100 * done) / Math.max(1, total))).padStart(3)}%] ${label} (${done}/${total})\n`)
    }
  }

  /** Prints a line on stdout without garbling the bar. */
  log(line: string): void {
    this.clear()
    this.out.write(`${line}\n`)
    if (this.tty && this.last.label !== '') this.draw()
  }

  /** Removes the bar (call before the summary). */
  finish(): void {
    this.clear()
    this.last.label = ''
  }

  private draw(): void {
    const { done, total, label } = this.last
    const columns = this.stream.columns || 80 // 0 when the terminal does not say
    const width = Math.max(10, Math.min(40, columns - 40))
    const filled = Math.round((width * Math.min(done, total)) / Math.max(1, total))
    const pct = String(Math.round((100 * done) / Math.max(1, total))).padStart(3)
    this.stream.write(`\r[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${pct}% ${label}`.slice(0, columns - 1) + '\x1b[K')
    this.drawn = true
    this.lastDraw = performance.now()
  }

  private clear(): void {
    if (this.tty && this.drawn) this.stream.write('\r\x1b[K')
    this.drawn = false
  }
}
