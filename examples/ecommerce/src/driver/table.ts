/** A plain-text table with box-drawing borders; the first row is the header when given. */
export function renderTable(rows: string[][], options: { header?: boolean; align?: ('left' | 'right')[] } = {}): string {
  const cols = Math.max(...rows.map((r) => r.length))
  const widths = Array.from({ length: cols }, (_, i) => Math.max(...rows.map((r) => [...(r[i] ?? '')].length)))
  const cell = (text: string, i: number): string => {
    const pad = ' '.repeat(widths[i]! - [...text].length)
    return options.align?.[i] === 'right' ? pad + text : text + pad
  }
  const line = (l: string, m: string, r: string): string => l + widths.map((w) => '─'.repeat(w + 2)).join(m) + r
  const out = [line('┌', '┬', '┐')]
  rows.forEach((row, index) => {
    out.push(`│ ${Array.from({ length: cols }, (_, i) => cell(row[i] ?? '', i)).join(' │ ')} │`)
    if (index === 0 && options.header) out.push(line('├', '┼', '┤'))
  })
  out.push(line('└', '┴', '┘'))
  return out.join('\n')
}
