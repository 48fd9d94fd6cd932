// The READMEs' examples must run exactly as written: this test takes the first code block that
// imports the package from a README (the root one, core's) and runs it in a fresh folder.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { runNode } from './helpers.js'

// dist/test/readme.test.js → the repo root, four folders up.
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url))

function readmeExample(readme: string, fence: 'js' | 'ts', from: string): string {
  const text = readFileSync(join(ROOT, readme), 'utf8')
  const blocks = [...text.matchAll(new RegExp('```' + fence + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!)
  const example = blocks.find((b) => b.includes(`from '${from}'`))
  if (example === undefined) throw new Error(`${readme} has no \`\`\`${fence} block importing '${from}'`)
  return example
}

/** Runs the example in a fresh folder inside the repo (so its imports resolve to the workspace packages). */
async function runExample(example: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  mkdirSync(join(ROOT, '.tmp'), { recursive: true })
  const dir = mkdtempSync(join(ROOT, '.tmp', 'readme-'))
  try {
    const file = join(dir, 'example.mjs')
    writeFileSync(file, example)
    return await runNode(file, [], { cwd: dir })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

describe('README', function () {
  this.timeout(90_000)

  it('its API example runs as written and prints what the comments say', async function () {
    const { code, stdout, stderr } = await runExample(readmeExample('README.md', 'js', 'convergent'))
    expect(code, stderr).to.equal(0)
    expect(stdout).to.include("orders sees { name: 'Mug', price: 12, tags: [ 'kitchen' ] }")
    const merged = "{ name: 'Mug', price: 10, tags: [ 'kitchen', 'sale' ] }"
    expect(stdout).to.include(`merged ${merged} ${merged}`)
    expect(stdout).to.include('ERR_INSUFFICIENT_RIGHTS')
    expect(stdout).to.include('stock left 1')
  })

  it("core's example (two replicas on an in-process hub) runs as written and prints what its comment says", async function () {
    const { code, stdout, stderr } = await runExample(readmeExample('packages/core/README.md', 'ts', '@convergent/core'))
    expect(code, stderr).to.equal(0)
    expect(stdout).to.include("{ name: 'Mug', price: 12 }")
  })
})
