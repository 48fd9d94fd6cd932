import assert from 'node:assert/strict'
import fc from 'fast-check'
import { ConvergentError } from '../src/index.js'
import { DEPTH, DigestTree, leafOf } from '../src/digest.js'
import { sha256, toHex } from '../src/hash.js'

/** A tree holding entities id → version hash, added in the given order. */
function treeOf(entries: readonly [string, Uint8Array][]): DigestTree {
  const tree = new DigestTree()
  for (const [id, version] of entries) tree.update(id, leafOf(id), undefined, version)
  return tree
}

const entity = fc
  .tuple(fc.string({ minLength: 1, maxLength: 12 }), fc.integer({ min: 0, max: 1000 }))
  .map(([id, v]): [string, Uint8Array] => [id, sha256(`v${v}`)])
const entitySet = fc.uniqueArray(entity, { selector: ([id]) => id, maxLength: 40 })

describe('DigestTree', function () {
  it('the root depends on the entities and their versions, not on the order they came in', function () {
    fc.assert(
      fc.property(entitySet, fc.integer(), (entries, seed) => {
        const shuffled = [...entries].sort((a, b) => (toHex(sha256(a[0] + seed)) < toHex(sha256(b[0] + seed)) ? -1 : 1))
        assert.equal(toHex(treeOf(entries).root()), toHex(treeOf(shuffled).root()))
      }),
    )
  })

  it('moving an entity to a new version and back, or removing it, restores every node', function () {
    fc.assert(
      fc.property(entitySet, entity, (entries, [id, version]) => {
        fc.pre(!entries.some(([other]) => other === id))
        const tree = treeOf(entries)
        const before = toHex(tree.root())
        const leaf = leafOf(id)
        const leafBefore = toHex(tree.node(DEPTH, leaf))
        tree.update(id, leaf, undefined, version)
        const next = sha256(version)
        tree.update(id, leaf, version, next)
        tree.update(id, leaf, next, version)
        tree.update(id, leaf, version, undefined)
        assert.equal(toHex(tree.root()), before)
        assert.equal(toHex(tree.node(DEPTH, leaf)), leafBefore)
        assert.equal(
          tree.hasLeaf(leaf),
          entries.some(([other]) => leafOf(other) === leaf),
        )
      }),
    )
  })

  it('hands out copies: changing what root(), node(), children() or update() returned changes nothing', function () {
    const tree = treeOf([
      ['a', sha256('1')],
      ['b', sha256('2')],
    ])
    const root = toHex(tree.root())
    const leaf = leafOf('a')
    const fromUpdate = tree.update('c', leafOf('c'), undefined, sha256('3'))
    const expected = toHex(tree.root())
    fromUpdate.fill(7)
    tree.root().fill(7)
    tree.node(DEPTH, leaf).fill(7)
    tree.children(0, 0).fill(7)
    assert.equal(toHex(tree.root()), expected)
    assert.notEqual(expected, root)
  })

  it('children() lists each child node, empty ones as zeros', function () {
    const tree = treeOf([['a', sha256('1')]])
    const children = tree.children(0, 0)
    for (let k = 0; k < 16; k++) assert.equal(toHex(children.subarray(k * 32, (k + 1) * 32)), toHex(tree.node(1, k)))
    assert.equal(children.filter((b) => b !== 0).length > 0, true)
  })

  it('sparseChildren() holds exactly the non-empty children of children(), in order', function () {
    fc.assert(
      fc.property(entitySet, fc.integer({ min: 0, max: DEPTH - 1 }), (entries, level) => {
        const tree = treeOf(entries)
        const index = entries.length === 0 ? 0 : leafOf(entries[0]![0]) >>> (4 * (DEPTH - level))
        const dense = tree.children(level, index)
        const [mask, digests] = tree.sparseChildren(level, index)
        let at = 0
        for (let k = 0; k < 16; k++) {
          const child = toHex(dense.subarray(k * 32, (k + 1) * 32))
          const empty = dense.subarray(k * 32, (k + 1) * 32).every((b) => b === 0)
          assert.equal((mask & (1 << k)) !== 0, !empty)
          if (!empty) assert.equal(toHex(digests.subarray(at * 32, ++at * 32)), child)
        }
        assert.equal(digests.byteLength, at * 32)
      }),
    )
  })

  it('refuses a stored leaf that is not 32 bytes (ERR_STORE)', function () {
    const tree = new DigestTree()
    assert.throws(
      () => tree.loadLeaf(5, new Uint8Array(64).fill(1)),
      (err: unknown) => err instanceof ConvergentError && err.code === 'ERR_STORE',
    )
    assert.equal(tree.hasLeaf(5), false)
  })
})
