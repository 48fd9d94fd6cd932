// The READMEs' examples must run exactly as written: this test takes the first ```ts block that
// imports the package from a README (the root one, core's), strips its types and runs it in a
// fresh folder (readme-types.test.ts type-checks them).
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import ts from 'typescript'
import { runNode } from './helpers.js'
import { codeBlocks } from './readme-blocks.js'

// dist/test/readme.test.js → the repo root, four folders up.
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url))

function readmeExample(readme: string, from: string): string {
  const blocks = codeBlocks(readFileSync(join(ROOT, readme), 'utf8')).filter((b) => b.lang === 'ts')
  const example = blocks.find((b) => b.code.includes(`from '${from}'`))
  if (example === undefined) throw new Error(`${readme} has no \`\`\`ts block importing '${from}'`)
  return example.code
}

/** The example as JavaScript: its types taken out, nothing else changed (an ES module, as written). */
function stripTypes(example: string): string {
  const options = { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true }
  return ts.transpileModule(example, { compilerOptions: options }).outputText
}

/** Runs the example in a fresh folder inside the repo (so its imports resolve to the workspace packages). */
async function runExample(example: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  mkdirSync(join(ROOT, '.tmp'), { recursive: true })
  const dir = mkdtempSync(join(ROOT, '.tmp', 'readme-'))
  try {
    const file = join(dir, 'example.mjs')
    writeFileSync(file, stripTypes(example))
    return await runNode(file, [], { cwd: dir })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

describe('README', function () {
  this.timeout(90_000)

  it('its API example runs as written and prints what the comments say', async function () {
    const { code, stdout, stderr } = await runExample(readmeExample('README.md', 'convergent'))
    expect(code, stderr).to.equal(0)
    expect(stdout).to.include("orders sees { name: 'Mug', price: 12, tags: [ 'kitchen' ] }")
    const merged = "{ name: 'Mug', price: 10, tags: [ 'kitchen', 'sale' ] }"
    expect(stdout).to.include(`merged ${merged} ${merged}`)
    expect(stdout).to.include('ERR_INSUFFICIENT_RIGHTS')
    expect(stdout).to.include('stock left 1')
  })

  it("core's example (two replicas on an in-process hub) runs as written and prints what its comment says", async function () {
    const { code, stdout, stderr } = await runExample(readmeExample('packages/core/README.md', '@convergent/core'))
    expect(code, stderr).to.equal(0)
    expect(stdout).to.include("{ name: 'Mug', price: 12 }")
  })
})
