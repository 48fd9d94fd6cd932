/**
 * A strict reader of the Prometheus text format (0.0.4) as far as the tests need it: every line
 * is empty, a `# HELP`, a `# TYPE` or a sample `name{label="value",…} value`, every sample belongs to
 * a family declared by TYPE before it (histograms: _bucket, _sum, _count), label values are
 * quoted with \\, \" and \n escapes only, and a family is not declared twice. Values are
 * what Prometheus's ParseFloat reads; prom-client writes NaN as `Nan` (e.g. the event-loop lag
 * mean before its first sample), which Prometheus accepts (case-insensitive).
 */
export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*'
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"'
const SAMPLE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*)?,?\\})? (-?(?:\\d+(?:\\.\\d+)?(?:e[+-]?\\d+)?|[Nn]a[Nn]|\\+Inf|-Inf))(?: -?\\d+)?$`)
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

export function parsePrometheusText(text: string): Sample[] {
  const types = new Map<string, string>()
  const samples: Sample[] = []
  const lines = text.split('\n')
  if (lines.at(-1) === '') lines.pop()
  for (const [i, line] of lines.entries()) {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`
    if (line.startsWith('# HELP ')) {
      if (!new RegExp(`^# HELP ${NAME} `).test(line)) throw new Error(`bad HELP, ${where}`)
      continue
    }
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ')
      if (name === undefined || type === undefined || !TYPES.has(type)) throw new Error(`bad TYPE, ${where}`)
      if (types.has(name)) throw new Error(`family declared twice, ${where}`)
      types.set(name, type)
      continue
    }
    if (line === '') continue // the format ignores empty lines (prom-client puts one between families)
    if (line.startsWith('#')) throw new Error(`unexpected line, ${where}`)
    const m = SAMPLE.exec(line)
    if (m === null) throw new Error(`not a sample, ${where}`)
    const name = m[1]!
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '')
    const type = types.get(family)
    if (type === undefined) throw new Error(`sample of an undeclared family, ${where}`)
    if (family !== name && type !== 'histogram' && type !== 'summary') throw new Error(`suffix on a ${type}, ${where}`)
    const labels: Record<string, string> = {}
    for (const [, key, value] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key!] = value!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c))
    }
    const raw = m[3]!
    samples.push({ name, labels, value: raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : /nan/i.test(raw) ? NaN : Number(raw) })
  }
  return samples
}

/** The value of the one sample with this name and exactly these labels; undefined if none. */
export function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort())
  const found = samples.filter((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want)
  if (found.length > 1) throw new Error(`${found.length} samples ${name} ${want}`)
  return found[0]?.value
}
