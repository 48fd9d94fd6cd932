// A user pastes the READMEs' examples into a TypeScript project with `strict` on: they must
// compile there. Every ```ts block of the root README and of each package's README is checked
// against the built packages, except a fragment marked `<!-- not type-checked -->` on the line
// above its fence.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { codeBlocks } from './readme-blocks.js'
import { typeCheckBlocks, type ExampleBlock } from './readme-types.js'

// dist/test/readme-types.test.js → the repo root, four folders up.
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url))

const READMES = [
  'README.md',
  ...readdirSync(join(ROOT, 'packages'))
    .map((p) => `packages/${p}/README.md`)
    .filter((readme) => existsSync(join(ROOT, readme))),
]

function blocksOf(readme: string): ReturnType<typeof codeBlocks> {
  return codeBlocks(readFileSync(join(ROOT, readme), 'utf8'))
}

describe('README examples type-check', function () {
  this.timeout(60_000)

  it('every ```ts block of the READMEs compiles with strict on against the built packages', function () {
    const blocks: ExampleBlock[] = READMES.flatMap((readme) =>
      blocksOf(readme)
        .filter((b) => b.lang === 'ts' && !b.skipped)
        .map((b) => ({ readme, path: join(ROOT, readme), line: b.line, code: b.code })),
    )
    expect(blocks.filter((b) => b.readme === 'README.md').length, 'README.md has its examples as ```ts').to.be.at.least(2)
    expect(typeCheckBlocks(blocks, ROOT)).to.deep.equal([])
  })

  it('the READMEs have no ```js examples (this test would not see them)', function () {
    const js = READMES.flatMap((readme) => blocksOf(readme).flatMap((b) => (['js', 'javascript'].includes(b.lang) ? [`${readme}:${b.line}`] : [])))
    expect(js).to.deep.equal([])
  })

  it('names the README line and column of an error', function () {
    const code = "const price: number = 12\nconst name: number = 'Mug'\n"
    const errors = typeCheckBlocks([{ readme: 'README.md', path: join(ROOT, 'README.md'), line: 40, code }], ROOT)
    expect(errors).to.deep.equal(["README.md:41:7: Type 'string' is not assignable to type 'number'."])
  })
})
