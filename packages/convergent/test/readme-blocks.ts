// The fenced code blocks of a Markdown file, with the line each starts on, so that a test that
// checks or runs them can point at the README line of a failure.

/** Put right before a block (the line above its fence) that is a fragment and not meant to compile alone. */
export const NOT_TYPE_CHECKED = '<!-- not type-checked -->'

export interface CodeBlock {
  /** The language after the opening fence, lower case (```ts → 'ts', ```typescript → 'ts', ```ts title="x" → 'ts'). */
  lang: string
  /** 1-based line of the block's first code line in the file. */
  line: number
  /** The code, with the fence's indentation taken off every line. */
  code: string
  /** Whether the line above the fence is NOT_TYPE_CHECKED. */
  skipped: boolean
}

/** Languages that are another name of one the tests look for. */
const LANG_ALIASES: Record<string, string> = { typescript: 'ts', javascript: 'js' }

export function codeBlocks(markdown: string): CodeBlock[] {
  const lines = markdown.split('\n')
  const blocks: CodeBlock[] = []
  let previous = ''
  for (let i = 0; i < lines.length; i++) {
    // A fence's info string may go on after the language (```ts title="…"): still a ts block.
    const open = /^(\s*)```(?!`)\s*([\w+-]*)[^`]*$/.exec(lines[i]!)
    if (open === null) {
      if (lines[i]!.trim() !== '') previous = lines[i]!.trim()
      continue
    }
    const indent = open[1]!.length
    const code: string[] = []
    let j = i + 1
    while (j < lines.length && !/^\s*```\s*$/.test(lines[j]!)) code.push(lines[j++]!.slice(indent))
    blocks.push({
      lang: LANG_ALIASES[open[2]!.toLowerCase()] ?? open[2]!.toLowerCase(),
      line: i + 2,
      code: code.join('\n') + '\n',
      skipped: previous === NOT_TYPE_CHECKED,
    })
    previous = ''
    i = j
  }
  return blocks
}
