/** Progress goes to stderr, so stdout stays free for whoever pipes the results. */
export function progress(message: string): void {
  const t = new Date().toISOString().slice(11, 19)
  process.stderr.write(`[bench ${t}] ${message}\n`)
}
