// Review s31: does the README type check (readme-types.test.ts) fail when an example breaks,
// and does it see every example?
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { codeBlocks } from './readme-blocks.js'
import { typeCheckBlocks } from './readme-types.js'

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url))

describe('review s31: the README type check', function () {
  this.timeout(60_000)

  it('holds: an example that imports what the package does not export, or breaks strict, fails naming its line; one that uses the API as typed passes', function () {
    const readme = 'packages/convergent/README.md'
    const bad = ["import { open, notAnExport } from 'convergent'", 'const r = await open()', 'function f(x) { return x }', 'void r, notAnExport, f', ''].join(
      '\n',
    )
    const good = [
      "import { open } from 'convergent'",
      'const r = await open({ network: false })',
      "await r.collection('p').put('k', { v: 1 })",
      'await r.close()',
      '',
    ].join('\n')
    const path = join(ROOT, readme)
    const errors = typeCheckBlocks(
      [
        { readme, path, line: 10, code: bad },
        { readme, path, line: 100, code: good },
      ],
      ROOT,
    )
    expect(
      errors.some((e) => e.startsWith(`${readme}:10:`) && e.includes('notAnExport')),
      errors.join('\n'),
    ).to.equal(true)
    expect(
      errors.some((e) => e.startsWith(`${readme}:12:`) && e.includes("implicitly has an 'any' type")),
      errors.join('\n'),
    ).to.equal(true)
    expect(
      errors.filter((e) => /:1\d\d:/.test(e)),
      'the good example',
    ).to.deep.equal([])
  })

  // HOLE 5: a fence with anything after its language (```ts title="…", ```ts {2}) was not read
  // as a fence at all: its closing ``` then opened a block, which swallowed the next ```ts
  // example — both went unchecked, silently. And ```typescript was a language of its own, neither
  // checked nor flagged.
  it('HOLE 5 (fixed): a fence with an info string, and ```typescript, are read as ts blocks; the block after them is still seen', function () {
    const markdown = [
      '```ts title="quick start"',
      'const a: number = "x"',
      '```',
      'text',
      '```ts',
      'const b: number = "y"',
      '```',
      '```typescript',
      'const c = 1',
      '```',
    ].join('\n')
    expect(codeBlocks(markdown).map((b) => [b.lang, b.line, b.code])).to.deep.equal([
      ['ts', 2, 'const a: number = "x"\n'],
      ['ts', 6, 'const b: number = "y"\n'],
      ['ts', 9, 'const c = 1\n'],
    ])
  })
})
