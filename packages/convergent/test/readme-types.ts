// Type-checks README code blocks as a user's `tsc --strict` would see them: each block is a
// module of its own, placed beside its README so that its imports resolve to the built
// workspace packages, all in one TypeScript program (one pass over the packages' types).
import { basename, dirname, join } from 'node:path'
import ts from 'typescript'

export interface ExampleBlock {
  /** The README's path, as errors name it. */
  readme: string
  /** Its absolute path (the block's module sits beside it). */
  path: string
  /** 1-based README line of the block's first code line. */
  line: number
  code: string
}

const OPTIONS: ts.CompilerOptions = {
  strict: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  lib: ['lib.es2023.d.ts'],
  types: ['node'],
  noEmit: true,
  skipLibCheck: true,
}

/** Every error in the blocks, as `README.md:line:column: message`; empty when they all type-check. */
export function typeCheckBlocks(blocks: ExampleBlock[], root: string): string[] {
  // .mts: an ES module whatever package.json says, so top-level await and imports are as in the README.
  const modules = new Map(blocks.map((b) => [join(dirname(b.path), `${basename(b.path)}.L${b.line}.mts`), b]))
  const host = ts.createCompilerHost(OPTIONS)
  const { getSourceFile, fileExists, readFile } = host
  host.getCurrentDirectory = () => root
  host.fileExists = (file) => modules.has(file) || fileExists.call(host, file)
  host.readFile = (file) => modules.get(file)?.code ?? readFile.call(host, file)
  host.getSourceFile = (file, language, ...rest) => {
    const block = modules.get(file)
    return block === undefined ? getSourceFile.call(host, file, language, ...rest) : ts.createSourceFile(file, block.code, language, true)
  }
  const program = ts.createProgram([...modules.keys()], OPTIONS, host)
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n')
    const block = d.file === undefined ? undefined : modules.get(d.file.fileName)
    if (d.file === undefined || block === undefined || d.start === undefined) return `${d.file?.fileName ?? '(options)'}: ${message}`
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start)
    return `${block.readme}:${block.line + line}:${character + 1}: ${message}`
  })
}
