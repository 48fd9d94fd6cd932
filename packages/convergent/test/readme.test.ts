// The README's API example must run exactly as written: this test takes the first ```js block
// that imports 'convergent' from the root README and runs it in a fresh folder.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { runNode } from './helpers.js'

// dist/test/readme.test.js → the repo root, four folders up.
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url))

function readmeExample(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const blocks = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!)
  const example = blocks.find((b) => b.includes("from 'convergent'"))
  if (example === undefined) throw new Error("README.md has no ```js block importing 'convergent'")
  return example
}

describe('README', function () {
  this.timeout(90_000)

  it('its API example runs as written and prints what the comments say', async function () {
    // Inside the repo, so `import 'convergent'` resolves to the workspace package.
    mkdirSync(join(ROOT, '.tmp'), { recursive: true })
    const dir = mkdtempSync(join(ROOT, '.tmp', 'readme-'))
    try {
      const file = join(dir, 'example.mjs')
      writeFileSync(file, readmeExample())
      const { code, stdout, stderr } = await runNode(file, [], { cwd: dir })
      expect(code, stderr).to.equal(0)
      expect(stdout).to.include("orders sees { name: 'Mug', price: 12, tags: [ 'kitchen' ] }")
      const merged = "{ name: 'Mug', price: 10, tags: [ 'kitchen', 'sale' ] }"
      expect(stdout).to.include(`merged ${merged} ${merged}`)
      expect(stdout).to.include('ERR_INSUFFICIENT_RIGHTS')
      expect(stdout).to.include('stock left 1')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
