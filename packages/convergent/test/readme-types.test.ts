// A user pastes the READMEs' examples into a TypeScript project with `strict` on: they must
// compile there. Every ```ts block of the root README, of each package's README and of each
// example's README is checked against the built packages, except a fragment marked
// `<!-- not type-checked -->` on the line above its fence.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { codeBlocks, NOT_TYPE_CHECKED } from './readme-blocks.js'
import { typeCheckBlocks, type ExampleBlock } from './readme-types.js'

// dist/test/readme-types.test.js → the repo root, four folders up.
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url))

const READMES = [
  'README.md',
  ...['packages', 'examples'].flatMap((folder) =>
    readdirSync(join(ROOT, folder))
      .map((p) => `${folder}/${p}/README.md`)
      .filter((readme) => existsSync(join(ROOT, readme))),
  ),
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
    expect(
      blocks.map((b) => b.readme),
      "the examples' READMEs are read too",
    ).to.include('examples/ecommerce/README.md')
    expect(typeCheckBlocks(blocks, ROOT)).to.deep.equal([])
  })

  it('the READMEs have no ```js (or jsx, tsx, mjs…) examples (this test would not see them)', function () {
    const unseen = ['js', 'jsx', 'mjs', 'cjs', 'tsx', 'mts', 'cts']
    const js = READMES.flatMap((readme) => blocksOf(readme).flatMap((b) => (unseen.includes(b.lang) ? [`${readme}:${b.line}`] : [])))
    expect(js).to.deep.equal([])
  })

  it('reads each block with its first line, its fence indentation taken off, and the skip mark above it', function () {
    const markdown = ['# T', '```ts', 'const a = 1', '```', '', NOT_TYPE_CHECKED, '', '1. step', '   ```ts', '   b.c()', '   ```', '```sh', 'ls', '```'].join(
      '\n',
    )
    expect(codeBlocks(markdown)).to.deep.equal([
      { lang: 'ts', line: 3, code: 'const a = 1\n', skipped: false },
      { lang: 'ts', line: 10, code: 'b.c()\n', skipped: false },
      { lang: 'sh', line: 13, code: 'ls\n', skipped: false },
    ])
    const marked = ['text', NOT_TYPE_CHECKED, '', '```ts', 'replica.collection()', '```'].join('\n')
    expect(codeBlocks(marked)).to.deep.equal([{ lang: 'ts', line: 5, code: 'replica.collection()\n', skipped: true }])
  })

  it('names the README line and column of an error', function () {
    const code = "const price: number = 12\nconst name: number = 'Mug'\n"
    const errors = typeCheckBlocks([{ readme: 'README.md', path: join(ROOT, 'README.md'), line: 40, code }], ROOT)
    expect(errors).to.deep.equal(["README.md:41:7: Type 'string' is not assignable to type 'number'."])
  })
})
